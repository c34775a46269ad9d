"""Invokable functions: the registry and its manifest, input checks, and /invoke through the Flask app."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.fake_upstream import FakeUpstream
from webapp import create_app, sse
from webapp.functions import (
    FunctionKind,
    FunctionRegistry,
    InputError,
    TextFile,
    UploadedFile,
    default_registry,
    get_registry,
)

BUILTINS = {"batch_process": True, "chat_stream": True, "count_to": True, "process_text_file": True,
            "word_count": False}


@pytest.fixture
def app(upstream: FakeUpstream) -> Flask:
    return create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0"})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def registry() -> FunctionRegistry:
    return FunctionRegistry()


@pytest.fixture
def own(registry: FunctionRegistry, upstream: FakeUpstream) -> FlaskClient:
    """A client of an app serving only ``registry``."""
    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "FUNCTION_REGISTRY": registry,
                      "MAX_CONTENT_LENGTH": 4096})
    return app.test_client()


def events_of(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/event-stream"
    frames = response.get_data(as_text=True).split("\n\n")
    return [json.loads(f[len("data: "):]) for f in frames if f.startswith("data: ")]


def error_of(response: Any, status: int) -> str:
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    return response.json["error"]["message"]


# -- the manifest ---------------------------------------------------------------------------------

def test_manifest_lists_the_builtins_in_the_seed_shape(client: FlaskClient) -> None:
    functions = {f["name"]: f for f in client.get("/functions").json["functions"]}
    assert {name: f["streaming"] for name, f in functions.items() if name in BUILTINS} == BUILTINS
    for entry in functions.values():
        assert list(entry) == ["name", "description", "parameters", "streaming", "returns"]
        assert entry["description"]
        for param in entry["parameters"]:
            assert {"name", "type", "required", "description"} <= set(param)
    batch = functions["batch_process"]
    assert batch["parameters"] == [
        {"name": "items", "type": "array", "required": True, "description": batch["parameters"][0]["description"],
         "maxItems": 10000},
        {"name": "delay", "type": "number", "required": False, "description": batch["parameters"][1]["description"],
         "default": 0.1, "minimum": 0, "maximum": 5},
    ]
    assert batch["returns"] == {"type": "object", "description": "SSE event stream"}
    upload = functions["process_text_file"]["parameters"][0]
    assert upload["type"] == "file" and upload["required"] and upload["encoding"] == "utf-8"
    assert functions["word_count"]["returns"]["type"] == "object"
    assert client.get("/functions/count_to").json == functions["count_to"]
    assert "no function named 'nope'" in error_of(client.get("/functions/nope"), 404)


def test_a_manifest_is_derived_from_signature_hints_and_docstring(registry: FunctionRegistry) -> None:
    @registry.register
    def shout(text: str, times: int = 1, mode: Literal["a", "b"] = "a", tags: list[str] | None = None) -> str:
        """Upper-case a text.

        More words that are not the summary.

        Args:
            text: the text to shout,
                over two lines.
            times: how often.
            mode (str): a mode.

        Returns:
            the shouted text.
        """
        return text.upper() * times

    @registry.register(name="rest.style", description="given", parameters=[{"name": "n", "maximum": 3}])
    async def rest(n: int, ratio: float = 0.5, data: dict | None = None, flag: bool = False) -> int:
        """Ignored summary.

        :param n: a number.
        :param ratio: a ratio.
        :returns: the number.
        """
        return n

    shouted = registry.get("shout").manifest()
    assert shouted["description"] == "Upper-case a text."
    assert shouted["streaming"] is False
    assert shouted["returns"] == {"type": "string", "description": "the shouted text."}
    assert shouted["parameters"] == [
        {"name": "text", "type": "string", "required": True, "description": "the text to shout, over two lines."},
        {"name": "times", "type": "integer", "required": False, "description": "how often.", "default": 1},
        {"name": "mode", "type": "string", "required": False, "description": "a mode.", "default": "a",
         "enum": ["a", "b"]},
        {"name": "tags", "type": "array", "required": False, "description": "", "default": None,
         "items": {"type": "string"}},
    ]
    described = registry.get("rest.style")
    assert described.kind is FunctionKind.COROUTINE
    assert described.description == "given"
    assert [(p["name"], p["type"], p["description"]) for p in described.parameters] == [
        ("n", "integer", "a number."), ("ratio", "number", "a ratio."), ("data", "object", ""),
        ("flag", "boolean", "")]
    assert described.parameters[0]["maximum"] == 3
    assert described.returns == {"type": "integer", "description": "the number."}
    assert [s.name for s in registry] == ["rest.style", "shout"]


def test_generator_kinds_and_file_types(registry: FunctionRegistry) -> None:
    def sync_gen(upload: UploadedFile) -> Iterator[dict]:
        yield sse.done()

    async def async_gen(text: TextFile) -> AsyncIterator[dict]:
        yield sse.done()

    registry.register(sync_gen)
    registry.register(async_gen)
    assert registry.get("sync_gen").kind is FunctionKind.GENERATOR
    assert registry.get("async_gen").kind is FunctionKind.ASYNC_GENERATOR
    assert registry.get("sync_gen").parameters[0]["type"] == "file"
    assert "encoding" not in registry.get("sync_gen").parameters[0]
    assert registry.get("async_gen").parameters[0]["encoding"] == "utf-8"
    assert all(registry.get(n).manifest()["streaming"] for n in ("sync_gen", "async_gen"))


def test_bad_registrations_say_what_is_wrong(registry: FunctionRegistry) -> None:
    def twice(x: int) -> int:
        return x

    registry.register(twice)
    with pytest.raises(ValueError, match=r"'twice' is already registered .*test_functions.*twice"):
        registry.register(twice)

    def untyped(x):  # type: ignore[no-untyped-def]
        return x

    with pytest.raises(TypeError, match="parameter 'x' needs a type hint"):
        registry.register(untyped)

    def star(*args: int) -> None:
        return None

    with pytest.raises(TypeError, match="named parameters only"):
        registry.register(star)
    with pytest.raises(TypeError, match="names 'y', which is not one of its parameters"):
        registry.register(name="t1", parameters=[{"name": "y", "maximum": 1}])(lambda x=1: x)
    with pytest.raises(TypeError, match="has type 'float'"):
        registry.register(name="t2", parameters=[{"name": "x", "type": "float"}])(twice)
    with pytest.raises(TypeError, match="no JSON type"):
        registry.register(name="t3")(lambda x=object: x)  # type: ignore[misc]
    with pytest.raises(ValueError, match="must be letters"):
        registry.register(lambda x=1: x)
    assert [s.name for s in registry] == ["twice"]


def test_each_app_has_its_own_registry(upstream: FakeUpstream) -> None:
    first = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url})
    second = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url})

    @get_registry(first).register
    def only_here(x: int) -> int:
        return x + 1

    assert "only_here" in get_registry(first)
    assert "only_here" not in get_registry(second) and "only_here" not in default_registry
    assert second.test_client().post("/invoke/only_here", json={"inputs": {"x": 1}}).status_code == 404
    assert first.test_client().post("/invoke/only_here", json={"inputs": {"x": 1}}).json == {"result": 2}
    assert set(BUILTINS) <= {s.name for s in get_registry(second)}
    with pytest.raises(TypeError, match="FUNCTION_REGISTRY must be a FunctionRegistry"):
        create_app({"LLM_BASE_URL": upstream.base_url, "FUNCTION_REGISTRY": "yes"})


# -- input checks ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "body", "named"), [
    ("/invoke/batch_process", {"inputs": {"items": "abc"}}, "inputs.items: expected an array, got string"),
    ("/invoke/batch_process", {"inputs": {}}, "inputs.items: required (an array)"),
    ("/invoke/batch_process", {"inputs": {"items": [], "speed": 1}},
     "inputs.speed: unknown input; batch_process takes delay, items"),
    ("/invoke/batch_process", {"inputs": {"items": [1], "delay": 6}}, "inputs.delay: must be <= 5, got 6"),
    ("/invoke/batch_process", {"inputs": {"items": [1], "delay": None}}, "inputs.delay: expected a number, got null"),
    ("/invoke/count_to", {"inputs": {"n": 10001}}, "inputs.n: must be <= 10000"),
    ("/invoke/count_to", {"inputs": {"n": 2.5}}, "inputs.n: expected an integer, got number"),
    ("/invoke/count_to", {"inputs": {"n": True}}, "inputs.n: expected an integer, got boolean"),
    ("/invoke/word_count", {"inputs": {"text": ["a"]}}, "inputs.text: expected a string, got array"),
    ("/invoke/chat_stream", {"inputs": {"messages": ["hi"]}}, "inputs.messages[0]: expected an object, got string"),
    ("/invoke/chat_stream", {"inputs": {"messages": [{"role": "bot", "content": "x"}]}},
     "inputs.messages[0]: expected"),
    ("/invoke/chat_stream", {"inputs": {"message": "a", "messages": [{"role": "user", "content": "b"}]}},
     "inputs.message: give exactly one"),
    ("/invoke/chat_stream", {"inputs": {"temperature": 3, "message": "x"}}, "inputs.temperature: must be <= 2"),
    ("/invoke/process_text_file", {"inputs": {"file": 5}}, "inputs.file: expected a file"),
    ("/invoke/count_to", [1], "must be a JSON object"),
    ("/invoke/count_to", {"inputs": [1]}, "inputs: Input should be a valid dictionary"),
    ("/invoke/count_to", {"inputs": {}, "stream": True}, "stream: Extra inputs are not permitted"),
])
def test_bad_inputs_are_a_400_naming_the_field(client: FlaskClient, url: str, body: Any, named: str) -> None:
    assert named in error_of(client.post(url, json=body), 400)


def test_bodies_that_are_neither_json_nor_a_form(client: FlaskClient) -> None:
    assert "multipart/form-data" in error_of(client.post("/invoke/word_count", data="x", content_type="text/plain"),
                                             415)
    assert "inputs.text: required" in error_of(client.post("/invoke/word_count"), 400)  # no body: no inputs
    assert error_of(client.post("/invoke/word_count", data="{", content_type="application/json"), 400)
    assert "no function named 'nope'" in error_of(client.post("/invoke/nope", json={"inputs": {}}), 404)
    assert error_of(client.get("/invoke/word_count"), 405)


# -- plain and coroutine functions -------------------------------------------------------------------

def test_plain_functions_answer_json_even_to_event_stream_clients(client: FlaskClient) -> None:
    response = client.post("/invoke/word_count", json={"inputs": {"text": "The cat saw the dog\nok"}},
                           headers={"Accept": "text/event-stream"})
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.json == {"result": {"words": 6, "unique_words": 5, "characters": 22, "lines": 2}}


def test_errors_of_plain_and_coroutine_functions(registry: FunctionRegistry, own: FlaskClient) -> None:
    @registry.register
    async def add(a: int, b: float = 0.5) -> float:
        return a + b

    @registry.register
    def picky(word: str) -> str:
        if word == "bad":
            raise InputError("word", "must not be 'bad'")
        if word == "odd":
            raise ValueError("cannot handle odd words")
        if word == "bug":
            raise RuntimeError("secret internals")
        return word

    assert own.post("/invoke/add", json={"inputs": {"a": 2}}).json == {"result": 2.5}
    assert own.post("/invoke/add", json={"inputs": {"a": 2.0, "b": 1}}).json == {"result": 3}
    assert own.post("/invoke/picky", json={"inputs": {"word": "fine"}}).json == {"result": "fine"}
    assert error_of(own.post("/invoke/picky", json={"inputs": {"word": "bad"}}), 400) == \
        "invalid inputs for picky: inputs.word: must not be 'bad'"
    response = own.post("/invoke/picky", json={"inputs": {"word": "odd"}})
    assert error_of(response, 422) == "picky failed: cannot handle odd words"
    assert response.json["error"]["type"] == "function_failed"
    response = own.post("/invoke/picky", json={"inputs": {"word": "bug"}})
    assert "secret" not in error_of(response, 500) and response.json["error"]["type"] == "internal_error"


# -- streaming functions -------------------------------------------------------------------------------

def test_sync_and_async_generators_stream_their_events(registry: FunctionRegistry, own: FlaskClient) -> None:
    closed: list[str] = []

    @registry.register
    def sync_steps(n: int) -> Iterator[dict]:
        try:
            yield sse.start({"n": n})
            for i in range(1, n + 1):
                yield sse.progress(i, n)
            yield sse.done({"n": n})
        finally:
            closed.append("sync")

    @registry.register
    async def async_steps(n: int) -> AsyncIterator[dict]:
        try:
            for i in range(1, n + 1):  # no start: the stream sends one first
                yield sse.progress(i, n)
        finally:
            closed.append("async")

    for name in ("sync_steps", "async_steps"):
        events = events_of(own.post(f"/invoke/{name}", json={"inputs": {"n": 4}}))
        assert [e["type"] for e in events] == ["start", "progress", "progress", "progress", "progress", "done"]
        assert [e["data"]["percentage"] for e in events[1:-1]] == [25, 50, 75, 100]
    assert closed == ["sync", "async"]


def test_errors_before_the_first_event_are_http_errors_and_later_ones_error_events(
    registry: FunctionRegistry, own: FlaskClient
) -> None:
    @registry.register
    def checks_first(word: str) -> Iterator[dict]:
        if word == "bad":
            raise InputError("word", "must not be 'bad'")
        yield sse.start()
        yield sse.progress(1, 2)
        if word == "odd":
            raise ValueError("cannot handle odd words")
        if word == "wrong":
            raise InputError("word", "turned out wrong")
        raise RuntimeError("secret internals")

    @registry.register
    async def nothing() -> AsyncIterator[dict]:
        return
        yield  # pragma: no cover - makes this an async generator

    assert "inputs.word: must not be 'bad'" in error_of(own.post("/invoke/checks_first",
                                                                 json={"inputs": {"word": "bad"}}), 400)
    for word, code in (("odd", "function_failed"), ("wrong", "invalid_request"), ("bug", "internal_error")):
        events = events_of(own.post("/invoke/checks_first", json={"inputs": {"word": word}}))
        assert [e["type"] for e in events] == ["start", "progress", "error"]
        assert events[-1]["error_code"] == code
        assert "secret" not in events[-1]["data"]
    assert [e["type"] for e in events_of(own.post("/invoke/nothing"))] == ["start", "done"]


def test_batch_process_reports_each_item(client: FlaskClient) -> None:
    events = events_of(client.post("/invoke/batch_process",
                                   json={"inputs": {"items": ["hello big world", 3, [1, 2]], "delay": 0}}))
    assert [e["type"] for e in events] == ["start", "progress", "progress", "progress", "done"]
    assert events[0]["data"]["total"] == 3
    first, second, third = (e["data"] for e in events[1:4])
    assert first["item"] == "hello big world"
    assert first["result"] == {"upper": "HELLO BIG WORLD", "length": 15, "words": 3}
    assert second["result"] == {"value": 3, "square": 9} and third["result"] == {"size": 2}
    assert [(d["current"], d["total"], d["percentage"]) for d in (first, second, third)] == \
        [(1, 3, 33), (2, 3, 66), (3, 3, 100)]
    assert events[-1]["data"]["processed"] == 3


def test_chat_stream_streams_the_upstream_reply(client: FlaskClient, upstream: FakeUpstream) -> None:
    upstream.configure(reply="one two three")
    events = events_of(client.post("/invoke/chat_stream", json={"inputs": {
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                     {"role": "user", "content": "c"}],
        "system_prompt": "brief", "temperature": 0, "max_tokens": 9}}))
    assert "".join(e["data"] for e in events if e["type"] == "content") == "one two three"
    assert events[-1]["data"]["chunks"] == 3 and events[-1]["data"]["characters"] == 13
    sent = upstream.stats()["last_request"]["json"]
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["temperature"] == 0 and sent["max_tokens"] == 9


# -- forms and uploads ---------------------------------------------------------------------------------

def upload(text: bytes, name: str = "notes.txt") -> tuple[io.BytesIO, str]:
    return io.BytesIO(text), name


def test_process_text_file_takes_an_upload_with_form_fields(client: FlaskClient) -> None:
    text = "".join(f"line {i} has words\n" for i in range(1, 26)).encode()
    events = events_of(client.post("/invoke/process_text_file", data={"file": upload(text), "every": "10"}))
    progress = [e["data"] for e in events if e["type"] == "progress"]
    assert [(p["current"], p["percentage"]) for p in progress] == [(10, 40), (20, 80), (25, 100)]
    assert events[0]["data"]["total_lines"] == 25
    assert events[-1]["data"] == {"lines": 25, "words": 100, "characters": len(text) - 25, "blank_lines": 0,
                                  "longest_line": len("line 10 has words"), "success": True}


def test_process_text_file_takes_inputs_as_a_json_form_field_or_text(client: FlaskClient) -> None:
    events = events_of(client.post("/invoke/process_text_file",
                                   data={"file": upload("a\nb\nc".encode()), "inputs": '{"every": 2}'}))
    assert [e["data"]["current"] for e in events if e["type"] == "progress"] == [2, 3]
    events = events_of(client.post("/invoke/process_text_file", json={"inputs": {"file": "x y\nz", "every": 1}}))
    assert events[-1]["data"]["words"] == 3 and events[-1]["data"]["lines"] == 2


@pytest.mark.parametrize(("data", "status", "named"), [
    ({"file": (io.BytesIO(b"\xff\xfeabc"), "x.bin")}, 400, "inputs.file: x.bin is not utf-8 text"),
    ({"file": (io.BytesIO(b"a\x00b"), "z.bin")}, 400, "inputs.file: z.bin is not text"),
    ({"file": (io.BytesIO(b"a"), "a.txt"), "every": "ten"}, 400, "inputs.every: expected an integer, got the form"),
    ({"file": (io.BytesIO(b"a"), "a.txt"), "every": "0"}, 400, "inputs.every: must be >= 1"),
    ({"file": [(io.BytesIO(b"a"), "a.txt"), (io.BytesIO(b"b"), "b.txt")]}, 400, "inputs.file: given more than once"),
    ({"file": (io.BytesIO(b"a"), "a.txt"), "inputs": "[1]"}, 400, "'inputs' must hold a JSON object"),
    ({"file": (io.BytesIO(b"a"), "a.txt"), "inputs": '{"every": 2}', "every": "3"}, 400, "inputs.every: given more"),
    ({"every": "3"}, 400, "inputs.file: required"),
    ({"file": (io.BytesIO(b"a"), "a.txt"), "other": (io.BytesIO(b"b"), "b.txt")}, 400, "inputs.other: unknown"),
])
def test_bad_uploads_are_400s_naming_the_field(client: FlaskClient, data: dict, status: int, named: str) -> None:
    assert named in error_of(client.post("/invoke/process_text_file", data=data), status)


def test_form_fields_follow_the_declared_types_and_uploads_are_bounded(
    registry: FunctionRegistry, own: FlaskClient
) -> None:
    @registry.register
    def echo(flag: bool, ratio: float, tags: list, meta: dict, upload: UploadedFile | None = None) -> dict:
        size = None if upload is None else [upload.filename, len(upload.data)]
        return {"flag": flag, "ratio": ratio, "tags": tags, "meta": meta, "upload": size}

    def form(**changes: Any) -> dict[str, Any]:  # fresh file objects: the client closes them
        return {"flag": "true", "ratio": "0.25", "tags": '["a"]', "meta": '{"k": 1}',
                "upload": upload(b"abc", "u.bin"), **changes}

    assert own.post("/invoke/echo", data=form()).json["result"] == {
        "flag": True, "ratio": 0.25, "tags": ["a"], "meta": {"k": 1}, "upload": ["u.bin", 3]}
    assert "inputs.flag: expected a boolean" in error_of(own.post("/invoke/echo", data=form(flag="maybe")), 400)
    assert error_of(own.post("/invoke/echo", data=form(upload=upload(b"x" * 8192, "big.bin"))), 413)
    assert "inputs.ratio: expected a number, got file" in error_of(
        own.post("/invoke/echo", data=form(ratio=upload(b"1", "r.txt"))), 400)
