"""The ``http`` node against a real HTTP server on 127.0.0.1 that records what it receives."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

import workflow.nodes.http as http_node
from workflow import WorkflowRuntime
from workflow.executor import NodeError, NodeResult, RuntimeSettings
from workflow.nodes.http import execute_http
from workflow.store import MemoryTaskStore

pytestmark = pytest.mark.timeout(60)

CONFORMANCE = Path(__file__).resolve().parent / "flowgram"  # FlowGram's own cases, copied in: see its README.md


class Recorder(BaseHTTPRequestHandler):
    """Records each request; the path picks the answer (``/status/404``, ``/redirect?to=``, ``/slow-once``)."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server: Any = self.server
        server.requests.append({"method": self.command, "path": self.path, "headers": self.headers,
                                "body": body})
        path = urlsplit(self.path).path
        if path.startswith("/redirect"):
            target = parse_qs(urlsplit(self.path).query)["to"][0]
            self._reply(302, b"", {"Location": target})
        elif path.startswith("/status/"):
            self._reply(int(path.rsplit("/", 1)[1]), b"Not Found")
        else:
            if path == "/slow-once" and len(server.requests) == 1:
                time.sleep(3.0)  # longer than the node's timeout: the first attempt times out
                self.close_connection = True
                return  # and its client is gone: nothing to answer
            self._reply(200, json.dumps({"echo": self.path}).encode(), {"Content-Type": "application/json"})

    def _reply(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("X-Reply", "yes")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def _server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(_server: ThreadingHTTPServer) -> ThreadingHTTPServer:
    _server.requests.clear()  # type: ignore[attr-defined]
    return _server


@pytest.fixture
def base(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_node, "RETRY_BACKOFF_SECONDS", 0.01)


class FakeContext:
    """Just enough of :class:`~workflow.executor.ExecutionContext`: constants only, ``{{a.b}}`` from a dict."""

    def __init__(self, data: dict[str, Any], allowed: set[str], variables: dict[str, str] | None = None) -> None:
        self.node = SimpleNamespace(id="http_0", type="http", data=data)
        self.inputs: dict[str, Any] = {}
        self.settings = RuntimeSettings(allowed_hosts=frozenset(allowed))
        self.variables = variables or {}
        self.warnings: list[str] = []
        self.cancelled = False

    def parse_inputs(self, schema: dict[str, Any] | None, values: dict[str, Any] | None) -> dict[str, Any]:
        declared = (schema or {}).get("properties") or {}
        return {key: value["content"] for key, value in (values or {}).items()
                if key in declared and value.get("type") == "constant"}

    def render_template(self, text: str) -> str:
        return re.sub(r"\{\{\s*([\w.]+)\s*\}\}", lambda m: self.variables.get(m.group(1), ""), text)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def constants(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A ``(schema, values)`` pair of constant flow values."""
    schema = {"type": "object", "properties": {key: {"type": "string"} for key in values}}
    return schema, {key: {"type": "constant", "content": value} for key, value in values.items()}


def node(url: str, method: str = "GET", body: dict[str, Any] | None = None, headers: dict[str, Any] | None = None,
         params: dict[str, Any] | None = None, timeout: int = 5000, retry_times: int = 0) -> dict[str, Any]:
    data: dict[str, Any] = {"api": {"method": method, "url": {"type": "template", "content": url}},
                            "body": body or {"bodyType": "none"},
                            "timeout": {"timeout": timeout, "retryTimes": retry_times}}
    for key, values in (("headers", headers), ("params", params)):
        if values is not None:
            data[key], data[f"{key}Values"] = constants(values)
    return data


def run(ctx: FakeContext) -> NodeResult:
    return asyncio.run(execute_http(ctx))


def allowed(base: str) -> set[str]:
    return {urlsplit(base).netloc}


def test_get_with_params_and_headers(server: Any, base: str) -> None:
    data = node(f"{base}/search?keep=1&q=old", headers={"X-Token": "abc", "X-Count": 3},
                params={"q": "hello world", "n": 5, "empty": ""})
    result = run(FakeContext(data, allowed(base)))
    (seen,) = server.requests
    assert seen["method"] == "GET" and seen["body"] == b""
    assert parse_qs(urlsplit(seen["path"]).query) == {"keep": ["1"], "q": ["hello world"], "n": ["5"]}
    assert "q=hello+world" in seen["path"]  # URLSearchParams spells spaces as +
    assert seen["headers"]["X-Token"] == "abc" and seen["headers"]["X-Count"] == "3"
    assert "Content-Type" not in seen["headers"]
    assert result.outputs["statusCode"] == 200
    assert json.loads(result.outputs["body"]) == {"echo": seen["path"]}
    assert result.outputs["headers"]["x-reply"] == "yes"
    assert all(name == name.lower() for name in result.outputs["headers"])
    assert result.snapshot_inputs == {  # typed values, as FlowGram's snapshot shows them
        "method": "GET", "url": f"{base}/search?keep=1&q=old", "headers": {"X-Token": "abc", "X-Count": 3},
        "params": {"q": "hello world", "n": 5, "empty": ""}, "bodyType": "none", "body": "",
        "retryTimes": 0, "timeout": 5000}


def test_flowgram_http_fixture_posts_json(server: Any, base: str) -> None:
    """http.json's node: a POST with a template URL and a JSON body (expected-results.json, http_200)."""
    schema = json.loads((CONFORMANCE / "http.json").read_text().replace("https://", "http://"))
    data = {k: v for k, v in next(n for n in schema["nodes"] if n["type"] == "http")["data"].items()
            if k not in ("title", "inputs", "outputs", "inputsValues")}
    host = urlsplit(base).netloc
    result = run(FakeContext(data, allowed(base), {"start_0.host": host, "start_0.path": "/post"}))
    (seen,) = server.requests
    assert (seen["method"], seen["path"], seen["body"]) == ("POST", "/post", b"{}")
    assert seen["headers"]["Content-Type"] == "application/json"
    case = next(c for c in json.loads((CONFORMANCE / "expected-results.json").read_text())["cases"]
                if c["id"] == "http_200")
    expected = next(s for s in case["expect"]["snapshots"] if s["nodeID"] == "http_0")["inputs"]
    assert result.snapshot_inputs == {**expected, "url": f"{base}/post"}
    assert result.outputs["statusCode"] == 200 and isinstance(result.outputs["body"], str)


@pytest.mark.parametrize(("body", "content_type", "sent", "snapshot_body"), [
    ({"bodyType": "JSON", "json": {"type": "template", "content": '{"a": 1}'}},
     "application/json", b'{"a": 1}', '{"a": 1}'),
    ({"bodyType": "raw-text", "rawText": {"type": "template", "content": "plain words"}},
     "text/plain", b"plain words", "plain words"),
    ({"bodyType": "binary", "binary": {"type": "template", "content": "AAEC"}},
     "application/octet-stream", b"AAEC", "AAEC"),
    ({"bodyType": "x-www-form-urlencoded", "xWwwFormUrlencoded": constants({"a": "1 2", "b": 3})[0],
      "xWwwFormUrlencodedValues": constants({"a": "1 2", "b": 3})[1]},
     "application/x-www-form-urlencoded", b"a=1+2&b=3", '{"a":"1 2","b":3}'),
])
def test_post_bodies_and_content_types(server: Any, base: str, body: dict[str, Any], content_type: str,
                                       sent: bytes, snapshot_body: str) -> None:
    result = run(FakeContext(node(f"{base}/post", "POST", body), allowed(base)))
    (seen,) = server.requests
    assert seen["headers"]["Content-Type"] == content_type and seen["body"] == sent
    assert result.snapshot_inputs["bodyType"] == body["bodyType"]
    assert result.snapshot_inputs["body"] == snapshot_body


def test_form_data_is_multipart(server: Any, base: str) -> None:
    schema, values = constants({"name": "ada", "age": 36})
    run(FakeContext(node(f"{base}/form", "PUT", {"bodyType": "form-data", "formData": schema,
                                                   "formDataValues": values}), allowed(base)))
    (seen,) = server.requests
    assert seen["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    assert b'name="name"\r\n\r\nada\r\n' in seen["body"] and b'name="age"\r\n\r\n36\r\n' in seen["body"]


#: Typed header/param/form values; the expectations below are what runtime-js 1.0.9 (under node 20) sent
#: to a recording server and put in its snapshot for the same values.
TYPED = {"n": 3, "f": 1.5e-7, "big": 1e21, "b": True, "o": {"a": 1, "2": [1.0, None]}, "a": [1, "x", None, [2, 3]],
         "10": "ten"}


def test_typed_values_are_sent_as_javascript_strings_and_snapshotted_typed(server: Any, base: str) -> None:
    run_result = run(FakeContext(node(f"{base}/typed", "POST", headers=TYPED, params=TYPED), allowed(base)))
    (seen,) = server.requests
    assert seen["path"] == "/typed?10=ten&n=3&f=1.5e-7&big=1e%2B21&b=true&o=%5Bobject+Object%5D&a=1%2Cx%2C%2C2%2C3"
    sent = {name: seen["headers"][name] for name in TYPED}
    assert sent == {"n": "3", "f": "1.5e-7", "big": "1e+21", "b": "true", "o": "[object Object]", "a": "1,x,,2,3",
                    "10": "ten"}
    snapshot = run_result.snapshot_inputs
    assert snapshot is not None
    for part in ("headers", "params"):
        assert snapshot[part] == {**TYPED, "o": {"2": [1, None], "a": 1}}
        assert list(snapshot[part]) == ["10", "n", "f", "big", "b", "o", "a"]  # JS key order, index keys first
        assert list(snapshot[part]["o"]) == ["2", "a"]


@pytest.mark.parametrize(("body_type", "sent"), [
    ("x-www-form-urlencoded", b"n=3&f=1.5e-7&big=1e%2B21&b=false&o=%5Bobject+Object%5D&a=1%2C"),
    ("form-data", None),
])
def test_form_bodies_format_numbers_as_javascript(server: Any, base: str, body_type: str, sent: bytes | None) -> None:
    key = {"form-data": "formData", "x-www-form-urlencoded": "xWwwFormUrlencoded"}[body_type]
    schema, values = constants({"n": 3, "f": 1.5e-7, "big": 1e21, "b": False, "o": {"z": 1, "1": 2}, "a": [1, None]})
    result = run(FakeContext(node(f"{base}/form", "POST", {"bodyType": body_type, key: schema, f"{key}Values": values}),
                             allowed(base)))
    (seen,) = server.requests
    if sent is not None:
        assert seen["body"] == sent
    else:
        for name, text in (("f", b"1.5e-7"), ("big", b"1e+21"), ("o", b"[object Object]"), ("a", b"1,")):
            assert b'name="%s"\r\n\r\n%s\r\n' % (name.encode(), text) in seen["body"]
    assert result.snapshot_inputs is not None
    assert result.snapshot_inputs["body"] == '{"n":3,"f":1.5e-7,"big":1e+21,"b":false,"o":{"1":2,"z":1},"a":[1,null]}'


def run_through_engine(data: dict[str, Any], base: str) -> Any:
    """start -> an http node with ``data`` -> end, through the whole engine; the finished task's record."""
    start = {"id": "start_0", "type": "start", "meta": {}, "data": {"outputs": {"type": "object", "properties": {}}}}
    end = {"id": "end_0", "type": "end", "meta": {}, "data": {"inputs": {"type": "object", "properties": {}}}}
    schema = {"nodes": [start, {"id": "http_0", "type": "http", "meta": {}, "data": data}, end],
              "edges": [{"sourceNodeID": "start_0", "targetNodeID": "http_0"},
                        {"sourceNodeID": "http_0", "targetNodeID": "end_0"}]}
    runtime = WorkflowRuntime(MemoryTaskStore(), RuntimeSettings(allowed_hosts=frozenset(allowed(base))))
    try:
        record = runtime.wait(runtime.run(json.dumps(schema), {}), 60)
    finally:
        runtime.shutdown()
    return record


def test_typed_values_through_the_engine_match_flowgrams_snapshot(server: Any, base: str) -> None:
    """The whole engine (real parse_inputs, declared types): FlowGram's snapshot inputs, recorded from runtime-js."""
    declared = {"n": "integer", "f": "number", "big": "number", "b": "boolean", "o": "object", "a": "array",
                "10": "string"}
    typed_inputs = ({"type": "object", "properties": {k: {"type": t} for k, t in declared.items()}},
                    {k: {"type": "constant", "content": TYPED[k]} for k in declared})
    data = {"title": "HTTP", "api": {"method": "POST", "url": {"type": "template", "content": f"{base}/typed"}},
            "headers": typed_inputs[0], "headersValues": typed_inputs[1], "params": typed_inputs[0],
            "paramsValues": typed_inputs[1], "body": {"bodyType": "none"},
            "timeout": {"timeout": 5000, "retryTimes": 0},
            "outputs": {"type": "object", "properties": {"statusCode": {"type": "integer"}}}}
    record = run_through_engine(data, base)
    assert record is not None and record.status == "succeeded" and record.report is not None
    (snapshot,) = record.report["reports"]["http_0"]["snapshots"]
    flowgram = {"10": "ten", "n": 3, "f": 1.5e-07, "big": 1e+21, "b": True, "o": {"2": [1, None], "a": 1},
                "a": [1, "x", None, [2, 3]]}  # runtime-js 1.0.9's snapshot of the same node
    assert snapshot["inputs"] == {"method": "POST", "url": f"{base}/typed", "headers": flowgram, "params": flowgram,
                                  "bodyType": "none", "body": "", "retryTimes": 0, "timeout": 5000}
    assert list(snapshot["inputs"]["headers"]) == list(flowgram)
    (seen,) = server.requests
    assert seen["path"] == "/typed?10=ten&n=3&f=1.5e-7&big=1e%2B21&b=true&o=%5Bobject+Object%5D&a=1%2Cx%2C%2C2%2C3"


def test_header_values_are_trimmed_and_sent_as_latin_1(server: Any, base: str) -> None:
    run(FakeContext(node(f"{base}/h", headers={"X-Pad": " padded\t", "X-Latin": " \u00a0caf\u00e9", "X-Empty": "  "}),
                    allowed(base)))
    (seen,) = server.requests
    assert [seen["headers"][name] for name in ("X-Pad", "X-Latin", "X-Empty")] == ["padded", "\u00a0caf\u00e9", ""]


@pytest.mark.parametrize(("headers", "message"), [  # fetch's own words (node 20), but for the hidden value
    ({"X-A": "\u0394"}, "Cannot convert argument to a ByteString because the character at index 0 has a value of "
                       "916 which is greater than 255."),
    ({"X-A": "ab\U0001F600"}, "Cannot convert argument to a ByteString because the character at index 2 has a value "
                              "of 55357 which is greater than 255."),
    ({"bad name": "v", "X-A": "\u0394"}, "Cannot convert argument to a ByteString because the character at index 0 "
                                        "has a value of 916 which is greater than 255."),
    ({"bad name": "v"}, 'Headers.append: "bad name" is an invalid header name.'),
    ({"X-A": "a\nb", "bad name": "v"},
     'Headers.append: the value of header "X-A" is an invalid header value (it contains NUL, CR or LF).'),
])
def test_headers_fetch_refuses(server: Any, base: str, headers: dict[str, str], message: str) -> None:
    with pytest.raises(NodeError, match=f"^{re.escape(message)}$"):
        run(FakeContext(node(f"{base}/h", headers=headers), allowed(base)))
    assert server.requests == []


def test_content_type_of_the_node_wins_and_get_sends_no_body(server: Any, base: str) -> None:
    body = {"bodyType": "JSON", "json": {"type": "template", "content": "{}"}}
    run(FakeContext(node(f"{base}/x", "GET", body, headers={"content-type": "application/vnd.x+json"}), allowed(base)))
    (seen,) = server.requests
    assert seen["headers"]["Content-Type"] == "application/vnd.x+json" and seen["body"] == b""


def test_non_2xx_is_still_a_success(server: Any, base: str) -> None:
    result = run(FakeContext(node(f"{base}/status/404", "POST"), allowed(base)))
    assert result.outputs["statusCode"] == 404 and result.outputs["body"] == "Not Found"


def test_head_has_an_empty_body(server: Any, base: str) -> None:
    result = run(FakeContext(node(f"{base}/x", "HEAD"), allowed(base)))
    assert server.requests[0]["method"] == "HEAD" and result.outputs["body"] == ""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_is_retried_then_fails() -> None:
    port = closed_port()
    ctx = FakeContext(node(f"http://127.0.0.1:{port}/x?key=secret", retry_times=2), {f"127.0.0.1:{port}"})
    with pytest.raises(NodeError) as info:
        run(ctx)
    assert str(info.value) == (f"HTTP request GET http://127.0.0.1:{port}/x failed after 3 attempts: "
                               "connection failed (Connection refused)")
    assert len(ctx.warnings) == 2 and ctx.warnings[0].startswith("HTTP attempt 1 failed: connection failed")


def test_timeout_is_retried_with_a_fresh_timeout(server: Any, base: str) -> None:
    ctx = FakeContext(node(f"{base}/slow-once", timeout=1000, retry_times=1), allowed(base))
    result = run(ctx)
    assert result.outputs["statusCode"] == 200 and len(server.requests) == 2
    assert ctx.warnings == ["HTTP attempt 1 failed: timed out after 1000 ms; retrying in 0.01 s"]


def test_backoff_is_flowgrams_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real RETRY_BACKOFF_SECONDS; the sleep itself is recorded instead
    assert http_node.RETRY_BACKOFF_SECONDS == 1.0
    delays: list[float] = []

    async def record(ctx: Any, seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(http_node, "_backoff", record)
    port = closed_port()
    with pytest.raises(NodeError, match="after 4 attempts"):
        run(FakeContext(node(f"http://127.0.0.1:{port}/", retry_times=3), {f"127.0.0.1:{port}"}))
    assert delays == [1.0, 2.0, 4.0]  # 2 ** attempt * 1000 ms


def test_cancel_stops_the_retries() -> None:
    port = closed_port()
    ctx = FakeContext(node(f"http://127.0.0.1:{port}/", retry_times=5), {f"127.0.0.1:{port}"})
    ctx.warn = lambda message: setattr(ctx, "cancelled", True)  # type: ignore[method-assign]
    with pytest.raises(NodeError, match="^HTTP request canceled$"):
        run(ctx)


def test_disallowed_host_fails_before_anything_is_sent(monkeypatch: pytest.MonkeyPatch, base: str) -> None:
    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the node touched the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(requests.Session, "request", no_network)
    with pytest.raises(NodeError, match="example.invalid"):
        run(FakeContext(node("http://example.invalid/x", "POST"), allowed(base)))


def test_redirects_are_followed_and_checked(server: Any, base: str) -> None:
    result = run(FakeContext(node(f"{base}/redirect?to=/landing", "POST"), allowed(base)))
    assert result.outputs["statusCode"] == 200 and [r["path"] for r in server.requests][-1] == "/landing"
    assert server.requests[-1]["method"] == "GET"  # fetch turns a redirected POST into a GET
    with pytest.raises(NodeError, match="example.invalid"):
        run(FakeContext(node(f"{base}/redirect?to=http://example.invalid/steal"), allowed(base)))


@pytest.mark.parametrize(("data", "message"), [
    ({"api": {"method": "GET", "url": {"type": "template", "content": ""}}}, "HTTP url is required"),
    ({"api": {"method": "GET"}}, "HTTP url is required"),
    ({"api": {"method": "POST", "url": "http://h/"}, "body": {"bodyType": "JSON"}}, "HTTP json body is required"),
    ({"api": {"method": "POST", "url": "http://h/"}, "body": {"bodyType": "xml"}}, 'HTTP invalid body type "xml"'),
    ({"api": {"method": "POST", "url": "http://h/"}, "body": {}}, 'HTTP invalid body type "undefined"'),
    ({"api": {"method": "POST", "url": "http://h/"}, "body": {"bodyType": None}}, 'HTTP invalid body type "null"'),
    ({"api": {"method": "POST", "url": "http://h/"}, "body": {"bodyType": ["JSON", 1]}},
     'HTTP invalid body type "JSON,1"'),  # `${bodyType}` of an array; it used to crash (unhashable)
    ({"api": {"method": "POST", "url": "http://h/"}, "body": {"bodyType": "form-data"}},
     "HTTP form-data body is required"),
    ({"api": {"method": "GET", "url": "http://h/"}, "timeout": {"timeout": "soon", "retryTimes": 0}},
     "HTTP timeout must be a number from 0 to 600000"),
])
def test_flowgram_setup_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(NodeError, match=f"^{re.escape(message)}$"):
        run(FakeContext(data, {"h"}))


def test_a_failed_http_node_shows_its_parsed_request_in_its_snapshot(server: Any, base: str) -> None:
    """FlowGram records the http snapshot's inputs before sending: a node failing after that still shows them
    (found by tests/workflow/test_differential.py against runtime-js 1.0.9)."""
    data = {"title": "HTTP", "api": {"method": "GET", "url": {"type": "template", "content": f"{base}/fails"}},
            "headers": {"type": "object", "properties": {"X-Name": {"type": "string"}}},
            "headersValues": {"X-Name": {"type": "constant", "content": "\u0394"}},
            "body": {"bodyType": "none"}, "timeout": {"timeout": 5000, "retryTimes": 0},
            "outputs": {"type": "object", "properties": {"statusCode": {"type": "integer"}}}}
    record = run_through_engine(data, base)
    assert record is not None and record.status == "failed" and record.report is not None
    (snapshot,) = record.report["reports"]["http_0"]["snapshots"]
    assert "ByteString" in snapshot["error"] and "outputs" not in snapshot
    assert snapshot["inputs"] == {"method": "GET", "url": f"{base}/fails", "headers": {"X-Name": "\u0394"}, "params": {},
                                  "bodyType": "none", "body": "", "retryTimes": 0, "timeout": 5000}
    assert server.requests == []
