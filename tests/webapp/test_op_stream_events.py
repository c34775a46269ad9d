"""An op's stream chunks become SSE events by their kind (ops/runs.py), in /api/ops, /api/flows and
``flowbridge run-op`` alike: flowllm's ``answer`` chunks are ``content`` events, ``tool`` chunks ``progress``
events, ``think`` and ``usage`` chunks are not sent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from ops import ChunkEnum, FlowStreamChunk
from ops.runs import ChunkEvents
from tests.fake_upstream import FakeUpstream
from webapp.cli.ops import _execute, _Printer

REPLY = {"reasoning_content": "a greeting: greet back", "content": "Hello there, friend",
         "tool_calls": [{"name": "wave", "arguments": {"hand": "left"}, "id": "call_1"}]}


def events_of(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/event-stream"
    frames = response.get_data(as_text=True).split("\n\n")
    return [json.loads(f[len("data: "):]) for f in frames if f.startswith("data: ")]


@pytest.mark.parametrize("url", ["/api/ops/stream_chat", "/api/flows/stream_chat"])
def test_stream_chat_sends_content_events(client: FlaskClient, upstream: FakeUpstream, url: str) -> None:
    upstream.script([REPLY])
    events = events_of(client.post(url, json={"inputs": {"query": "hi"}}, headers={"Accept": "text/event-stream"}))
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("content") == 3, kinds
    assert "".join(e["data"] for e in events if e["type"] == "content") == "Hello there, friend"
    # the model's reasoning is not output: no event carries it
    assert "greet back" not in json.dumps(events[:-1])
    [progress] = [e["data"] for e in events if e["type"] == "progress"]
    assert progress["message"] == "tool call: wave" and progress["current"] == 1 and progress["name"] == "wave"
    assert progress["function"] == {"name": "wave", "arguments": '{"hand": "left"}'} and progress["id"] == "call_1"
    assert "was not offered" in progress["problem"]
    assert events[-1]["data"]["answer"] == "Hello there, friend"


def test_chunk_events_map_every_kind() -> None:
    events = ChunkEvents()
    assert events.event(FlowStreamChunk(chunk_type=ChunkEnum.ANSWER, chunk="a")) == {"type": "content", "data": "a"}
    assert events.event(FlowStreamChunk(chunk_type="content", chunk="b")) == {"type": "content", "data": "b"}
    progress = {"current": 1, "total": 2, "percentage": 50, "message": "half"}
    assert events.event(FlowStreamChunk(chunk_type="progress", chunk=progress)) == {"type": "progress",
                                                                                    "data": progress}
    for kind in (ChunkEnum.THINK, ChunkEnum.USAGE, ChunkEnum.START):
        assert events.event(FlowStreamChunk(chunk_type=kind, chunk="x")) is None
    assert events.event(FlowStreamChunk(chunk_type="error", chunk="bad", metadata={"error_code": "x"})) == {
        "type": "error", "data": "bad", "error_code": "x"}
    assert events.event(FlowStreamChunk(chunk_type="error", chunk="bad"))["error_code"] == "op_failed"
    assert events.event(FlowStreamChunk(chunk_type="done", chunk={"s": 1}, done=True)) == {"type": "done",
                                                                                          "data": {"s": 1}}
    calls = [events.event(FlowStreamChunk(chunk_type=ChunkEnum.TOOL, chunk={
        "id": f"c{i}", "type": "function", "function": {"name": "search", "arguments": "{}"}})) for i in (1, 2)]
    assert [c["data"]["current"] for c in calls] == [1, 2] and calls[1]["data"]["id"] == "c2"
    # an op's own fields win over the defaults (a ReAct agent adds its status and step)
    mine = events.event(FlowStreamChunk(chunk_type=ChunkEnum.TOOL, chunk={"name": "x", "message": "ran x"}))
    assert mine["data"]["message"] == "ran x" and mine["data"]["current"] == 3


def test_run_op_prints_answer_chunks_and_tool_calls(capsys: pytest.CaptureFixture[str]) -> None:
    """``flowbridge run-op``'s printer reads the same events: answer text on stdout, tool calls on stderr."""

    async def run(context: Any) -> dict[str, Any]:
        for chunk in (FlowStreamChunk(chunk_type=ChunkEnum.THINK, chunk="hidden thought"),
                      FlowStreamChunk(chunk_type=ChunkEnum.ANSWER, chunk="Hello"),
                      FlowStreamChunk(chunk_type=ChunkEnum.TOOL, chunk={"function": {"name": "wave"}}),
                      FlowStreamChunk(chunk_type=ChunkEnum.ANSWER, chunk=" world")):
            await context.add_stream_chunk(chunk)
        return {"answer": "Hello world", "success": True}

    printer = _Printer(streaming=True)
    result = asyncio.run(_execute(run, {}, printer))
    printer.finish(result["answer"])
    out, err = capsys.readouterr()
    assert out == "Hello world\n" and err == "tool call: wave\n" and "hidden" not in out + err
