"""The llm node: its model on every call, the configured defaults, FlowGram's checks and messages, and
the bounded cache of clients for other hosts. Against the fake upstream (a real server on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from llm_client import LLMClient
from tests.fake_upstream import FakeUpstream
from tests.workflow.builders import edge, node, obj
from workflow import RuntimeSettings, WorkflowRuntime
from workflow.store import MemoryTaskStore

CONFIGURED_MODEL = "configured-model"
NODE_KEY = "sk-node-key-abcdef123456"
CHAT = "/v1/chat/completions"


def llm_schema(**values: Any) -> str:
    """start -> llm (``values`` as constants; None leaves the input out) -> end(result)."""
    given = {name: value for name, value in values.items() if value is not None}
    properties = {name: {"type": "number" if name == "temperature" else "string"} for name in given}
    llm = node("llm_0", "llm", title="LLM", inputs=obj(**properties),
               inputsValues={name: {"type": "constant", "content": value} for name, value in given.items()},
               outputs=obj(result={"type": "string"}))
    start = node("start_0", "start", title="Start", outputs=obj())
    end = node("end_0", "end", title="End", inputs=obj(result={"type": "string"}),
               inputsValues={"result": {"type": "ref", "content": ["llm_0", "result"]}})
    return json.dumps({"nodes": [start, llm, end], "edges": [edge("start_0", "llm_0"), edge("llm_0", "end_0")]})


def run(runtime: WorkflowRuntime, schema: str) -> tuple[str, dict[str, Any], str]:
    """The task's status, outputs and error messages (joined); no message may show a key."""
    record = runtime.wait(runtime.run(schema, {}), 60)
    assert record is not None and record.report is not None
    errors = " | ".join(m["message"] for m in record.report["messages"]["error"])
    assert NODE_KEY not in errors + (record.error or "")
    return record.status, record.outputs or {}, errors


def chat_requests(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return [r for r in upstream.stats()["requests_log"] if r["path"] == CHAT]


@pytest.fixture
def app_client(upstream: FakeUpstream) -> Iterator[LLMClient]:
    """The app's own client: the configured server and model, and a key of its own."""
    with LLMClient(upstream.base_url, api_key="sk-app-key-0000000000", model=CONFIGURED_MODEL, env={}) as client:
        yield client


@pytest.fixture
def runtime(upstream: FakeUpstream, app_client: LLMClient) -> Iterator[WorkflowRuntime]:
    settings = RuntimeSettings(allowed_hosts=frozenset({"127.0.0.1:9"}), llm_base_url=upstream.base_url,
                               llm_model=CONFIGURED_MODEL)
    runtime = WorkflowRuntime(MemoryTaskStore(), settings, llm_provider=lambda: app_client)
    yield runtime
    runtime.shutdown()


# -- the model ------------------------------------------------------------------------------------


def test_the_node_model_reaches_the_configured_server(runtime: WorkflowRuntime, upstream: FakeUpstream) -> None:
    """Issue 12, item 1: with apiHost the configured server, the node's modelName is the request's model."""
    status, _, errors = run(runtime, llm_schema(modelName="gpt-4o", apiHost=upstream.base_url, temperature=0.2,
                                                prompt="hi"))
    assert status == "succeeded", errors
    (request,) = chat_requests(upstream)
    assert request["json"]["model"] == "gpt-4o"
    assert request["headers"]["Authorization"] == "Bearer sk-app-key-0000000000"  # the app's client, its key


def test_a_node_naming_nothing_uses_the_configured_server_and_model(runtime: WorkflowRuntime,
                                                                    upstream: FakeUpstream) -> None:
    status, outputs, errors = run(runtime, llm_schema(temperature=0, prompt="say hi"))
    assert status == "succeeded", errors
    assert outputs == {"result": "echo: say hi"}
    (request,) = chat_requests(upstream)
    assert request["json"]["model"] == CONFIGURED_MODEL
    assert request["json"]["messages"] == [{"role": "user", "content": "say hi"}]


def test_nodes_with_other_models_on_another_host_share_one_client(upstream: FakeUpstream) -> None:
    """The model is per call, not per client: one client for one host and key."""
    runtime = WorkflowRuntime(MemoryTaskStore(), RuntimeSettings(allowed_hosts=frozenset({f"127.0.0.1:{upstream.port}"})))
    try:
        for model in ("m-one", "m-two", "m-one"):
            status, _, errors = run(runtime, llm_schema(modelName=model, apiHost=upstream.base_url, apiKey=NODE_KEY,
                                                        temperature=0.5, prompt="x"))
            assert status == "succeeded", errors
        requests = chat_requests(upstream)
        assert [r["json"]["model"] for r in requests] == ["m-one", "m-two", "m-one"]
        assert {r["headers"]["Authorization"] for r in requests} == {f"Bearer {NODE_KEY}"}
        assert len(runtime._llm_clients) == 1  # noqa: SLF001 - one host, one key
    finally:
        runtime.shutdown()


def test_system_prompt_is_sent_only_when_truthy(runtime: WorkflowRuntime, upstream: FakeUpstream) -> None:
    run(runtime, llm_schema(temperature=0, systemPrompt="be brief", prompt="p1"))
    run(runtime, llm_schema(temperature=0, systemPrompt="", prompt="p2"))
    first, second = (r["json"]["messages"] for r in chat_requests(upstream))
    assert first == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "p1"}]
    assert second == [{"role": "user", "content": "p2"}]


# -- FlowGram's checks and messages -----------------------------------------------------------------


def test_missing_inputs_in_flowgram_order() -> None:
    runtime = WorkflowRuntime(MemoryTaskStore(), RuntimeSettings())  # no configured server, no defaults
    try:
        status, _, errors = run(runtime, llm_schema(modelName="", prompt=""))
        assert status == "failed"
        assert errors == 'LLM node missing required inputs: "modelName", "temperature", "apiKey", "apiHost", "prompt"'
        status, _, errors = run(runtime, llm_schema(modelName="m", temperature=0, apiHost="http://h/v1", prompt="p"))
        assert errors == 'LLM node missing required inputs: "apiKey"'  # temperature 0 is there (isNil)
    finally:
        runtime.shutdown()


@pytest.mark.parametrize(("api_host", "message"), [
    ("ftp://127.0.0.1:9/v1", "Invalid API host protocol - ftp:"),
    ("FILE:///etc/passwd", "Invalid API host protocol - file:"),
    ("sk-node-key-abcdef123456-very-long:x", "Invalid API host protocol - (not shown)"),
    ("mock-ai-url/api/v3", "Invalid URL"),
])
def test_api_host_checks(runtime: WorkflowRuntime, upstream: FakeUpstream, api_host: str, message: str) -> None:
    status, _, errors = run(runtime, llm_schema(modelName="m", apiKey=NODE_KEY, apiHost=api_host, temperature=0,
                                                prompt="p"))
    assert (status, errors) == ("failed", message)
    assert chat_requests(upstream) == []


@pytest.mark.parametrize("api_host", ["http://127.0.0.1:9/v1", f"http://127.0.0.1:9/v1?key={NODE_KEY}#{NODE_KEY}"])
def test_an_unreachable_host_is_a_network_error(runtime: WorkflowRuntime, api_host: str) -> None:
    """FlowGram: ``Network error: unreachable api "<apiHost>"``; a query or fragment (a key?) is not shown."""
    status, _, errors = run(runtime, llm_schema(modelName="m", apiKey="k", apiHost=api_host, temperature=0,
                                                prompt="p"))
    assert (status, errors) == ("failed", 'Network error: unreachable api "http://127.0.0.1:9/v1"')


@pytest.mark.parametrize(("temperature", "shown"), [(2.5, "2.5"), (-1, "-1")])
def test_a_temperature_out_of_range_fails_before_sending(runtime: WorkflowRuntime, upstream: FakeUpstream,
                                                        temperature: float, shown: str) -> None:
    status, _, errors = run(runtime, llm_schema(temperature=temperature, prompt="p"))
    assert (status, errors) == ("failed", f"LLM node: temperature must be between 0 and 2, got {shown}")
    assert chat_requests(upstream) == []


# -- the clients for other hosts -----------------------------------------------------------------


def test_the_cache_of_clients_is_bounded_and_closes_what_it_drops(upstream: FakeUpstream) -> None:
    from workflow.llm_clients import LLMClients

    clients = LLMClients(upstream.base_url, size=2, ttl=600)
    try:
        made = [clients.get(f"http://127.0.0.{i}:9/v1", NODE_KEY) for i in range(1, 5)]
        assert len(clients) == 2
        assert [c.closed for c in made] == [True, True, False, False]  # the least recently used, idle: closed
        assert clients.get("http://127.0.0.4:9/v1", NODE_KEY) is made[3]
        assert clients.get("http://127.0.0.4:9/v1", "sk-another-key-123456") is not made[3]  # one per key
    finally:
        clients.close()
    assert all(c.closed for c in made)


def test_a_dropped_client_in_use_is_closed_once_idle(upstream: FakeUpstream) -> None:
    from workflow.llm_clients import LLMClients

    upstream.configure(delay=0.5)
    clients = LLMClients("", size=1, ttl=600)
    busy = clients.get(upstream.base_url, NODE_KEY)
    answers: list[str] = []

    def call() -> None:
        answers.append(asyncio.run(busy.chat_async("slow", model="m")))

    thread = threading.Thread(target=call)
    thread.start()
    try:
        assert upstream.wait_for(lambda s: s["in_flight"] == 1, 10)
        other = clients.get("http://127.0.0.1:9/v1", NODE_KEY)  # drops `busy` while its call runs
        assert not busy.closed
        thread.join(30)
        assert answers == ["echo: slow"]
        deadline = time.monotonic() + 10
        while not busy.closed and time.monotonic() < deadline:  # the pool counts the call done just after
            clients.get("http://127.0.0.1:9/v1", NODE_KEY)
            time.sleep(0.01)
        assert busy.closed and not other.closed
    finally:
        thread.join(30)
        clients.close()


def test_clients_expire(upstream: FakeUpstream) -> None:
    from workflow.llm_clients import LLMClients

    clients = LLMClients("", size=8, ttl=0.05)
    try:
        first = clients.get("http://127.0.0.1:9/v1", NODE_KEY)
        deadline = time.monotonic() + 10
        while not first.closed and time.monotonic() < deadline:
            clients.get("http://127.0.0.2:9/v1", NODE_KEY)
            time.sleep(0.01)
        assert first.closed
        assert clients.get("http://127.0.0.1:9/v1", NODE_KEY) is not first
    finally:
        clients.close()


# -- the executor contract -----------------------------------------------------------------------


def test_a_custom_node_reaches_the_llm_through_the_contract(runtime: WorkflowRuntime, upstream: FakeUpstream) -> None:
    """What the llm node uses is in :class:`ExecutionContext`: the client for a host, resolve, the task's inputs."""
    from workflow import ExecutionContext, NodeResult, get_node_executor, register_node_executor
    from workflow import executor as executor_module

    async def ask(ctx: ExecutionContext) -> NodeResult:
        suffix = ctx.resolve({"type": "template", "content": "{{start_0.q}}!"}, {"type": "string"})
        client = ctx.llm_client(ctx.settings.llm_base_url, None)
        answer = await client.chat_async(ctx.workflow_inputs["q"] + (suffix.value if suffix else ""), model="m-custom")
        return NodeResult({"result": answer})

    schema = json.loads(llm_schema())
    schema["nodes"][0]["data"]["outputs"] = obj(q={"type": "string"})
    schema["nodes"][1]["type"] = "ask"
    assert get_node_executor("ask") is None
    register_node_executor("ask", ask)
    try:
        record = runtime.wait(runtime.run(json.dumps(schema), {"q": "why"}), 60)
    finally:
        executor_module._executors.pop("ask")  # noqa: SLF001 - the registry has no unregister
    assert record is not None and record.status == "succeeded", record and record.error
    assert record.outputs == {"result": "echo: whywhy!"}
    assert [r["json"]["model"] for r in chat_requests(upstream)] == ["m-custom"]

