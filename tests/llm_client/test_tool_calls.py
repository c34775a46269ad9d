"""Tool calling and structured output in LLMClient: tools, tool_choice, tool calls in completions and
put together from streamed deltas, response_format, the tool-call round trip, the cache, async twins
and the fault behaviour, against the fake upstream's scripted replies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from llm_client import LLMClient, LLMConnectionError, LLMStatusError
from llm_client._tools import ToolCallAssembler
from tests.fake_upstream import FakeUpstream

CHAT = "/v1/chat/completions"
ASK = [{"role": "user", "content": "weather in Oslo and Paris?"}]
WEATHER = {"type": "function", "function": {
    "name": "weather", "description": "Today's weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CLOCK = {"type": "function", "function": {"name": "clock", "description": "The time",
                                          "parameters": {"type": "object", "properties": {}}}}
TWO_CALLS = {"tool_calls": [{"name": "weather", "arguments": {"city": "Oslo, Norway (the capital)"}},
                            {"name": "weather", "arguments": {"city": "Paris"}}]}


@pytest.fixture
def client(upstream: FakeUpstream) -> Iterator[LLMClient]:
    with LLMClient(upstream.base_url, model="m", max_retries=0, env={}) as made:
        yield made


def chat_requests(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return [r["json"] for r in upstream.stats()["requests_log"] if r["path"] == CHAT]


def names_and_args(calls: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls]


def test_tool_calls_of_a_completion(client: LLMClient, upstream: FakeUpstream) -> None:
    upstream.script([TWO_CALLS])
    result = client.chat_completion(ASK, tools=[WEATHER, CLOCK], tool_choice="auto")
    assert result.finish_reason == "tool_calls" and result.text == ""
    assert names_and_args(result.tool_calls) == [("weather", {"city": "Oslo, Norway (the capital)"}),
                                                 ("weather", {"city": "Paris"})]
    assert [c["index"] for c in result.tool_calls] == [0, 1]
    assert all(c["id"] and c["type"] == "function" for c in result.tool_calls)
    sent = chat_requests(upstream)[-1]
    assert sent["tools"] == [WEATHER, CLOCK] and sent["tool_choice"] == "auto"
    # the assistant message to send back: content null, the calls without flowllm's index
    assert result.message == {"role": "assistant", "content": None, "tool_calls": [
        {"id": c["id"], "type": "function", "function": c["function"]} for c in result.tool_calls]}


def test_streamed_tool_calls_are_put_together(client: LLMClient, upstream: FakeUpstream) -> None:
    upstream.script([{"content": "Let me look.", **TWO_CALLS}])
    stream = client.chat_stream(ASK, tools=[WEATHER])
    assert "".join(stream) == "Let me look."  # iterating yields the text only
    assert stream.finish_reason == "tool_calls"
    assert names_and_args(stream.tool_calls) == [("weather", {"city": "Oslo, Norway (the capital)"}),
                                                 ("weather", {"city": "Paris"})]
    assert len({c["id"] for c in stream.tool_calls}) == 2
    assert chat_requests(upstream)[-1]["stream"] is True and chat_requests(upstream)[-1]["tools"] == [WEATHER]


def test_stream_deltas_carry_reasoning_and_usage(client: LLMClient, upstream: FakeUpstream) -> None:
    upstream.script([{"reasoning_content": "Oslo is cold", "content": "It is cold."}])
    stream = client.chat_stream(ASK, extra_body={"stream_options": {"include_usage": True}})
    deltas = list(stream.deltas())
    assert "".join(d.value for d in deltas if d.kind == "reasoning") == "Oslo is cold"
    assert "".join(d.value for d in deltas if d.kind == "content") == "It is cold."
    assert [d.kind for d in deltas][-1] == "usage" and stream.usage == deltas[-1].value
    assert [d.kind for d in deltas].index("content") > [d.kind for d in deltas].index("reasoning")
    assert stream.tool_calls == []


def test_the_assembler_joins_pieces_by_index() -> None:
    assembler = ToolCallAssembler()
    assembler.add([{"index": 1, "id": "b", "function": {"name": "clock", "arguments": ""}}])
    assembler.add([{"index": 0, "id": "a", "type": "function", "function": {"name": "wea", "arguments": '{"ci'}}])
    assembler.add([{"index": 0, "function": {"name": "ther", "arguments": 'ty": "Oslo"}'}}])
    assembler.add([{"index": 0, "id": "a", "function": {"arguments": ""}}])  # an id repeated is kept once
    assembler.add([{"id": "c", "function": {"name": "clock"}}, "junk"])  # no index, a new id: a new call
    assembler.add([{"function": {"arguments": "{}"}}])  # no index, no id: continues the last call
    assert assembler.calls == [
        {"index": 0, "id": "a", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}},
        {"index": 1, "id": "b", "type": "function", "function": {"name": "clock", "arguments": ""}},
        {"index": 2, "id": "c", "type": "function", "function": {"name": "clock", "arguments": "{}"}},
    ]


def test_tool_choice_and_response_format_reach_the_upstream(client: LLMClient, upstream: FakeUpstream) -> None:
    forced = {"type": "function", "function": {"name": "weather"}}
    result = client.chat_completion(ASK, tools=[WEATHER, CLOCK], tool_choice=forced)
    assert chat_requests(upstream)[-1]["tool_choice"] == forced
    assert names_and_args(result.tool_calls) == [("weather", {"city": ASK[0]["content"]})]  # the fake obeys
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "degrees": {"type": "integer"}},
              "required": ["city", "degrees"]}
    response_format = {"type": "json_schema", "json_schema": {"name": "weather", "schema": schema, "strict": True}}
    answer = client.chat("Oslo?", response_format=response_format)
    assert chat_requests(upstream)[-1]["response_format"] == response_format
    assert json.loads(answer) == {"city": "Oslo?", "degrees": 1}
    assert json.loads(client.chat("x", response_format={"type": "json_object"})) == {"echo": "x"}


def test_a_tool_call_round_trip(client: LLMClient, upstream: FakeUpstream) -> None:
    upstream.script([TWO_CALLS, "Oslo 3°C, Paris 12°C."], match="weather in Oslo")
    first = client.chat_completion(ASK, tools=[WEATHER])
    results = [{"role": "tool", "tool_call_id": c["id"], "content": f"{i * 9 + 3}°C"}
               for i, c in enumerate(first.tool_calls)]
    final = client.chat_completion([*ASK, first.message, *results], tools=[WEATHER])
    assert final.text == "Oslo 3°C, Paris 12°C." and final.tool_calls == []
    sent = chat_requests(upstream)[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert [m["tool_call_id"] for m in sent[2:]] == [c["id"] for c in first.tool_calls]
    # like OpenAI, the fake refuses a conversation that leaves a call unanswered
    with pytest.raises(LLMStatusError, match="tool_call_id") as info:
        client.chat_completion([*ASK, first.message, results[0]], tools=[WEATHER])
    assert info.value.status_code == 400


def test_malformed_tool_calls_are_returned_as_they_came(client: LLMClient, upstream: FakeUpstream) -> None:
    bad = {"tool_calls": [{"name": "weather", "arguments": '{"city": "Oslo"'},  # cut short: not JSON
                          {"name": "teleport", "arguments": "{}"}]}  # a tool that was not offered
    upstream.script([bad, bad])
    result = client.chat_completion(ASK, tools=[WEATHER])
    streamed = client.chat_stream(ASK, tools=[WEATHER])
    assert "".join(streamed) == ""
    for calls in (result.tool_calls, streamed.tool_calls):
        assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
            ("weather", '{"city": "Oslo"'), ("teleport", "{}")]


def test_the_cache_key_holds_tools_choice_and_format(upstream: FakeUpstream) -> None:
    upstream.script([TWO_CALLS], repeat=True)
    with LLMClient(upstream.base_url, model="m", max_retries=0, cache="memory", env={}) as client:
        def call(**options: Any) -> Any:
            return client.chat_completion(ASK, temperature=0, **options)

        first = call(tools=[WEATHER])
        assert first.cache == "miss" and len(first.tool_calls) == 2
        first.tool_calls[0]["function"]["name"] = "changed by the caller"
        again = call(tools=[WEATHER])
        assert again.cache == "hit" and names_and_args(again.tool_calls)[0][0] == "weather"  # a copy
        assert again.tool_calls == call(tools=[WEATHER]).tool_calls
        assert call(tools=[WEATHER, CLOCK]).cache == "miss"
        assert call(tools=[WEATHER], tool_choice="required").cache == "miss"
        assert call(tools=[WEATHER], response_format={"type": "json_object"}).cache == "miss"
        assert call(tools=[WEATHER], model="other").cache == "miss"
        assert call(tools=[WEATHER], tool_choice="required").cache == "hit"


def test_async_twins(client: LLMClient, upstream: FakeUpstream) -> None:
    upstream.script([TWO_CALLS, {"reasoning_content": "hmm", **TWO_CALLS}])

    async def main() -> tuple[Any, list[Any], Any]:
        completion = await client.chat_completion_async(ASK, tools=[WEATHER], tool_choice="auto", model="per-call")
        stream = client.chat_stream(ASK, tools=[WEATHER])
        deltas = [d async for d in client.iterate_deltas_async(stream)]
        return completion, deltas, stream

    completion, deltas, stream = asyncio.run(main())
    assert names_and_args(completion.tool_calls) == names_and_args(stream.tool_calls)
    assert [d.kind for d in deltas] == ["reasoning"] and deltas[0].value == "hmm"
    assert [r["model"] for r in chat_requests(upstream)] == ["per-call", "m"]


def test_faults_keep_their_behaviour_with_tools(upstream: FakeUpstream) -> None:
    with LLMClient(upstream.base_url, model="m", max_retries=2, env={"LLM_RETRY_INITIAL_DELAY": "0.01"}) as client:
        upstream.script([TWO_CALLS, TWO_CALLS])
        upstream.push_faults({"status": 503})
        assert len(client.chat_completion(ASK, tools=[WEATHER]).tool_calls) == 2  # retried before an answer
        upstream.reset()
        upstream.script([TWO_CALLS])
        upstream.push_faults({"kind": "stream_error"})  # the stream breaks after its first event
        with pytest.raises(LLMConnectionError):
            list(client.chat_stream(ASK, tools=[WEATHER]).deltas())
        assert upstream.stats()["requests"] == 1  # never retried once it started


@pytest.mark.parametrize(("options", "message"), [
    ({"tools": {"name": "x"}}, "tools must be a list"),
    ({"tools": [{"function": {"name": "x"}}]}, r"tools\[0\] must be"),
    ({"tools": [WEATHER, WEATHER]}, "two tools are named 'weather'"),
    ({"tools": [WEATHER], "tool_choice": "always"}, "tool_choice must be one of none, auto, required"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "clock"}}},
     "'clock', which is not among the tools"),
    ({"tool_choice": "required"}, "needs tools"),
    ({"response_format": {"type": "yaml"}}, "response_format.type must be one of"),
    ({"response_format": {"type": "json_schema"}}, "needs 'json_schema'"),
    ({"extra_body": {"messages": []}}, "extra_body may not set messages"),
])
def test_bad_tool_options_fail_before_sending(client: LLMClient, upstream: FakeUpstream,
                                              options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        client.chat_completion(ASK, **options)
    with pytest.raises(ValueError, match=message):
        client.chat_stream(ASK, **options)
    assert upstream.stats()["requests"] == 0


def test_messages_with_tool_calls_are_checked(client: LLMClient) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    with pytest.raises(ValueError, match=r"messages\[0\].tool_calls: only an assistant message"):
        client.chat_completion([{"role": "user", "content": "x", "tool_calls": [call]}])
    with pytest.raises(ValueError, match=r"messages\[1\].tool_calls\[0\] must be"):
        client.chat_completion([*ASK, {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]}])
    with pytest.raises(ValueError, match=r"messages\[1\].content must be a string \(or null, with tool_calls\)"):
        client.chat_completion([*ASK, {"role": "assistant", "content": None}])
    with pytest.raises(ValueError, match=r"messages\[2\].tool_call_id must be a string"):
        client.chat_completion([*ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
                                {"role": "tool", "tool_call_id": 7, "content": "x"}])
