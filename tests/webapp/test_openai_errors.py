"""``/v1`` errors through the official ``openai`` SDK: each status reaches it as its exception class, in
OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``; bad and hostile input is a 4xx naming
the problem, never a 500."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer
from tests.webapp.openai_live import KEY, UPSTREAM_MODEL, serve

AUTH = {"Authorization": f"Bearer {KEY}"}
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    with serve(_upstream_server.base_url, tmp_path_factory.mktemp("openai_errors")) as server:
        yield server


@pytest.fixture
def client(served: GunicornServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=served.url + "/v1", api_key=KEY, max_retries=0, timeout=60) as sdk:
        yield sdk


def shape(exc: openai.APIStatusError) -> dict[str, Any]:
    """The error object of an SDK exception, checked to be OpenAI's shape."""
    error = exc.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert exc.body == error  # the SDK read it as OpenAI's error body
    return error


def test_401_authentication_error(served: GunicornServer) -> None:
    with openai.OpenAI(base_url=served.url + "/v1", api_key="sk-wrong-key-000000000000", max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError) as caught:
            sdk.chat.completions.create(model=UPSTREAM_MODEL, messages=HELLO)
    error = shape(caught.value)
    assert error["type"] == "authentication_error" and error["code"] == "unauthorized"
    assert KEY not in caught.value.response.text


def test_400_n_above_1_and_a_missing_messages(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=UPSTREAM_MODEL, messages=HELLO, n=2)
    error = shape(caught.value)
    assert error["param"] == "n" and "n=2" in error["message"] and error["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/chat/completions", body={"model": UPSTREAM_MODEL}, cast_to=object)
    assert shape(caught.value)["param"] == "messages" and "messages" in caught.value.message


def test_404_unknown_model(client: openai.OpenAI) -> None:
    for make in (lambda: client.chat.completions.create(model="gpt-nonexistent", messages=HELLO),
                 lambda: client.chat.completions.create(model="flow/nope", messages=HELLO),
                 lambda: client.chat.completions.create(model="workflow/../secrets", messages=HELLO),
                 lambda: client.embeddings.create(model="no-such-embedder", input="x")):
        with pytest.raises(openai.NotFoundError) as caught:
            make()
        error = shape(caught.value)
        assert error["code"] == "model_not_found" and error["param"] == "model"


def test_409_a_workflow_canceled_while_it_runs(served: GunicornServer, client: openai.OpenAI,
                                              upstream: FakeUpstream) -> None:
    upstream.configure(delay=15)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(client.chat.completions.create, model="workflow/answer",
                             messages=[{"role": "user", "content": "a slow question"}])
        task_id = None
        deadline = time.monotonic() + 30
        while task_id is None and time.monotonic() < deadline:
            tasks = requests.get(served.url + "/api/tasks?status=processing", headers=AUTH, timeout=10).json()["tasks"]
            task_id = next((t["taskID"] for t in tasks), None)
            time.sleep(0.05)
        assert task_id is not None, "the workflow's task never showed up as processing"
        assert requests.put(served.url + "/api/task/cancel", json={"taskID": task_id}, headers=AUTH,
                            timeout=10).json() == {"success": True}
        with pytest.raises(openai.ConflictError) as caught:
            future.result(timeout=60)
    error = shape(caught.value)
    assert error["code"] == "task_canceled" and task_id in error["message"]


def test_422_a_flow_that_cannot_work_with_its_input(client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model="flow/extract_json",
                                       messages=[{"role": "user", "content": "there is no JSON here"}])
    error = shape(caught.value)
    assert error["code"] == "op_failed" and "no JSON" in error["message"]


def test_429_rate_limited_with_retry_after(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.push_faults({"status": 429, "headers": {"Retry-After": "7"}})
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=UPSTREAM_MODEL, messages=HELLO)
    assert shape(caught.value)["type"] == "rate_limit_error"
    assert caught.value.response.headers["Retry-After"] == "7"


def test_5xx_upstream_failures_are_internal_server_errors(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.push_faults({"status": 500})
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=UPSTREAM_MODEL, messages=HELLO)
    error = shape(caught.value)
    assert caught.value.status_code == 502 and error["type"] == "server_error" and error["code"] == "upstream_error"
    upstream.push_faults({"kind": "malformed"})
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=UPSTREAM_MODEL, messages=HELLO)


def test_an_upstream_failure_mid_stream_raises_in_the_sdk(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.push_faults({"kind": "stream_error_event"})
    stream = client.chat.completions.create(model=UPSTREAM_MODEL, messages=[{"role": "user", "content": "a b c"}],
                                            stream=True)
    with pytest.raises(openai.APIError, match="boom"):
        list(stream)


def test_an_upstream_error_before_the_first_token_is_a_status(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.push_faults({"status": 429, "headers": {"Retry-After": "3"}})
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=UPSTREAM_MODEL, messages=HELLO, stream=True)
    assert caught.value.response.headers["Retry-After"] == "3"


def test_embeddings_when_the_upstream_has_none(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.push_faults({"status": 404})
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model=UPSTREAM_MODEL, input="x")
    assert shape(caught.value)["code"] == "embeddings_not_supported"


#: (body, the field the message must name, status): bad and hostile bodies, raw.
BAD_BODIES: list[tuple[Any, str, int]] = [
    ({"messages": HELLO}, "model", 400),
    ({"model": UPSTREAM_MODEL, "messages": []}, "messages", 400),
    ({"model": UPSTREAM_MODEL, "messages": "hello"}, "messages", 400),
    ({"model": UPSTREAM_MODEL, "messages": [{"role": "wizard", "content": "x"}]}, "role", 400),
    ({"model": UPSTREAM_MODEL, "messages": [{"role": "user", "content": 5}]}, "content", 400),
    ({"model": UPSTREAM_MODEL, "messages": [{"role": "user"}]}, "content", 400),
    ({"model": UPSTREAM_MODEL, "messages": HELLO, "n": 0}, "n", 400),
    ({"model": UPSTREAM_MODEL, "messages": HELLO, "n": True}, "n", 400),
    ({"model": UPSTREAM_MODEL, "messages": HELLO, "temperature": 3}, "temperature", 400),
    ({"model": UPSTREAM_MODEL, "messages": HELLO, "temperature": "hot"}, "temperature", 400),
    ({"model": UPSTREAM_MODEL, "messages": HELLO, "max_tokens": 10 ** 30}, "max_tokens", 400),
    ({"model": UPSTREAM_MODEL, "messages": HELLO, "stream": "yes"}, "stream", 400),
    ({"model": UPSTREAM_MODEL, "messages": HELLO, "stream_options": {"include_usage": True}}, "stream_options", 400),
    ({"model": UPSTREAM_MODEL, "messages": HELLO, "tools": [{"type": "function"}]}, "tools", 400),
    ({"model": UPSTREAM_MODEL, "messages": HELLO, "tools": [{"type": "function", "function": {"name": "a"}}],
      "tool_choice": {"type": "function", "function": {"name": "b"}}}, "tool_choice", 400),
    ({"model": UPSTREAM_MODEL, "messages": HELLO, "response_format": {"type": "yaml"}}, "response_format", 400),
    ({"model": UPSTREAM_MODEL, "messages": HELLO, "functions": []}, "functions", 400),
    ({"model": 7, "messages": HELLO}, "model", 400),
    ({"model": "flow/echo", "messages": HELLO, "tools": [{"type": "function", "function": {"name": "a"}}]},
     "tools", 400),
    ({"model": "flow/echo", "messages": [{"role": "system", "content": "no user here"}]}, "user message", 400),
    ({"model": "workflow/loop", "messages": [{"role": "user", "content": "not an object"}]}, "JSON object", 400),
    ({"model": "workflow/loop", "messages": [{"role": "user", "content": '{"topics": 5}'}]}, "topics", 400),
    ([1, 2, 3], "JSON object", 400),
]


@pytest.mark.parametrize(("body", "named", "status"), BAD_BODIES, ids=lambda v: json.dumps(v)[:60])
def test_bad_input_is_an_openai_shaped_4xx_naming_the_problem(served: GunicornServer, body: Any, named: str,
                                                                status: int) -> None:
    with requests.post(served.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=30) as r:
        assert r.status_code == status, r.text
        error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert named in error["message"], error


@pytest.mark.parametrize("raw", [
    b'{"model": "x", "messages": [',  # broken JSON
    b'{"model": "x", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}",  # too deep
    b'{"model": "\\ud800", "messages": []}',  # a lone surrogate
    b'{"model": "x", "messages": [{"role": "user", "content": "a"}], "temperature": NaN}',
    b'{"model": "x", "messages": [{"role": "user", "content": "a"}], "temperature": 1e999}',
    "{\"model\": \"x\", \"messages\": [{\"role\": \"user\", \"content\": \"\u00e9\"}]}".encode("latin-1"),
])
def test_hostile_json_is_a_400_never_a_500(served: GunicornServer, raw: bytes) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    for path in ("/v1/chat/completions", "/v1/embeddings"):
        with requests.post(served.url + path, data=raw, headers=headers, timeout=30) as r:
            assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
            error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}


def test_a_body_that_is_not_json_is_a_415(served: GunicornServer) -> None:
    with requests.post(served.url + "/v1/chat/completions", data="hi", headers=AUTH, timeout=30) as r:
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"


def test_embeddings_bad_input(served: GunicornServer) -> None:
    for body, named in (({"model": UPSTREAM_MODEL, "input": [[1, 2, 3]]}, "input"),
                        ({"model": UPSTREAM_MODEL, "input": ""}, "input"),
                        ({"model": UPSTREAM_MODEL, "input": ["a", ""]}, "input"),
                        ({"model": UPSTREAM_MODEL, "input": "a", "encoding_format": "hex"}, "encoding_format")):
        with requests.post(served.url + "/v1/embeddings", json=body, headers=AUTH, timeout=30) as r:
            assert r.status_code == 400, r.text
            assert named in r.json()["error"]["message"]


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    """One worker with one LLM slot and no queue: a second concurrent LLM call is refused."""
    extra = {"LLM_ASYNC_WORKERS": "1", "LLM_ASYNC_QUEUE_SIZE": "0"}
    with serve(_upstream_server.base_url, tmp_path_factory.mktemp("openai_tight"), extra, workers=1,
               threads=4) as server:
        yield server


def test_503_overloaded_with_retry_after(tight: GunicornServer, upstream: FakeUpstream) -> None:
    upstream.configure(delay=5)
    with openai.OpenAI(base_url=tight.url + "/v1", api_key=KEY, max_retries=0, timeout=60) as sdk, \
            ThreadPoolExecutor(1) as pool:
        held = pool.submit(sdk.chat.completions.create, model=UPSTREAM_MODEL, messages=HELLO)
        assert upstream.wait_for(lambda s: s["in_flight"] >= 1, timeout=30)
        for stream in (False, True):
            with pytest.raises(openai.InternalServerError) as caught:
                sdk.chat.completions.create(model=UPSTREAM_MODEL, messages=HELLO, stream=stream)
            assert caught.value.status_code == 503 and caught.value.response.headers["Retry-After"]
            assert shape(caught.value)["code"] == "overloaded"
        assert held.result(timeout=60).choices[0].message.content == "echo: hello"


def test_500_an_unexpected_failure_is_openai_shaped_and_logged(upstream: FakeUpstream, tmp_path: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """No live server can be made to fail unexpectedly on purpose: the app in-process, with a view broken."""
    from webapp import create_app
    from webapp.routes import openai as v1

    def broken() -> list[Any]:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(v1, "list_models", broken)
    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "FLOWBRIDGE_SECRET_KEY": "s" * 32,
                      "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db")})
    response = app.test_client().get("/v1/models")
    assert response.status_code == 500
    error = response.json["error"]
    assert error == {"message": "internal server error; see the server log", "type": "server_error", "param": None,
                     "code": "internal_error"}
    # the SDK's class for it, from the status alone
    assert openai.OpenAI(api_key="x", base_url="http://127.0.0.1:9/v1")._make_status_error(
        "m", body=error, response=_httpx_response(500)).__class__ is openai.InternalServerError


def _httpx_response(status: int) -> Any:
    import httpx

    return httpx.Response(status, request=httpx.Request("GET", "http://127.0.0.1:9/v1/models"))


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    """Requests may take 2 s (FLOWBRIDGE_REQUEST_TIMEOUT)."""
    with serve(_upstream_server.base_url, tmp_path_factory.mktemp("openai_short"),
               {"FLOWBRIDGE_REQUEST_TIMEOUT": "2"}, workers=1, threads=4) as server:
        yield server


def test_the_request_deadline_is_a_504_and_a_workflow_past_it_is_canceled(short: GunicornServer,
                                                                         upstream: FakeUpstream) -> None:
    upstream.configure(delay=10)
    with openai.OpenAI(base_url=short.url + "/v1", api_key=KEY, max_retries=0, timeout=60) as sdk:
        for model in (UPSTREAM_MODEL, "workflow/answer"):
            with pytest.raises(openai.InternalServerError) as caught:
                sdk.chat.completions.create(model=model, messages=HELLO)
            assert caught.value.status_code == 504 and shape(caught.value)["code"] == "deadline_exceeded"
    tasks: list[dict[str, Any]] = []
    for _ in range(100):  # the cancel is recorded by the runner's loop: poll, bounded
        tasks = requests.get(short.url + "/api/tasks", headers=AUTH, timeout=10).json()["tasks"]
        if tasks and tasks[0]["status"] == "canceled":
            break
        time.sleep(0.05)
    assert [t["status"] for t in tasks] == ["canceled"]
