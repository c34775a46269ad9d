"""URL tricks against the allow-list, through the real http and llm nodes: the canary is never reached.

A canary server on 127.0.0.1 records every connection; only another port of 127.0.0.1 (and the
fake upstream, for the llm node) is allowed. Each trick is a URL some parser reads as the canary
while another reads as an allowed host; each must fail its node with a message naming the
problem, and the canary must have accepted no connection at all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from llm_client import LLMClient, LLMStatusError
from tests.fake_upstream import FakeUpstream
from tests.workflow.ssrf_servers import Canary, allowed_server, canary_server, encode_location
from tests.workflow.test_http_node import FakeContext
from tests.workflow.test_http_node import node as http_data
from workflow import RuntimeSettings, WorkflowRuntime
from workflow.executor import NodeError
from workflow.nodes.http import execute_http
from workflow.store import MemoryTaskStore

pytestmark = pytest.mark.timeout(120)

SECRET = "sk-canary-secret-0123456789"

#: (id, URL with {C} = canary port and {A} = an allowed port of 127.0.0.1, words the error must contain)
URL_TRICKS = [
    ("backslash-before-userinfo", "http://127.0.0.1:{C}\\@127.0.0.1:{A}/x", "backslash"),
    ("two-backslashes", "http://127.0.0.1:{C}\\\\@127.0.0.1:{A}/x", "backslash"),
    ("backslash-then-path", "http://127.0.0.1:{C}\\x/@127.0.0.1:{A}/", "backslash"),
    ("backslashes-for-slashes", "http:\\\\127.0.0.1:{C}\\x", "backslash"),
    ("userinfo", "http://127.0.0.1:{A}@127.0.0.1:{C}/", "user info"),
    ("userinfo-with-password", "http://user:s3cr3t@127.0.0.1:{C}/", "user info"),
    ("encoded-at", "http://127.0.0.1:{A}%40127.0.0.1:{C}/", "percent-encoded"),
    ("fragment-before-at", "http://127.0.0.1:{C}#@127.0.0.1:{A}/", "not allowed"),
    ("query-before-at", "http://127.0.0.1:{C}?@127.0.0.1:{A}/", "not allowed"),
    ("tab-before-at", "http://127.0.0.1:{C}\t@127.0.0.1:{A}/", "whitespace"),
    ("space-before-at", "http://127.0.0.1:{C} @127.0.0.1:{A}/", "whitespace"),
    ("newline-before-at", "http://127.0.0.1:{C}\n@127.0.0.1:{A}/", "whitespace"),
    ("nul-before-at", "http://127.0.0.1:{C}\x00@127.0.0.1:{A}/", "control character"),
    ("tab-in-host", "http://127.0.0.1\t:{C}/", "whitespace"),
    ("percent-encoded-host", "http://%31%32%37.0.0.1:{C}/", "percent-encoded"),
    ("percent-encoded-dots", "http://127%2e0%2e0%2e1:{C}/", "percent-encoded"),
    ("fullwidth-digits", "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{C}/", "non-ASCII"),
    ("ideographic-full-stops", "http://127\u30020\u30020\u30021:{C}/", "non-ASCII"),
    ("fullwidth-at", "http://127.0.0.1:{C}\uff20127.0.0.1:{A}/", "non-ASCII"),
    ("decimal-ipv4", "http://2130706433:{C}/", "non-canonical"),
    ("hex-ipv4", "http://0x7f000001:{C}/", "non-canonical"),
    ("hex-dotted-ipv4", "http://0x7f.1:{C}/", "non-canonical"),
    ("octal-ipv4", "http://0177.0.0.1:{C}/", "non-canonical"),
    ("short-ipv4", "http://127.1:{C}/", "non-canonical"),
    ("three-part-ipv4", "http://127.0.1:{C}/", "non-canonical"),
    ("zero-ipv4", "http://0:{C}/", "non-canonical"),
    ("any-address", "http://0.0.0.0:{C}/", "not allowed"),
    ("trailing-dot-ipv4", "http://127.0.0.1.:{C}/", "dot"),
    ("trailing-dot-name", "http://localhost.:{C}/", "dot"),
    ("localhost", "http://localhost:{C}/", "not allowed"),
    ("localhost-upper-case", "HTTP://LOCALHOST:{C}/", "not allowed"),
    ("public-name-of-loopback", "http://127.0.0.1.nip.io:{C}/", "not allowed"),
    ("ipv6-loopback", "http://[::1]:{C}/", "not allowed"),
    ("ipv4-mapped-ipv6", "http://[::ffff:127.0.0.1]:{C}/", "IPv4"),
    ("ipv4-mapped-ipv6-hex", "http://[::ffff:7f00:1]:{C}/", "IPv4"),
    ("ipv4-compatible-ipv6", "http://[::127.0.0.1]:{C}/", "IPv4"),
    ("ipv6-zone-id", "http://[::1%25lo]:{C}/", "zone"),
    ("ipv6-without-brackets", "http://::1:{C}/", "':'"),
    ("two-ports", "http://127.0.0.1:{A}:{C}/", "':'"),
    ("port-with-leading-zero", "http://127.0.0.1:0{C}/", "port"),
    ("port-wrapping-around", "http://127.0.0.1:{C65536}/", "port"),
    ("one-slash", "http:/127.0.0.1:{C}/", '"//"'),
    ("no-slashes", "http:127.0.0.1:{C}/", '"//"'),
    ("three-slashes", "http:///127.0.0.1:{C}/", "no host"),
    ("other-scheme", "ftp://127.0.0.1:{C}/", "only http"),
]

#: (id, Location the allowed server answers with, words the error must contain)
REDIRECT_TRICKS = [
    ("plain", "http://127.0.0.1:{C}/", "not allowed"),
    ("backslash-before-userinfo", "http://127.0.0.1:{C}\\@127.0.0.1:{A}/", "backslash"),
    ("protocol-relative", "//127.0.0.1:{C}/", "not allowed"),
    ("backslashes-relative", "\\\\127.0.0.1:{C}/", "backslash"),
    ("slash-backslash", "/\\127.0.0.1:{C}/", "backslash"),
    ("scheme-and-backslashes", "http:\\\\127.0.0.1:{C}/", "backslash"),
    ("tab-before-at", "http://127.0.0.1:{C}\t@127.0.0.1:{A}/", "whitespace"),
    ("tab-between-slashes", "/\t/127.0.0.1:{C}/", "whitespace"),
    ("leading-space", " //127.0.0.1:{C}/", "not allowed"),  # http.client strips the blank
    ("userinfo", "http://127.0.0.1:{A}@127.0.0.1:{C}/", "user info"),
    ("decimal-ipv4", "http://2130706433:{C}/", "non-canonical"),
    ("ipv4-mapped-ipv6", "http://[::ffff:127.0.0.1]:{C}/", "IPv4"),
    ("localhost", "http://localhost:{C}/", "not allowed"),
    ("any-address", "http://0.0.0.0:{C}/", "not allowed"),
    ("fullwidth-digits", "http://\uff11\uff12\uff17.0.0.1:{C}/", "non-ASCII"),
]


def spell(template: str, canary: int, allowed: int) -> str:
    return template.replace("{C65536}", str(canary + 65536)).replace("{C}", str(canary)).replace("{A}", str(allowed))


@pytest.fixture(scope="module")
def _canary() -> Iterator[Canary]:
    with canary_server() as canary:
        yield canary


@pytest.fixture
def canary(_canary: Canary) -> Iterator[Canary]:
    _canary.reset()
    yield _canary
    assert _canary.hits() == [], "the canary was reached"


@pytest.fixture(scope="module")
def allowed() -> Iterator[ThreadingHTTPServer]:
    with allowed_server() as server:
        yield server


@pytest.fixture(scope="module")
def runtime(allowed: ThreadingHTTPServer, _upstream_server: FakeUpstream) -> Iterator[WorkflowRuntime]:
    hosts = {f"127.0.0.1:{allowed.server_address[1]}", f"127.0.0.1:{_upstream_server.port}"}
    runtime = WorkflowRuntime(MemoryTaskStore(), RuntimeSettings(allowed_hosts=frozenset(hosts)))
    yield runtime
    runtime.shutdown()


def _schema(node: dict[str, Any]) -> str:
    start = {"id": "start_0", "type": "start", "meta": {"position": {"x": 0, "y": 0}},
             "data": {"title": "Start", "outputs": {"type": "object", "properties": {}}}}
    end = {"id": "end_0", "type": "end", "meta": {"position": {"x": 0, "y": 0}},
           "data": {"title": "End", "inputs": {"type": "object", "properties": {}}, "inputsValues": {}}}
    node = {"id": "node_0", "meta": {"position": {"x": 0, "y": 0}}, **node}
    edges = [{"sourceNodeID": "start_0", "targetNodeID": "node_0"}, {"sourceNodeID": "node_0", "targetNodeID": "end_0"}]
    return json.dumps({"nodes": [start, node, end], "edges": edges})


def http_node(url: str, method: str = "GET") -> dict[str, Any]:
    data = http_data(url, method, headers={"Authorization": f"Bearer {SECRET}"})
    data["title"] = "HTTP"
    data["outputs"] = {"type": "object", "properties": {"body": {"type": "string"}, "statusCode": {"type": "integer"}}}
    return {"type": "http", "data": data}


def llm_node(api_host: str) -> dict[str, Any]:
    values = {"modelName": "fake-model", "apiKey": SECRET, "apiHost": api_host, "temperature": 0, "prompt": "hi"}
    properties = {name: {"type": "number" if name == "temperature" else "string"} for name in values}
    return {"type": "llm", "data": {
        "title": "LLM", "inputs": {"type": "object", "properties": properties},
        "inputsValues": {name: {"type": "constant", "content": value} for name, value in values.items()},
        "outputs": {"type": "object", "properties": {"result": {"type": "string"}}}}}


def run_workflow(runtime: WorkflowRuntime, node: dict[str, Any]) -> tuple[str, str]:
    """Run start -> node -> end; the task's status and its error messages (joined)."""
    task_id = runtime.run(_schema(node), {})
    record = runtime.wait(task_id, 60)
    assert record is not None and record.report is not None
    errors = " | ".join(m["message"] for m in record.report["messages"]["error"])
    assert SECRET not in errors + (record.error or "")  # error messages never show the key
    return record.status, errors


def _failed(status: str, errors: str, *words: str) -> None:
    assert status == "failed", errors
    for word in words:
        assert word in errors, errors


# -- the controls: the allowed hosts are reachable ----------------------------------------------


def test_allowed_hosts_are_reached(canary: Canary, allowed: ThreadingHTTPServer, runtime: WorkflowRuntime,
                                   upstream: FakeUpstream) -> None:
    port = allowed.server_address[1]
    status, errors = run_workflow(runtime, http_node(f"http://127.0.0.1:{port}/ok"))
    assert status == "succeeded", errors
    status, errors = run_workflow(runtime, llm_node(f"{upstream.base_url}"))
    assert status == "succeeded", errors


# -- URL tricks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("template", "words"), [t[1:] for t in URL_TRICKS], ids=[t[0] for t in URL_TRICKS])
def test_http_node_refuses(template: str, words: str, canary: Canary, allowed: ThreadingHTTPServer) -> None:
    port = allowed.server_address[1]
    url = spell(template, canary.port, port)
    with pytest.raises(NodeError) as info:
        asyncio.run(execute_http(FakeContext(http_data(url, retry_times=0), {f"127.0.0.1:{port}"})))
    assert words in str(info.value)
    assert "s3cr3t" not in str(info.value) and f"{port}@" not in str(info.value)  # user info is never echoed


@pytest.mark.parametrize(("template", "words"), [t[1:] for t in URL_TRICKS], ids=[t[0] for t in URL_TRICKS])
def test_http_node_in_a_workflow_refuses(template: str, words: str, canary: Canary, allowed: ThreadingHTTPServer,
                                         runtime: WorkflowRuntime) -> None:
    url = spell(template, canary.port, allowed.server_address[1])
    _failed(*run_workflow(runtime, http_node(url, "POST")), words)


@pytest.mark.parametrize(("template", "words"), [t[1:] for t in URL_TRICKS], ids=[t[0] for t in URL_TRICKS])
def test_llm_node_refuses(template: str, words: str, canary: Canary, upstream: FakeUpstream,
                          runtime: WorkflowRuntime) -> None:
    """The fake upstream is the allowed LLM host; the apiKey must never leave for the canary."""
    api_host = spell(template, canary.port, upstream.port)
    status, errors = run_workflow(runtime, llm_node(api_host))
    _failed(status, errors, "Invalid API host")
    assert words in errors or "Invalid API host protocol - ftp:" in errors, errors  # FlowGram's protocol check
    assert upstream.stats()["requests"] == 0


# -- redirects -----------------------------------------------------------------------------------


def _redirect_url(allowed: ThreadingHTTPServer, status: int, location: str) -> str:
    return f"http://127.0.0.1:{allowed.server_address[1]}/to/{status}/{encode_location(location)}"


@pytest.mark.parametrize(("template", "words"), [t[1:] for t in REDIRECT_TRICKS], ids=[t[0] for t in REDIRECT_TRICKS])
def test_http_node_refuses_redirects(template: str, words: str, canary: Canary, allowed: ThreadingHTTPServer,
                                     runtime: WorkflowRuntime) -> None:
    location = spell(template, canary.port, allowed.server_address[1])
    _failed(*run_workflow(runtime, http_node(_redirect_url(allowed, 302, location))), "redirect", words)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_every_redirect_status_is_checked_on_every_hop(status: int, canary: Canary, allowed: ThreadingHTTPServer,
                                                       runtime: WorkflowRuntime) -> None:
    trick = spell(REDIRECT_TRICKS[1][1], canary.port, allowed.server_address[1])
    second_hop = _redirect_url(allowed, status, trick)
    first_hop = _redirect_url(allowed, status, second_hop)
    _failed(*run_workflow(runtime, http_node(first_hop, "POST")), "redirect", "backslash")


@pytest.mark.parametrize(("template", "words"), [t[1:] for t in REDIRECT_TRICKS], ids=[t[0] for t in REDIRECT_TRICKS])
def test_llm_node_does_not_follow_redirects(template: str, words: str, canary: Canary, allowed: ThreadingHTTPServer,
                                            runtime: WorkflowRuntime) -> None:
    """The LLM client follows no redirect at all: its key is for the checked host only."""
    location = spell(template, canary.port, allowed.server_address[1])
    status, errors = run_workflow(runtime, llm_node(_redirect_url(allowed, 307, location)))
    _failed(status, errors, "redirect, which is not followed")


def test_credentials_are_dropped_when_a_redirect_leaves_the_host(allowed: ThreadingHTTPServer,
                                                                   runtime: WorkflowRuntime) -> None:
    with allowed_server() as other:
        hosts = {f"127.0.0.1:{allowed.server_address[1]}", f"127.0.0.1:{other.server_address[1]}"}
        own = WorkflowRuntime(MemoryTaskStore(), RuntimeSettings(allowed_hosts=frozenset(hosts)))
        try:
            same = _redirect_url(allowed, 302, "/landing")
            status, errors = run_workflow(own, http_node(_redirect_url(allowed, 302, same)))
            assert status == "succeeded", errors
            assert allowed.requests[-1]["headers"].get("Authorization") == f"Bearer {SECRET}"
            away = f"http://127.0.0.1:{other.server_address[1]}/landing"
            status, errors = run_workflow(own, http_node(_redirect_url(allowed, 302, away)))
            assert status == "succeeded", errors
            assert other.requests[-1]["path"] == "/landing" and "Authorization" not in other.requests[-1]["headers"]
        finally:
            own.shutdown()


def test_the_llm_client_itself_follows_no_redirect(canary: Canary, allowed: ThreadingHTTPServer) -> None:
    """Below the node: a redirect is an error of the client, so no caller's key goes where it points."""
    base_url = _redirect_url(allowed, 307, f"http://127.0.0.1:{canary.port}/v1/chat/completions")
    with LLMClient(base_url, api_key=SECRET, model="m", max_retries=2, env={}) as client:
        with pytest.raises(LLMStatusError, match="answered 307: a redirect, which is not followed") as info:
            client.chat("hi")
    assert info.value.status_code == 307 and SECRET not in str(info.value)
