"""examples/flows.yaml: every flow loads, and every one runs against the fake upstream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from ops import C, FlowContext, FlowResponse, OpApp, load_flows
from ops.app import DEFAULT_FLOWS
from tests.fake_upstream import FakeUpstream

FLOW_NAMES = sorted(yaml.safe_load(DEFAULT_FLOWS.read_text(encoding="utf-8"))["flows"])
STREAM_FLOWS = ["stream_chat"]


def chat_prompts(upstream: FakeUpstream) -> list[str]:
    """The last user message of each chat request the upstream saw, in order."""
    log = upstream.stats()["requests_log"]
    return [r["json"]["messages"][-1]["content"] for r in log if r["path"].endswith("/chat/completions")]


def check_chat(response: FlowResponse, upstream: FakeUpstream) -> None:
    assert response.answer == "echo: hello" and response.metadata["usage"]["total_tokens"] > 0


def check_chat_summary(response: FlowResponse, upstream: FakeUpstream) -> None:
    question, summary = chat_prompts(upstream)
    assert question == "hello"
    assert summary.startswith("Summarize the text below in at most 30 words.") and "Text:\necho: hello" in summary
    assert response.answer == f"echo: {summary}".strip()


def check_summarize(response: FlowResponse, upstream: FakeUpstream) -> None:
    assert response.answer.startswith("echo: Summarize the text below in at most 100 words.")
    assert response.answer.endswith("Text:\nCats sleep sixteen hours a day.")


def check_translate(response: FlowResponse, upstream: FakeUpstream) -> None:
    assert response.answer.startswith("echo: Translate the text below into German.")
    assert response.answer.endswith("Text:\nHola")


def check_summarize_and_translate(response: FlowResponse, upstream: FakeUpstream) -> None:
    summary, translation = chat_prompts(upstream)
    assert summary.startswith("Summarize the text below in at most 40 words.")
    # the translator got the summary (the fake's echo of the summary prompt), not the original text
    assert translation.startswith("Translate the text below into French.")
    assert "Text:\necho: Summarize the text below in at most 40 words." in translation
    assert response.answer.startswith("echo: Translate the text below into French.")


def check_extract_json(response: FlowResponse, upstream: FakeUpstream) -> None:
    assert response.answer == {"a": [1, 2]} and upstream.stats()["requests"] == 0


def check_extract_json_instruction(response: FlowResponse, upstream: FakeUpstream) -> None:
    assert response.answer == {"n": [1, 2]}
    (prompt,) = chat_prompts(upstream)
    assert "produce JSON for this request: the numbers" in prompt


def check_index_documents(response: FlowResponse, upstream: FakeUpstream) -> None:
    assert response.answer == "2" and len(response.metadata["indexed_ids"]) == 2


def check_ask_documents(response: FlowResponse, upstream: FakeUpstream) -> None:
    (prompt,) = chat_prompts(upstream)
    assert "[1] Rain is expected in Paris tomorrow." in prompt and "Question: Will it rain in Paris?" in prompt
    assert response.answer == f"echo: {prompt}".strip()


def check_echo(response: FlowResponse, upstream: FakeUpstream) -> None:
    assert response.answer == "Echo: hi"


Check = Callable[[FlowResponse, FakeUpstream], None]
DOCS = ["Rain is expected in Paris tomorrow.", {"id": "cats", "content": "Cats sleep a lot."}]

#: (flow, flows run first with their inputs, inputs, fake reply or None, check)
SAMPLES: list[Any] = [
    pytest.param("chat", [], {"query": "hello"}, None, check_chat, id="chat"),
    pytest.param("chat_summary", [], {"query": "hello"}, None, check_chat_summary, id="chat_summary"),
    pytest.param("summarize", [], {"text": "Cats sleep sixteen hours a day."}, None, check_summarize,
                 id="summarize"),
    pytest.param("translate", [], {"text": "Hola", "target_language": "German"}, None, check_translate,
                 id="translate"),
    pytest.param("summarize_and_translate", [], {"text": "A long original text."}, None,
                 check_summarize_and_translate, id="summarize_and_translate"),
    pytest.param("extract_json", [], {"text": 'Data: {"a": [1, 2]} done'}, None, check_extract_json,
                 id="extract_json"),
    pytest.param("extract_json", [], {"text": "one, two", "instruction": "the numbers"}, '```json\n{"n": [1, 2]}\n```',
                 check_extract_json_instruction, id="extract_json-instruction"),
    pytest.param("index_documents", [], {"documents": DOCS}, None, check_index_documents, id="index_documents"),
    pytest.param("ask_documents", [("index_documents", {"documents": DOCS})], {"query": "Will it rain in Paris?"},
                 None, check_ask_documents, id="ask_documents"),
    pytest.param("echo", [], {"text": "hi"}, None, check_echo, id="echo"),
]


def test_every_flow_loads() -> None:
    with OpApp(env={"LLM_BASE_URL": "http://127.0.0.1:9/v1"}):
        assert sorted(C.flows) == FLOW_NAMES
        assert sorted(load_flows(DEFAULT_FLOWS)) == FLOW_NAMES
        for name, flow in C.flows.items():
            assert flow.description, name
            assert flow.stream is (name in STREAM_FLOWS), name
            assert flow.tool_call.input_schema, name  # declared, or the root tool op's
            flow.build()  # the op arguments are valid
            assert flow.to_dict()["tool"]["function"]["name"] == name


def test_every_non_stream_flow_has_a_sample() -> None:
    sampled = {param.values[0] for param in SAMPLES}
    assert sampled == set(FLOW_NAMES) - set(STREAM_FLOWS)


@pytest.mark.parametrize(("name", "before", "inputs", "reply", "check"), SAMPLES)
def test_flow_runs(upstream: FakeUpstream, name: str, before: list[tuple[str, dict[str, Any]]],
                   inputs: dict[str, Any], reply: str | None, check: Check) -> None:
    async def main() -> FlowResponse:
        async with OpApp(env={"LLM_BASE_URL": upstream.base_url}):
            for other, other_inputs in before:
                await C.flows[other].run(FlowContext(**other_inputs))
            upstream.reset()
            if reply is not None:
                upstream.configure(reply=reply)
            flow = C.flows[name]
            assert flow.tool_call.validate_inputs(inputs) == []
            return await flow.run(FlowContext(**inputs))

    response = asyncio.run(main())
    assert response.success
    check(response, upstream)


def test_flows_with_required_inputs_reject_none() -> None:
    with OpApp(env={"LLM_BASE_URL": "http://127.0.0.1:9/v1"}):
        for name in ("chat_summary", "summarize", "translate", "summarize_and_translate", "extract_json",
                     "index_documents", "ask_documents", "echo"):
            assert any("is required" in problem for problem in C.flows[name].tool_call.validate_inputs({})), name


def test_stream_chat_flow_streams(upstream: FakeUpstream) -> None:
    upstream.configure(reply="Streaming works fine")

    async def main() -> tuple[FlowResponse, list[Any]]:
        async with OpApp(env={"LLM_BASE_URL": upstream.base_url}):
            queue: asyncio.Queue = asyncio.Queue()
            response = await C.flows["stream_chat"].run(FlowContext(query="go", stream_queue=queue))
            return response, [queue.get_nowait() for _ in range(queue.qsize())]

    response, chunks = asyncio.run(main())
    assert "".join(chunk.chunk for chunk in chunks) == response.answer == "Streaming works fine"
    assert len(chunks) == 3 and {chunk.event_type for chunk in chunks} == {"content"}  # flowllm's "answer" chunks
