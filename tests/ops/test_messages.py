"""Message, Role, ChunkEnum and FlowStreamChunk as flowllm 0.2 defines them, importable from ``ops``;
a model's tool calls inside messages; an op streaming flowllm's chunk kinds through its context."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import ValidationError

from ops import (
    BaseAsyncOp,
    ChunkEnum,
    ContentBlock,
    FlowContext,
    FlowStreamChunk,
    Message,
    Role,
    ToolCall,
    Trajectory,
)
from ops.context import FlowStreamChunk as ContextChunk

MODEL_CALL = {
    "index": 0,
    "id": "call_a1",
    "type": "function",
    "function": {"name": "search", "arguments": '{"query": "tallest tower"}'},
}


def test_roles_and_chunk_kinds_are_flowllms_strings() -> None:
    assert [role.value for role in Role] == ["system", "user", "assistant", "tool"]
    flowllm_kinds = ["think", "answer", "tool", "usage", "error", "done"]
    assert [kind.value for kind in ChunkEnum][:6] == flowllm_kinds
    assert ChunkEnum.ANSWER == "answer" and Role("tool") is Role.TOOL


def test_there_is_one_stream_chunk_class() -> None:
    assert ContextChunk is FlowStreamChunk


def test_stream_chunk_fields_and_events() -> None:
    chunk = FlowStreamChunk(chunk_type=ChunkEnum.ANSWER, chunk="Hel")
    assert (chunk.flow_id, chunk.chunk, chunk.done, chunk.metadata) == ("", "Hel", False, {})
    assert chunk.model_dump(mode="json")["chunk_type"] == "answer"
    events = {kind.value: FlowStreamChunk(chunk_type=kind).event_type for kind in ChunkEnum}
    assert events == {
        "answer": "content", "content": "content", "tool": "progress", "progress": "progress",
        "error": "error", "done": "done", "start": "start", "think": None, "usage": None,
    }
    with pytest.raises(ValidationError, match="chunk_type"):
        FlowStreamChunk(chunk_type="banana")


def test_message_defaults_and_dump() -> None:
    message = Message(content="Hi")
    assert message.role is Role.USER and message.tool_calls == [] and message.tool_call_id == ""
    assert message.time_created and message.metadata == {} and message.name is None
    assert message.simple_dump() == {"role": "user", "content": "Hi", "reasoning_content": ""}
    assert message.simple_dump(add_reasoning=False) == {"role": "user", "content": "Hi"}
    with pytest.raises(ValidationError, match="role"):
        Message(role="narrator", content="x")


def test_an_assistant_message_carries_the_models_tool_calls() -> None:
    reply = Message(role="assistant", content=None, reasoning_content="need a search", tool_calls=[MODEL_CALL])
    call = reply.tool_calls[0]
    assert isinstance(call, ToolCall)
    assert (call.id, call.name, call.arguments) == ("call_a1", "search", '{"query": "tallest tower"}')
    assert call.argument_dict == {"query": "tallest tower"}
    assert reply.simple_dump() == {
        "role": "assistant", "content": "", "reasoning_content": "need a search", "tool_calls": [MODEL_CALL],
    }
    answer = Message(role=Role.TOOL, content="Burj Khalifa", tool_call_id=call.id)
    assert answer.simple_dump(add_reasoning=False) == {"role": "tool", "content": "Burj Khalifa",
                                                        "tool_call_id": "call_a1"}


def test_tool_call_arguments_may_be_given_as_an_object() -> None:
    call = ToolCall(id="c2", name="search", arguments={"query": "ü"})
    assert json.loads(call.arguments) == {"query": "ü"} and call.argument_dict == {"query": "ü"}
    broken = ToolCall(name="search", arguments="{not json")
    assert not broken.check_argument()
    with pytest.raises(ValueError):
        broken.argument_dict


def test_a_message_round_trips_through_its_json() -> None:
    reply = Message(role="assistant", content="ok", tool_calls=[MODEL_CALL], metadata={"step": 1})
    again = Message.model_validate_json(reply.model_dump_json())
    assert again == reply and again.tool_calls[0].argument_dict == {"query": "tallest tower"}


def test_multi_part_content() -> None:
    parts = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    message = Message(content=parts)
    assert all(isinstance(block, ContentBlock) for block in message.content)
    assert message.content[1].content == {"url": "https://x/y.png"}
    assert message.simple_dump()["content"] == parts
    assert message.text == "What is this?"


def test_trajectory() -> None:
    trajectory = Trajectory(task_id="t1", messages=[{"role": "user", "content": "q"}], score=0.5)
    assert trajectory.messages[0].role is Role.USER and trajectory.metadata == {}


# -- an op that streams, as flowllm's StreamChatOp test drives one ------------------------------------


class SpeakOp(BaseAsyncOp):
    """Streams a thought, two pieces of answer and a tool call, flowllm-style."""

    async def async_execute(self):
        messages = self.context.messages
        assert all(isinstance(m, Message) for m in messages)
        await self.context.add_stream_string_and_type("thinking…", ChunkEnum.THINK)
        for piece in ("Hello", ", world"):
            await self.context.add_stream_chunk(FlowStreamChunk(chunk_type=ChunkEnum.ANSWER, chunk=piece))
        await self.context.add_stream_chunk_and_type(ToolCall(**MODEL_CALL).simple_output_dump(), "tool")


def test_an_op_streams_flowllm_chunk_kinds_until_done() -> None:
    async def main() -> list[FlowStreamChunk]:
        queue: asyncio.Queue[FlowStreamChunk] = asyncio.Queue()
        op = SpeakOp()

        async def run() -> None:
            await op.async_call(messages=[Message(content="Hi")], stream_queue=queue)
            await op.context.add_stream_done()

        task = asyncio.ensure_future(run())
        chunks = []
        for _ in range(100):
            chunk = await asyncio.wait_for(queue.get(), timeout=10)
            if chunk.done:
                break
            chunks.append(chunk)
        await task
        assert all(chunk.flow_id == op.context.flow_id for chunk in chunks)
        return chunks

    chunks = asyncio.run(main())
    assert [chunk.chunk_type for chunk in chunks] == ["think", "answer", "answer", "tool"]
    assert "".join(c.chunk for c in chunks if c.chunk_type == ChunkEnum.ANSWER) == "Hello, world"
    assert [c.event_type for c in chunks] == [None, "content", "content", "progress"]
    assert chunks[-1].chunk["function"]["name"] == "search"


def test_adding_a_chunk_of_an_unknown_kind_is_an_error() -> None:
    with pytest.raises(ValidationError, match="chunk_type"):
        asyncio.run(FlowContext(stream_queue=asyncio.Queue()).add_stream_string_and_type("x", "banana"))
