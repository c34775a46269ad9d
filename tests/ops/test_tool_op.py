"""BaseAsyncToolOp behaviour not covered by the seed example."""

from __future__ import annotations

import asyncio
import json

import pytest

from ops import BaseAsyncToolOp, FlowContext, OpApp, ToolCall
from tests.fake_upstream import FakeUpstream


class StatsOp(BaseAsyncToolOp):
    """Two outputs, one optional input."""

    def build_tool_call(self) -> ToolCall:
        return ToolCall(
            description="Length and upper-case form of a text",
            input_schema={"text": {"type": "string", "description": "the text"},
                          "suffix": {"type": "string", "description": "appended", "required": False}},
            output_schema={"length": {"type": "integer", "description": "characters"},
                           "upper": {"type": "string", "description": "upper-cased"}},
        )

    async def async_execute(self):
        text = self.input_dict["text"] + self.input_dict.get("suffix", "")
        self.set_outputs(length=len(text), upper=text.upper())


@pytest.fixture(autouse=True)
def _app(upstream: FakeUpstream):
    with OpApp(env={"LLM_BASE_URL": upstream.base_url}):
        yield


def test_several_outputs_go_to_the_context_and_answer_as_json() -> None:
    ctx = FlowContext(text="héllo")
    op = StatsOp()
    asyncio.run(op.async_call(context=ctx))
    assert ctx["length"] == 5 and ctx["upper"] == "HÉLLO"
    assert json.loads(ctx.response.answer) == {"length": 5, "upper": "HÉLLO"}
    assert "HÉLLO" in ctx.response.answer  # ensure_ascii=False
    assert op.output_keys == ["length", "upper"]
    with pytest.raises(AttributeError, match="several outputs"):
        op.output


def test_input_and_output_dicts_are_fresh_for_each_call() -> None:
    op = StatsOp()
    asyncio.run(op.async_call(context=FlowContext(text="a", suffix="!")))
    assert op.input_dict == {"text": "a", "suffix": "!"}
    asyncio.run(op.async_call(context=FlowContext(text="b")))
    assert op.input_dict == {"text": "b"} and op.output_dict == {"length": 1, "upper": "B"}


def test_set_output_checks_keys() -> None:
    op = StatsOp()
    with pytest.raises(KeyError, match="name the key"):
        op.set_output(1)
    with pytest.raises(KeyError, match="no output 'colour'"):
        op.set_output(1, "colour")


def test_save_answer_false_leaves_the_answer() -> None:
    ctx = FlowContext(text="x")
    asyncio.run(StatsOp(save_answer=False).async_call(context=ctx))
    assert ctx.response.answer == "" and ctx["upper"] == "X"


def test_failure_without_raising_reaches_the_context() -> None:
    class BrokenOp(BaseAsyncToolOp):
        def build_tool_call(self) -> ToolCall:
            return ToolCall(description="always fails", input_schema={})

        async def async_execute(self):
            raise RuntimeError("no luck")

    ctx = FlowContext()
    result = asyncio.run(BrokenOp(raise_exception=False).async_call(context=ctx))
    assert result is ctx.response and ctx.response.success is False
    assert ctx["broken_result"] == "broken_op execution failed: no luck"


def test_tool_call_defaults_and_openai_round_trip() -> None:
    tool = StatsOp(tool_index=3).tool_call
    assert tool.name == "stats" and tool.index == 3
    dumped = tool.simple_input_dump()
    assert dumped["function"]["parameters"]["required"] == ["text"]
    assert ToolCall(**dumped).simple_input_dump() == dumped
