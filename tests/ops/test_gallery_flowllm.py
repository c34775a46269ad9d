"""The gallery ports of flowllm 0.2's ops (ChatOp, StreamChatOp, GenSystemPromptOp, TokenCountOp, ThinkToolOp,
MockSearchOp, ExecuteCodeOp), driven as flowllm's own ``tests_op/`` drive them (the same calls, only the
imports changed), against the fake upstream. The sandbox of ExecuteCodeOp has its own file
(test_execute_code_sandbox.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from ops import C, ChunkEnum, FlowContext, FlowLLMApp, Message, Role, format_messages, token_count
from ops.gallery import (
    ChatOp,
    ExecuteCodeOp,
    GenSystemPromptOp,
    MockSearchOp,
    StreamChatOp,
    ThinkToolOp,
    TokenCountOp,
)
from tests.fake_upstream import FakeUpstream

CHAT = "/v1/chat/completions"
GENERATED = ("``` think\nThe user is curious about a technical topic.\n```\n\n"
             "``` prompt\nYou are a patient Python teacher. Explain clearly.\n```")


@pytest.fixture(autouse=True)
def llm_env(upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``FlowLLMApp()`` without arguments, as flowllm's tests call it, reads the fake upstream from the env."""
    monkeypatch.setenv("LLM_BASE_URL", upstream.base_url)
    monkeypatch.setenv("LLM_MAX_RETRIES", "0")
    yield


def chats(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return [r["json"] for r in upstream.stats()["requests_log"] if r["path"] == CHAT]


# -- tests_op/test_execute_code_op.py -------------------------------------------------------------


def test_execute_code_op_as_flowllm_tests_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBRIDGE_EXECUTE_CODE", "1")  # off by default: see ops/gallery/execute_code_op.py

    async def async_main() -> list[str]:
        async with FlowLLMApp():
            op = ExecuteCodeOp()
            outputs = [op.tool_call.model_dump_json(exclude_none=True)]
            assert op.tool_call.simple_input_dump()["function"]["parameters"]["required"] == ["code"]
            assert op.tool_call.simple_output_dump()["function"]["name"] == "execute_code"
            await op.async_call(code="print('Hello World')")
            outputs.append(op.output)
            await op.async_call(code="print('Hello World!'")
            outputs.append(op.output)
            return outputs

    schema, hello, broken = asyncio.run(async_main())
    assert json.loads(schema)["name"] == "execute_code"
    assert hello == "Hello World\n"
    # flowllm answers str(e); we name the exception too
    assert broken == "SyntaxError: '(' was never closed (<code>, line 1)"


# -- tests_op/test_gen_system_prompt_op.py ----------------------------------------------------------


def test_gen_system_prompt_op_as_flowllm_tests_it(upstream: FakeUpstream) -> None:
    upstream.script([GENERATED], match="What is Python?")
    upstream.script([GENERATED], match="keeps giving me errors")
    upstream.script(["  Be a precise computer science tutor.\n"], match="binary search tree")

    async def async_main() -> None:
        async with FlowLLMApp():
            # Test 1: query
            op = GenSystemPromptOp()
            await op.async_call(query="What is Python?")
            assert op.context.query == "What is Python?"
            assert op.context.system_prompt == "You are a patient Python teacher. Explain clearly."
            assert op.context.messages == [Message(role=Role.USER, content="What is Python?",
                                                   time_created=op.context.messages[0].time_created)]

            # Test 2: messages (model_dump()ed, as flowllm's test sends them)
            op2 = GenSystemPromptOp()
            messages = [
                Message(role=Role.USER, content="I'm feeling frustrated with my code"),
                Message(role=Role.ASSISTANT, content="I understand. Let's work through this together."),
                Message(role=Role.USER, content="It keeps giving me errors"),
            ]
            await op2.async_call(messages=[msg.model_dump() for msg in messages])
            assert len(op2.context.messages) == 3
            assert isinstance(op2.context.system_prompt, str) and len(op2.context.system_prompt) > 0

            # Test 3: format_messages
            formatted = format_messages([Message(role=Role.USER, content="Hello"),
                                         Message(role=Role.ASSISTANT, content="Hi there!")])
            assert "user: hello" in formatted.lower() and "assistant: hi there!" in formatted.lower()

            # Test 4: neither query nor messages
            op4 = GenSystemPromptOp()
            with pytest.raises(AssertionError, match="`query` and `messages` are not provided"):
                await op4.async_call()

            # Test 5: a reply without a prompt block is used whole
            op5 = GenSystemPromptOp()
            await op5.async_call(query="How do I implement a binary search tree in Python?")
            assert op5.context.system_prompt == "Be a precise computer science tutor."

    asyncio.run(async_main())
    first, second, _fifth = chats(upstream)
    assert "user: What is Python?" in first["messages"][0]["content"]
    assert "assistant: I understand." in second["messages"][0]["content"]
    assert first["messages"][0]["role"] == "user" and "tools" not in first


def test_gen_system_prompt_then_chat_answers_with_it(upstream: FakeUpstream) -> None:
    """flowllm's demo flow ``GenSystemPromptOp() >> ChatOp()`` with only a query."""
    upstream.script([GENERATED], match="# Context")

    async def main() -> Any:
        async with FlowLLMApp():
            return await (GenSystemPromptOp() >> ChatOp()).async_call(query="What is Python?")

    response = asyncio.run(main())
    assert response.answer == "echo: What is Python?"
    assert chats(upstream)[-1]["messages"] == [
        {"role": "system", "content": "You are a patient Python teacher. Explain clearly."},
        {"role": "user", "content": "What is Python?"}]


# -- ChatOp and StreamChatOp as flowllm's op code drives them -----------------------------------------


def test_chat_op_reads_flowllm_messages_and_system_prompt(upstream: FakeUpstream) -> None:
    async def main() -> FlowContext:
        async with FlowLLMApp():
            context = FlowContext(messages=[Message(role=Role.USER, content="hello there")], system_prompt="Be brief.")
            await ChatOp().async_call(context)
            return context

    context = asyncio.run(main())
    assert context.response.answer == "echo: hello there"
    assert chats(upstream)[-1]["messages"] == [{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "hello there"}]


def test_chat_op_bad_messages_are_assertion_errors_as_in_flowllm() -> None:
    async def main() -> None:
        async with FlowLLMApp():
            for cls in (ChatOp, StreamChatOp):
                with pytest.raises(AssertionError, match=r"messages\[0\] must be an object"):
                    await cls().async_call(messages=["not a Message object"], system_prompt="Test prompt",
                                           stream_queue=asyncio.Queue())
                with pytest.raises(ValueError, match="got both"):  # a query that is not the conversation's
                    await cls().async_call(query="q", messages=[Message(content="other")])

    asyncio.run(main())


async def _stream_task(op: StreamChatOp, messages: list[Message], system_prompt: str,
                       stream_queue: asyncio.Queue) -> None:
    """flowllm's ``async_task`` wrapper: run the op, then mark the stream done."""
    await op.async_call(messages=messages, system_prompt=system_prompt, stream_queue=stream_queue)
    await op.context.add_stream_done()


def test_stream_chat_op_as_flowllm_tests_it(upstream: FakeUpstream) -> None:
    upstream.configure(reply="I am fine, thank you.")

    async def async_main() -> tuple[list[Any], StreamChatOp]:
        async with FlowLLMApp():
            op = StreamChatOp()
            stream_queue: asyncio.Queue = asyncio.Queue()
            task = asyncio.create_task(_stream_task(op, [Message(role=Role.USER, content="Hello, how are you?")],
                                                    "You are a helpful assistant.", stream_queue))
            stream_chunks = []
            for _ in range(1000):  # bounded: flowllm's loop runs until the done chunk
                stream_chunk = await asyncio.wait_for(stream_queue.get(), timeout=30)
                if stream_chunk.done:
                    break
                stream_chunks.append(stream_chunk)
            await task
            return stream_chunks, op

    stream_chunks, op = asyncio.run(async_main())
    assert len(stream_chunks) > 0
    assert any(chunk.chunk_type == ChunkEnum.ANSWER for chunk in stream_chunks)
    assert "".join(c.chunk for c in stream_chunks) == "I am fine, thank you." == op.output
    assert chats(upstream)[-1]["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}


def test_stream_chat_op_streams_think_and_tool_chunks(upstream: FakeUpstream) -> None:
    upstream.script([{"reasoning_content": "they greet me", "content": "Hi!",
                      "tool_calls": [{"name": "wave", "arguments": {"hand": "left"}}]}])

    async def main() -> list[Any]:
        async with FlowLLMApp():
            queue: asyncio.Queue = asyncio.Queue()
            await StreamChatOp().async_call(query="hello", stream_queue=queue)
            return [queue.get_nowait() for _ in range(queue.qsize())]

    chunks = asyncio.run(main())
    kinds = [c.chunk_type for c in chunks]
    assert ChunkEnum.THINK in kinds and ChunkEnum.ANSWER in kinds and kinds[-1] is ChunkEnum.TOOL
    assert ChunkEnum.USAGE not in kinds  # recorded, not streamed (flowllm streams answer/think/error/tool)
    assert "".join(c.chunk for c in chunks if c.chunk_type is ChunkEnum.THINK) == "they greet me"
    tool = chunks[-1]
    assert tool.chunk["function"] == {"name": "wave", "arguments": '{"hand": "left"}'}
    assert "was not offered" in tool.metadata["problem"]  # StreamChatOp offers no tools


# -- tests_op/test_token_count_op.py ---------------------------------------------------------------


def test_token_count_op_as_flowllm_tests_it(upstream: FakeUpstream) -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello, how are you?"},
        {"role": "assistant", "content": "I'm doing well, thank you for asking!"},
    ]

    async def async_main() -> TokenCountOp:
        async with FlowLLMApp():
            op = TokenCountOp()
            await op.async_call(messages=messages)
            return op

    op = asyncio.run(async_main())
    expected = token_count([Message(**m) for m in messages])
    assert expected == 21  # 84 characters / 4
    assert op.output == op.context["token_count"] == expected and op.context.response.answer == "21"
    assert upstream.stats()["requests"] == 0  # counting asks no model


def test_token_count_op_bad_messages() -> None:
    async def main() -> None:
        async with FlowLLMApp():
            with pytest.raises(ValueError, match=r"messages\[1\] must be a message object"):
                await TokenCountOp().async_call(messages=[{"content": "a"}, "b"])

    asyncio.run(main())


# -- ThinkToolOp (used by flowllm's agents) ---------------------------------------------------------


def test_think_tool_op() -> None:
    async def main() -> list[str]:
        async with FlowLLMApp():
            op = ThinkToolOp()
            tool = op.tool_call.simple_input_dump()["function"]
            assert tool["name"] == "think_tool" and tool["description"].startswith("Before calling any external")
            assert tool["parameters"]["required"] == ["reflection"]
            await op.async_call(reflection="I need the population first.")
            echoed = ThinkToolOp(add_output_reflection=True)
            await echoed.async_call(reflection="I need the population first.")
            chinese = ThinkToolOp(language="zh")
            await chinese.async_call(reflection="想一想")
            return [op.output, echoed.output, chinese.output, chinese.tool_call.description]

    recorded, echoed, chinese, description_zh = asyncio.run(main())
    assert recorded.strip() == "Reflection has been recorded."
    assert echoed == "I need the population first."
    assert chinese.strip() == "已经记录反思。" and description_zh.startswith("每次准备调用")


# -- tests_op/test_mock_search_op.py ---------------------------------------------------------------

RESULTS = [{"snippet": "AI news.", "title": "AI today", "url": "https://example.com/ai", "hostname": "example.com",
            "hostlogo": ""}]


def test_mock_search_op_as_flowllm_tests_it(upstream: FakeUpstream) -> None:
    upstream.script([f"``` think\nnews sites\n```\n``` json\n{json.dumps(RESULTS)}\n```"])

    async def async_main() -> Any:
        async with FlowLLMApp():
            op = MockSearchOp()
            await op.async_call(query="latest AI research news")
            return op.context.response.answer

    answer = asyncio.run(async_main())
    assert isinstance(answer, str) and len(answer) > 0
    parsed = json.loads(answer)
    assert isinstance(parsed, (list, dict)) and parsed == RESULTS
    prompt = chats(upstream)[-1]["messages"][-1]["content"]
    assert 'realistic search results for the query: "latest AI research news"' in prompt


def test_mock_search_op_blank_query_and_a_reply_without_json(upstream: FakeUpstream) -> None:
    upstream.script(["no json here"], repeat=True)

    async def main() -> str:
        async with FlowLLMApp():
            blank = MockSearchOp()
            await blank.async_call(query="  ")
            with pytest.raises(ValueError, match="not a JSON array"):
                await MockSearchOp(num_results=2).async_call(query="anything")
            return blank.output

    assert asyncio.run(main()) == "No results found."
    requests = chats(upstream)
    assert len(requests) == 3  # asked again twice (the adapter's max_retries), then a clear error
    assert "Generate 2 realistic search results" in requests[0]["messages"][-1]["content"]


def test_mock_search_op_is_a_tool_an_agent_can_call() -> None:
    function = MockSearchOp().tool_call.simple_input_dump()["function"]
    assert function["name"] == "mock_search" and function["parameters"]["required"] == ["query"]
    with pytest.raises(ValueError, match="num_results"):
        MockSearchOp(num_results=-1)
    assert {"ExecuteCodeOp", "GenSystemPromptOp", "MockSearchOp", "ThinkToolOp", "TokenCountOp"} <= set(C.ops)
