"""The examples of seeds/000 (BaseAsyncOp) and seeds/001 (BaseAsyncToolOp), as written there.

Only the import lines differ (``flowllm.*`` → ``ops``; ``FlowLLMApp`` → ``OpApp``).
"""

from __future__ import annotations

import asyncio

import pytest

from ops import BaseAsyncOp, BaseAsyncToolOp, C, FlowContext, ToolCall
from ops import OpApp as FlowLLMApp
from tests.fake_upstream import FakeUpstream
from tests.ops.qa_op import QAOp


@pytest.fixture(autouse=True)
def _llm_env(upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_BASE_URL", upstream.base_url)


# -- seeds/000 §1-3 -----------------------------------------------------------------------------


class MyAsyncOp(BaseAsyncOp):
    async def async_execute(self):
        # 业务逻辑（异步）
        return "ok"


class SumOp(BaseAsyncOp):
    async def async_execute(self):
        if "a" not in self.context or "b" not in self.context:
            raise ValueError("a/b 为必需输入")
        return self.context["a"] + self.context["b"]


class SumWriteOp(BaseAsyncOp):  # the seed's second SumOp, renamed to live beside the first
    async def async_execute(self):
        a = self.context.get("a", 0)
        b = self.context.get("b", 0)
        result = a + b
        # 写回自定义键
        self.context["sum"] = result
        # 写回最终答案（便于上层直接使用）
        self.context.response.answer = str(result)
        return result


def test_minimal_skeleton_both_ways() -> None:
    async def main():
        async with FlowLLMApp():
            first = await MyAsyncOp().async_call(user_id=123)
            second = await MyAsyncOp().async_call(context=FlowContext(user_id=123))
            return first, second

    assert asyncio.run(main()) == ("ok", "ok")


def test_sum_op_reads_inputs_and_fails_early() -> None:
    async def main():
        async with FlowLLMApp():
            assert await SumOp().async_call(a=1, b=2) == 3
            with pytest.raises(ValueError, match="a/b 为必需输入"):
                await SumOp().async_call(a=1)

    asyncio.run(main())


def test_sum_op_writes_outputs() -> None:
    async def main():
        async with FlowLLMApp():
            ctx = FlowContext(a=2, b=5)
            result = await SumWriteOp().async_call(context=ctx)
            return result, ctx

    result, ctx = asyncio.run(main())
    assert result == 7 and ctx["sum"] == 7 and ctx.response.answer == "7"


# -- §4.1 QAOp ------------------------------------------------------------------------------------


def test_qa_op_formats_its_prompt_and_calls_the_llm(upstream: FakeUpstream) -> None:
    async def main():
        async with FlowLLMApp() as app:
            result = await QAOp().async_call(question="你好？")
            print(result)
            return result

    result = asyncio.run(main())
    sent = upstream.stats()["last_request"]["json"]["messages"][-1]["content"]
    assert sent == "Answer the question briefly.\nQuestion: 你好？\n"
    assert result == "echo: " + sent


def test_qa_op_in_chinese(upstream: FakeUpstream) -> None:
    async def main():
        async with FlowLLMApp(language="zh"):
            return await QAOp().async_call(question="天空为什么是蓝色的？")

    asyncio.run(main())
    assert upstream.stats()["last_request"]["json"]["messages"][-1]["content"].startswith("请简要回答问题。")


# -- §5 cache ---------------------------------------------------------------------------------------


class CachedOp(BaseAsyncOp):
    def __init__(self, **kwargs):
        super().__init__(enable_cache=True, cache_expire_hours=1, **kwargs)

    async def _expensive_async_fn(self):
        # 执行耗时任务
        CachedOp.calls += 1
        return "heavy-result"

    async def async_execute(self):
        result = await self.async_save_load_cache("heavy_key", self._expensive_async_fn)
        self.context.response.answer = result
        return result

    calls = 0


def test_cached_op_computes_once() -> None:
    CachedOp.calls = 0

    async def main():
        async with FlowLLMApp():
            return [await CachedOp().async_call() for _ in range(3)]

    assert asyncio.run(main()) == ["heavy-result"] * 3
    assert CachedOp.calls == 1


# -- §6 concurrency -----------------------------------------------------------------------------------


class ParallelFetchOp(BaseAsyncOp):
    async def _fetch(self, url: str):
        # 自行替换为真实异步 HTTP 客户端
        await asyncio.sleep(0.01)
        return {"url": url, "status": 200}

    async def async_execute(self):
        urls = self.context.get("urls", [])
        for url in urls:
            self.submit_async_task(self._fetch, url)

        results = await self.join_async_task(timeout=5.0, return_exceptions=True)
        # 过滤异常并写回
        ok = [r for r in results if not isinstance(r, Exception)]
        self.context["fetch_results"] = ok
        return ok


def test_parallel_fetch_op() -> None:
    async def main():
        async with FlowLLMApp():
            ctx = FlowContext(urls=["u1", "u2", "u3"])
            result = await ParallelFetchOp().async_call(context=ctx)
            return result, ctx

    result, ctx = asyncio.run(main())
    assert result == [{"url": u, "status": 200} for u in ("u1", "u2", "u3")]
    assert ctx["fetch_results"] == result


# -- §7 the test example -----------------------------------------------------------------------------


class SumTestOp(BaseAsyncOp):
    async def async_execute(self):
        a = self.context.get("a", 0)
        b = self.context.get("b", 0)
        result = a + b
        self.context["sum"] = result
        self.context.response.answer = str(result)
        return result


def test_seed_test_example(capsys: pytest.CaptureFixture[str]) -> None:
    async def main():
        async with FlowLLMApp() as app:  # 可传入 config_path 或参数覆盖默认配置
            ctx = FlowContext()
            ctx["a"], ctx["b"] = 1, 2
            op = SumTestOp()
            result = await op.async_call(context=ctx)

            print("result=", result)
            print("sum=", ctx["sum"])
            print("answer=", ctx.response.answer)

    asyncio.run(main())
    assert capsys.readouterr().out == "result= 3\nsum= 3\nanswer= 3\n"


# -- seeds/001 EchoToolOp ---------------------------------------------------------------------------


@C.register_op()
class EchoToolOp(BaseAsyncToolOp):
    """简单的 Echo 工具 Op,展示 BaseAsyncToolOp 的基本用法"""

    def build_tool_call(self) -> ToolCall:
        """定义工具的 Schema:描述、输入参数、输出参数"""
        return ToolCall(
            **{
                "description": "Echo input text, returns the same text as output",
                "input_schema": {
                    "text": {
                        "type": "str",
                        "description": "text to echo",
                        "required": True,
                    },
                },
            }
        )

    async def async_execute(self):
        """执行工具逻辑"""
        # 1. 读取输入(由框架在执行前已从 context 填充到 self.input_dict)
        text = self.input_dict.get("text", "")

        # 2. 处理逻辑
        result = f"Echo: {text}"

        # 3. 设置输出(会在执行后自动写回 context)
        # 单输出时可以省略 key 参数
        self.set_output(result)


def test_echo_tool_op() -> None:
    async def main():
        async with FlowLLMApp() as app:
            ctx = FlowContext()
            result = await EchoToolOp().async_call(context=ctx, text="hello")
            print(f"结果:{result}")
            return result, ctx

    result, ctx = asyncio.run(main())
    assert ctx["echo_tool_result"] == "Echo: hello"
    assert ctx.response.answer == "Echo: hello" and result is ctx.response
    tool = EchoToolOp().tool_call.simple_input_dump()
    assert tool["function"]["name"] == "echo_tool"
    assert tool["function"]["parameters"]["properties"]["text"]["type"] == "string"
    assert tool["function"]["parameters"]["required"] == ["text"]


def test_echo_tool_op_requires_text() -> None:
    async def main():
        async with FlowLLMApp():
            await EchoToolOp().async_call()

    with pytest.raises(ValueError, match="echo_tool_op: input 'text' is required"):
        asyncio.run(main())


def test_echo_tool_index_and_mappings() -> None:
    async def main():
        async with FlowLLMApp():
            ctx = FlowContext(**{"text.2": "two", "query": "mapped"})
            await EchoToolOp(tool_index=2).async_call(context=ctx)
            await EchoToolOp(input_schema_mapping={"text": "query"},
                             output_schema_mapping={"echo_tool_result": "echoed"}).async_call(context=ctx)
            return ctx

    ctx = asyncio.run(main())
    assert ctx["echo_tool_result.2"] == "Echo: two"
    assert ctx["echoed"] == "Echo: mapped"
