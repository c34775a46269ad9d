"""``self.llm`` in ops: flowllm 0.2's chat/achat/stream_chat/astream_chat over our client (ops/llm.py),
with flowllm-style op code, tool calls as ToolCall objects, malformed calls reported, and the client's
own methods still there."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from llm_client import LLMConnectionError, LLMStatusError
from ops import BaseAsyncOp, C, ChunkEnum, FlowContext, FlowStreamChunk, Message, OpApp, Role, ToolCall
from ops.llm import OpLLM, tool_error_message
from tests.fake_upstream import FakeUpstream

CHAT = "/v1/chat/completions"
WEATHER = ToolCall(name="weather", description="Today's weather",
                   input_schema={"city": {"type": "string", "description": "a city"},
                                 "days": {"type": "integer", "description": "how many", "required": False}})


@pytest.fixture
def app(upstream: FakeUpstream):
    env = {"LLM_BASE_URL": upstream.base_url, "LLM_MODEL": "configured", "LLM_MAX_RETRIES": "0"}
    with OpApp(env=env) as op_app:
        yield op_app


def sent(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return [r["json"] for r in upstream.stats()["requests_log"] if r["path"] == CHAT]


# -- flowllm's ChatOp and StreamChatOp as flowllm writes them (only the imports differ) ------------


class ChatOp(BaseAsyncOp):
    def __init__(self, llm: str = "qwen3_30b_instruct", **kwargs):
        super().__init__(llm=llm, **kwargs)

    async def async_execute(self):
        messages = self.context.messages
        assert isinstance(messages, list) and all(isinstance(m, Message) for m in messages)
        system_prompt = self.context.system_prompt
        assert system_prompt, "`system_prompt` is required!"
        messages = [Message(role=Role.SYSTEM, content=system_prompt)] + messages
        response = await self.llm.achat(messages=messages, tools=None)
        assert isinstance(response, Message), "Response must be a Message object!"
        self.context.response.answer = response.content.strip()


class StreamChatOp(BaseAsyncOp):
    def __init__(self, llm: str = "qwen3_30b_instruct", **kwargs):
        super().__init__(llm=llm, **kwargs)

    async def async_execute(self):
        messages = self.context.messages
        system_prompt = self.context.system_prompt
        messages = [Message(role=Role.SYSTEM, content=system_prompt)] + messages
        async for stream_chunk in self.llm.astream_chat(messages):
            assert isinstance(stream_chunk, FlowStreamChunk)
            if stream_chunk.chunk_type in [ChunkEnum.ANSWER, ChunkEnum.THINK, ChunkEnum.ERROR, ChunkEnum.TOOL]:
                await self.context.add_stream_chunk(stream_chunk)


def test_flowllm_chat_op_runs(app, upstream: FakeUpstream) -> None:
    context = FlowContext(messages=[Message(role=Role.USER, content="hello there")], system_prompt="Be brief.")
    asyncio.run(ChatOp().async_call(context))
    assert context.response.answer == "echo: hello there"
    body = sent(upstream)[-1]
    # llm="qwen3_30b_instruct" names a flowllm config entry: the one configured client and model are used
    assert body["model"] == "configured"
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
    assert "temperature" not in body and "max_tokens" not in body  # as flowllm: server defaults


def test_flowllm_stream_chat_op_streams_think_and_answer(app, upstream: FakeUpstream) -> None:
    upstream.script([{"reasoning_content": "short answer wanted", "content": "Hi, how are you?"}])

    async def main() -> list[FlowStreamChunk]:
        queue: asyncio.Queue[FlowStreamChunk] = asyncio.Queue()
        context = FlowContext(messages=[Message(content="hi")], system_prompt="S", stream_queue=queue)
        await StreamChatOp().async_call(context)
        return [queue.get_nowait() for _ in range(queue.qsize())]

    chunks = asyncio.run(main())
    kinds = [c.chunk_type for c in chunks]
    assert "".join(c.chunk for c in chunks if c.chunk_type is ChunkEnum.THINK) == "short answer wanted"
    assert "".join(c.chunk for c in chunks if c.chunk_type is ChunkEnum.ANSWER) == "Hi, how are you?"
    assert kinds.index(ChunkEnum.ANSWER) > kinds.index(ChunkEnum.THINK) and len(kinds) > 4
    assert {c.event_type for c in chunks} == {None, "content"}
    assert sent(upstream)[-1]["stream"] is True


# -- tools --------------------------------------------------------------------------------------


class AskOp(BaseAsyncOp):
    """A flowllm-style agent step: offer tools, read the model's calls."""

    async def async_execute(self):
        return await self.llm.achat(messages=self.context.messages, tools=self.context.get("tools", [WEATHER]))


def test_achat_returns_tool_calls_as_tool_call_objects(app, upstream: FakeUpstream) -> None:
    upstream.script([{"content": None, "tool_calls": [{"name": "weather", "arguments": {"city": "Oslo", "days": 2}}]}])
    message = asyncio.run(AskOp().async_call(messages=[Message(content="weather?")]))
    assert message.role is Role.ASSISTANT and message.content == ""
    [call] = message.tool_calls
    assert isinstance(call, ToolCall) and call.name == "weather" and call.id and call.problem == ""
    assert call.argument_dict == {"city": "Oslo", "days": 2}
    assert sent(upstream)[-1]["tools"] == [WEATHER.simple_input_dump()]


def test_a_conversation_round_trip_with_messages(app, upstream: FakeUpstream) -> None:
    upstream.script([{"tool_calls": [{"name": "weather", "arguments": {"city": "Oslo"}}]}, "It is 3°C in Oslo."],
                    match="Oslo weather")
    messages = [Message(role=Role.USER, content="Oslo weather?")]
    llm = ChatOp().llm  # the same adapter any op gets
    assistant = llm.chat(messages, tools=[WEATHER])  # the sync twin
    messages += [assistant, Message(role=Role.TOOL, tool_call_id=assistant.tool_calls[0].id, content="3°C")]
    final = asyncio.run(llm.achat(messages, tools=[WEATHER], temperature=0.2, top_p=0.5))
    assert final.content == "It is 3°C in Oslo." and final.tool_calls == []
    body = sent(upstream)[-1]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool"]
    assert body["messages"][1]["tool_calls"] == [{"id": assistant.tool_calls[0].id, "type": "function",
                                                 "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}]
    assert body["temperature"] == 0.2 and body["top_p"] == 0.5  # other keyword arguments go to the request


BAD_CALLS = {"tool_calls": [
    {"name": "weather", "arguments": '{"city": "Oslo"'},  # not JSON
    {"name": "weather", "arguments": {"days": "two"}},  # city missing, days of the wrong type
    {"name": "teleport", "arguments": {}},  # not offered
    {"name": "weather", "arguments": {"city": "Rome"}},  # fine
]}


def test_malformed_tool_calls_come_back_marked_with_their_problem(app, upstream: FakeUpstream) -> None:
    upstream.script([BAD_CALLS, "Sorry, here it is."], match="bad calls")
    messages = [Message(content="bad calls please")]
    message = asyncio.run(AskOp().async_call(messages=messages))
    problems = [call.problem for call in message.tool_calls]
    assert "are not a JSON object" in problems[0] and "'{\"city\": \"Oslo\"'" in problems[0]
    assert "'city' is required" in problems[1] and "'days' must be integer" in problems[1]
    assert problems[2] == "tool 'teleport' was not offered (the tools are: weather)"
    assert problems[3] == ""
    # an agent answers every call, the bad ones with their problem; the model gets to correct itself
    replies = [tool_error_message(c) if c.problem else Message(role=Role.TOOL, tool_call_id=c.id, content="20°C")
               for c in message.tool_calls]
    final = asyncio.run(AskOp().async_call(messages=[*messages, message, *replies]))
    assert final.content == "Sorry, here it is."
    told = [m["content"] for m in sent(upstream)[-1]["messages"] if m["role"] == "tool"]
    assert told[2].startswith("Error: tool 'teleport' was not offered") and told[3] == "20°C"


def test_streamed_tool_calls_are_tool_chunks(app, upstream: FakeUpstream) -> None:
    upstream.script([{"content": "Checking.", **BAD_CALLS}])

    async def main() -> list[FlowStreamChunk]:
        llm = ChatOp().llm
        return [c async for c in llm.astream_chat([Message(content="x")], tools=[WEATHER])]

    chunks = asyncio.run(main())
    tools = [c for c in chunks if c.chunk_type is ChunkEnum.TOOL]
    assert chunks[-len(tools):] == tools and len(tools) == 4  # the calls come last, put together
    assert [t.chunk["function"]["name"] for t in tools] == ["weather", "weather", "teleport", "weather"]
    assert json.loads(tools[3].chunk["function"]["arguments"]) == {"city": "Rome"}
    assert "not a JSON object" in tools[0].metadata["problem"] and "problem" not in tools[3].metadata
    assert {t.event_type for t in tools} == {"progress"}
    # the sync twin gives the same
    upstream.script([BAD_CALLS])
    sync_tools = [c for c in ChatOp().llm.stream_chat([Message(content="x")], tools=[WEATHER])
                  if c.chunk_type is ChunkEnum.TOOL]
    assert [t.metadata for t in sync_tools] == [t.metadata for t in tools]


# -- errors, callbacks and the client's own methods ------------------------------------------


def test_errors_are_loud_unless_raise_exception_is_false(app, upstream: FakeUpstream) -> None:
    llm = ChatOp().llm
    upstream.push_faults({"status": 500})
    with pytest.raises(LLMStatusError):
        asyncio.run(llm.achat([Message(content="x")], default_value="fallback"))
    lenient = OpLLM(C.llm, raise_exception=False)
    upstream.push_faults({"status": 500})
    assert asyncio.run(lenient.achat([Message(content="x")], default_value="fallback")) == "fallback"
    upstream.push_faults({"kind": "stream_error"})
    with pytest.raises(LLMConnectionError):
        list(llm.stream_chat([Message(content="x")]))
    upstream.push_faults({"kind": "stream_error"})
    chunks = list(lenient.stream_chat([Message(content="x")]))
    assert chunks[-1].chunk_type is ChunkEnum.ERROR and chunks[-1].event_type == "error"


def test_a_failing_callback_asks_the_model_again(app, upstream: FakeUpstream) -> None:
    upstream.script(["no json here", '```json\n{"a": 1}\n```'])
    seen = []

    def parse(message: Message) -> dict:
        seen.append(message.content)
        return json.loads(message.content.split("```json")[1].split("```")[0])

    result = asyncio.run(ChatOp().llm.achat([Message(content="x")], callback_fn=parse))
    assert result == {"a": 1} and len(seen) == 2
    upstream.reset()  # now every answer is "echo: x", which parse() cannot read
    with pytest.raises(IndexError):
        asyncio.run(OpLLM(C.llm, max_retries=2).achat([Message(content="x")], callback_fn=parse))
    assert upstream.stats()["requests"] == 2  # asked twice, then the callback's error
    lenient = OpLLM(C.llm, max_retries=2, raise_exception=False)
    assert lenient.chat([Message(content="x")], callback_fn=parse, default_value={}) == {}
    with pytest.raises(TypeError, match="messages must be a list of Message"):
        asyncio.run(ChatOp().llm.achat("not a list"))


class ClientMethodsOp(BaseAsyncOp):
    async def async_execute(self):
        completion = await self.llm.chat_completion_async([{"role": "user", "content": "c"}], max_tokens=5)
        return [self.llm.chat("a"), await self.llm.async_chat("b"), completion.text, self.llm.model,
                self.llm.model_name, self.llm.chat([Message(content="d")]).content]


def test_the_clients_own_methods_still_work(app, upstream: FakeUpstream) -> None:
    assert asyncio.run(ClientMethodsOp().async_call()) == [
        "echo: a", "echo: b", "echo: c", "configured", "configured", "echo: d"]
    op = ClientMethodsOp()
    assert op.llm is ChatOp().llm and op.llm.client is C.llm  # one adapter per client
