"""The fake upstream's scripted replies (tests/fake_replies.py): tool calls streamed as OpenAI streams
them, per-conversation scripts, repeats, the /_control/script endpoint and the conversation checks."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.fake_upstream import FakeUpstream

CALL = {"name": "weather", "arguments": {"city": "Oslo, the capital of Norway"}}


def post(upstream: FakeUpstream, body: dict[str, Any], **kw: Any) -> requests.Response:
    return requests.post(upstream.base_url + "/chat/completions", json=body, timeout=5, **kw)


def chat(upstream: FakeUpstream, text: str, **extra: Any) -> dict[str, Any]:
    response = post(upstream, {"model": "m", "messages": [{"role": "user", "content": text}], **extra})
    assert response.status_code == 200, response.text
    return response.json()


def sse_chunks(response: requests.Response) -> list[dict[str, Any]]:
    lines = [line for line in response.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[6:]) for line in lines[:-1]]


def test_tool_calls_stream_in_pieces_as_openai_sends_them(upstream: FakeUpstream) -> None:
    upstream.script([{"reasoning_content": "need weather", "tool_calls": [CALL, {"name": "clock"}]}])
    body = {"model": "m", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hi", "reasoning_content": "earlier thoughts"}]}
    with post(upstream, body, stream=True) as response:
        chunks = sse_chunks(response)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0]["role"] == "assistant" and "reasoning_content" in deltas[0]
    call_deltas = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    first = [d for d in call_deltas if d["index"] == 0]
    assert first[0]["id"] and first[0]["function"] == {"name": "weather", "arguments": ""}
    assert len(first) > 3 and all("id" not in d and "name" not in d["function"] for d in first[1:])
    assert json.loads("".join(d["function"]["arguments"] for d in first)) == CALL["arguments"]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] >= 1


def test_scripts_per_conversation_and_repeat(upstream: FakeUpstream) -> None:
    upstream.script(["for A 1", "for A 2"], match="question A")
    upstream.script([{"tool_calls": [CALL]}], match=lambda body: "B" in body["messages"][-1]["content"], repeat=True)
    assert chat(upstream, "question B")["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "weather"
    assert chat(upstream, "question A")["choices"][0]["message"]["content"] == "for A 1"
    assert chat(upstream, "question B")["choices"][0]["finish_reason"] == "tool_calls"  # repeats
    assert chat(upstream, "question A")["choices"][0]["message"]["content"] == "for A 2"
    assert chat(upstream, "question A")["choices"][0]["message"]["content"] == "echo: question A"  # ran out
    ids = {chat(upstream, "B")["choices"][0]["message"]["tool_calls"][0]["id"] for _ in range(3)}
    assert len(ids) == 3  # each answer gets fresh call ids
    upstream.reset()
    assert chat(upstream, "question B")["choices"][0]["message"]["content"] == "echo: question B"


def test_script_over_the_control_endpoint(upstream: FakeUpstream) -> None:
    url = upstream.base_url.removesuffix("/v1") + "/_control/script"
    ok = requests.post(url, json={"replies": [{"content": None, "tool_calls": [CALL]}], "match": "x"}, timeout=5)
    assert ok.status_code == 200
    message = chat(upstream, "x")["choices"][0]["message"]
    assert message["content"] is None and json.loads(message["tool_calls"][0]["function"]["arguments"]) == \
        CALL["arguments"]
    bad = requests.post(url, json={"replies": [{"text": "x"}]}, timeout=5)
    assert bad.status_code == 400 and "bad reply" in bad.json()["error"]["message"]
    with pytest.raises(ValueError, match="bad tool_calls"):
        upstream.script([{"tool_calls": [{"arguments": "{}"}]}])


@pytest.mark.parametrize(("messages", "problem"), [
    ([{"role": "tool", "tool_call_id": "nope", "content": "x"}], "must answer a tool call"),
    ([{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
      {"role": "user", "content": "x"}], "must be followed by tool messages"),
    ([{"role": "user", "content": "x", "reasoning_content": 3}], "reasoning_content must be a string"),
])
def test_conversations_openai_would_refuse(upstream: FakeUpstream, messages: list[Any], problem: str) -> None:
    response = post(upstream, {"model": "m", "messages": messages})
    assert response.status_code == 400 and problem in response.json()["error"]["message"]


def test_tool_choice_must_name_an_offered_tool(upstream: FakeUpstream) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "a"}}],
            "tool_choice": {"type": "function", "function": {"name": "b"}}}
    response = post(upstream, body)
    assert response.status_code == 400 and "not among the tools" in response.json()["error"]["message"]
