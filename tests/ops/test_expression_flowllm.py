"""Flow expressions as flowllm 0.2 writes them: ``<<`` attaches sub-ops, and a flow may take several
lines (flowllm's tests/test_expression_parser.py cases, reworded), still parsed with ast, never run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ops import (
    BaseAsyncOp,
    BaseAsyncToolOp,
    BaseContext,
    BaseOp,
    FlowContext,
    FlowExpression,
    FlowExpressionError,
    ParallelOp,
    SequentialOp,
    ToolCall,
    load_flows,
)


class ContainerOp(BaseOp):
    def execute(self):
        return self.name


class SearchOp(ContainerOp):
    pass


class FindOp(ContainerOp):
    pass


class Op1Op(ContainerOp):
    pass


class Op2Op(ContainerOp):
    pass


class Op3Op(ContainerOp):
    pass


class LookupToolOp(BaseAsyncToolOp):
    def build_tool_call(self) -> ToolCall:
        return ToolCall(description="look a word up", input_schema={"word": {"type": "string"}})

    async def async_execute(self):
        self.set_output(f"{self.input_dict['word']}!")


class AgentOp(BaseAsyncToolOp):
    """Calls each attached tool op (a copy of it) and joins their answers."""

    def build_tool_call(self) -> ToolCall:
        return ToolCall(description="an agent", input_schema={"query": {"type": "string"}})

    async def async_execute(self):
        answers = []
        for name, op in self.ops.items():
            tool = op.copy()
            await tool.async_call(context=FlowContext(word=self.input_dict["query"]))
            answers.append(f"{name}={tool.output}")
        self.set_output(", ".join(answers))


OPS = {cls.__name__: cls for cls in (ContainerOp, SearchOp, FindOp, Op1Op, Op2Op, Op3Op, LookupToolOp, AgentOp)}


def build(text: str) -> BaseOp:
    return FlowExpression(text, OPS).build()


def kinds(ops: list[BaseOp]) -> list[type]:
    return [type(op) for op in ops]


# -- flowllm's expression parser cases ---------------------------------------------------------------


def test_one_line_sequence_and_parallel() -> None:
    flow = build("Op1Op() >> Op2Op() >> Op3Op()")
    assert isinstance(flow, SequentialOp) and kinds(flow.ops) == [Op1Op, Op2Op, Op3Op]
    flow = build("Op1Op() | Op2Op()")
    assert isinstance(flow, ParallelOp) and kinds(flow.ops) == [Op1Op, Op2Op]
    flow = build("Op1Op() >> (Op2Op() | Op3Op()) >> Op1Op()")
    assert kinds(flow.ops) == [Op1Op, ParallelOp, Op1Op] and kinds(flow.ops[1].ops) == [Op2Op, Op3Op]


def test_earlier_lines_prepare_and_the_last_line_is_the_flow() -> None:
    flow = build("""
op = ContainerOp()
op.ops.search = SearchOp()
op.ops.find = FindOp()
Op1Op() >> Op2Op() >> Op3Op()
""")
    assert isinstance(flow, SequentialOp) and kinds(flow.ops) == [Op1Op, Op2Op, Op3Op]


def test_the_last_line_may_be_a_variable() -> None:
    flow = build("op = ContainerOp()\nop.ops.search = SearchOp()\nop.ops['find'] = FindOp()\nop")
    assert isinstance(flow, ContainerOp) and isinstance(flow.ops, BaseContext)
    assert isinstance(flow.ops.search, SearchOp) and isinstance(flow.ops.find, FindOp)


def test_variables_can_be_reassigned() -> None:
    flow = build("opx = Op1Op() >> Op2Op()\nopx = opx >> Op3Op()\nopx")
    assert isinstance(flow, SequentialOp) and kinds(flow.ops) == [Op1Op, Op2Op, Op3Op]


def test_sub_ops_assigned_then_used_in_a_mixed_chain() -> None:
    flow = build("op1 = Op1Op()\nop1.ops.search = SearchOp()\nop1.ops.find = FindOp()\n(op1 | Op2Op()) >> Op3Op()")
    assert kinds(flow.ops) == [ParallelOp, Op3Op]
    assert list(flow.ops[0].ops[0].ops.keys()) == ["search", "find"]


def test_left_shift_with_named_children_inside_parallel_and_sequence() -> None:
    flow = build("""
op = ContainerOp()
op << {"search": Op1Op(), "find": Op2Op()}
(op | Op2Op()) >> (Op1Op() | Op3Op()) >> op
""")
    first, second, third = flow.ops
    assert kinds(first.ops) == [ContainerOp, Op2Op] and kinds(second.ops) == [Op1Op, Op3Op]
    container = first.ops[0]
    assert isinstance(container.ops.search, Op1Op) and isinstance(container.ops.find, Op2Op)
    assert third is container  # a name is the same op wherever it is used


# -- << ------------------------------------------------------------------------------------------------


def test_left_shift_attaches_a_list_by_op_name_and_returns_the_op() -> None:
    expression = FlowExpression("AgentOp() << [LookupToolOp(), SearchOp()]", OPS)
    agent = expression.build()
    assert isinstance(agent, AgentOp) and list(agent.ops.keys()) == ["lookup_tool_op", "search_op"]
    assert expression.root_op_name() == "AgentOp"
    assert expression.op_names() == ["AgentOp", "LookupToolOp", "SearchOp"]
    assert kinds(build("Op1Op() << Op2Op()").ops.values()) == [Op2Op]


def test_left_shift_binds_before_sequence_and_parallel_as_in_python() -> None:
    flow = build("Op1Op() << Op2Op() >> Op3Op()")
    assert kinds(flow.ops) == [Op1Op, Op3Op] and kinds(flow.ops[0].ops.values()) == [Op2Op]
    flow = build("Op1Op() | Op2Op() << Op3Op()")
    assert isinstance(flow, ParallelOp) and kinds(flow.ops[1].ops.values()) == [Op3Op]


def test_every_build_attaches_fresh_sub_ops() -> None:
    expression = FlowExpression("AgentOp() << [LookupToolOp()]", OPS)
    first, second = expression.build(), expression.build()
    assert first.ops["lookup_tool_op"] is not second.ops["lookup_tool_op"]


def test_the_agent_flow_runs_its_tools(tmp_path: Path) -> None:
    path = tmp_path / "flows.yaml"
    path.write_text(
        "flows:\n"
        "  agent:\n"
        "    flow_content: |\n"
        "      agent = AgentOp()\n"
        "      agent << {\"first\": LookupToolOp(), \"second\": LookupToolOp()}\n"
        "      agent\n"
    )
    flow = load_flows(path, OPS)["agent"]
    assert set(flow.tool_call.input_schema) == {"query"}  # the root op's schema
    response = asyncio.run(flow.run(query="hi"))
    assert response.answer == "first=hi!, second=hi!"


def test_op_level_left_shift_and_copy() -> None:
    agent = AgentOp() << [LookupToolOp(name="a_tool"), LookupToolOp(name="b_tool")]
    copy = agent.copy()
    assert list(copy.ops.keys()) == ["a_tool", "b_tool"] and copy.ops["a_tool"] is not agent.ops["a_tool"]
    listed = ContainerOp(ops=[Op1Op()]) << Op2Op()
    assert kinds(listed.ops) == [Op1Op, Op2Op] and kinds(listed.copy().ops) == [Op1Op, Op2Op]
    with pytest.raises(ValueError, match="already attached"):
        AgentOp() << [LookupToolOp(), LookupToolOp()]
    with pytest.raises(TypeError, match="AgentOp|agent_op"):
        AgentOp() << "LookupToolOp"
    with pytest.raises(TypeError, match="SequentialOp"):
        (Op1Op() >> Op2Op()) << Op3Op()


# -- still a whitelist -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "quoted"), [
    ("op = Op1Op()\nop = 1\nop", "1"),
    ("import os\nOp1Op()", "import os"),
    ("op = Op1Op()\nop.name = 'x'\nop", "op.name"),
    ("op = Op1Op()\nop.ops.a.b = Op2Op()\nop", "op.ops.a.b"),
    ("Op1Op()\nop = Op1Op()", "op = Op1Op()"),
    ("missing", "missing"),
    ("Op1Op() << [Op2Op, Op3Op()]", "Op2Op"),
    ("Op1Op() << {1: Op2Op()}", "1"),
    ("Op1Op() << __import__('os')", "__import__"),
    ("Op1Op = Op2Op()\nOp1Op", "Op1Op"),
    ("x = Op1Op()\nfor i in []: pass\nx", "for i in []: pass"),
    ("a, b = Op1Op(), Op2Op()\na", "a, b"),
])
def test_anything_else_is_refused_and_quoted(text: str, quoted: str) -> None:
    with pytest.raises(FlowExpressionError) as info:
        FlowExpression(text, OPS)
    assert f"`{quoted}`" in str(info.value)


def test_errors_while_attaching_are_flow_errors() -> None:
    with pytest.raises(FlowExpressionError, match="already attached"):
        build("AgentOp() << [LookupToolOp(), LookupToolOp()]")
    with pytest.raises(FlowExpressionError, match="SequentialOp"):
        build("x = Op1Op() >> Op2Op()\nx.ops.more = Op3Op()\nx")
    with pytest.raises(FlowExpressionError, match="line 2"):
        FlowExpression("Op1Op()\n>> Op2Op()", OPS)


def test_a_sync_container_of_async_tools_runs() -> None:
    class CountToolsOp(BaseAsyncOp):
        async def async_execute(self):
            return sorted(self.ops.keys())

    result = asyncio.run(FlowExpression("CountToolsOp() << [LookupToolOp(), SearchOp()]",
                                        {**OPS, "CountToolsOp": CountToolsOp}).build().async_call())
    assert result == ["lookup_tool_op", "search_op"]
