"""Composition with >> and |, flow expressions (parsed with ast, never evaluated), flows and the registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ops import (
    BaseAsyncOp,
    BaseOp,
    C,
    FlowConfigError,
    FlowContext,
    FlowExpression,
    FlowExpressionError,
    OpApp,
    ParallelOp,
    SequentialOp,
    ServiceContext,
    load_flows,
)
from tests.fake_upstream import FakeUpstream


class AOp(BaseAsyncOp):
    async def async_execute(self):
        self.context["trail"] = [*self.context.get("trail", []), self.op_params.get("tag", "a")]
        return "a"


class BOp(BaseAsyncOp):
    async def async_execute(self):
        self.context["trail"] = [*self.context.get("trail", []), "b"]
        return "b"


class SyncCOp(BaseOp):
    def execute(self):
        self.context["trail"] = [*self.context.get("trail", []), "c"]
        return "c"


class GateOp(BaseAsyncOp):
    """Waits until every GateOp of its parallel group has started: proves they overlap."""

    async def async_execute(self):
        self.context["started"] = self.context.get("started", 0) + 1
        for _ in range(200):
            if self.context["started"] >= self.context["expected"]:
                return self.name
            await asyncio.sleep(0.005)
        raise AssertionError("parallel ops did not overlap")


OPS = {"AOp": AOp, "BOp": BOp, "SyncCOp": SyncCOp, "GateOp": GateOp}


def test_sequence_flattens_and_runs_in_order() -> None:
    a, b, c = AOp(), BOp(), SyncCOp()
    chain = a >> (b >> c)
    assert isinstance(chain, SequentialOp) and chain.ops == [a, b, c]
    assert (a >> b >> c).ops == [a, b, c]
    ctx = FlowContext()
    assert asyncio.run(chain.async_call(context=ctx)) == "c"
    assert ctx["trail"] == ["a", "b", "c"]


def test_building_a_chain_leaves_its_operands_alone() -> None:
    a, b = AOp(), BOp()
    first = a >> b
    second = first >> AOp()
    assert len(first.ops) == 2 and len(second.ops) == 3


def test_parallel_runs_at_once_on_a_shared_context() -> None:
    group = GateOp(name="g1") | GateOp(name="g2") | GateOp(name="g3")
    assert isinstance(group, ParallelOp) and len(group.ops) == 3
    ctx = FlowContext(expected=3)
    assert asyncio.run(group.async_call(context=ctx)) == ["g1", "g2", "g3"]


def test_mixed_nesting() -> None:
    flow = AOp() >> (BOp() | SyncCOp()) >> AOp(tag="z")
    assert [type(op).__name__ for op in flow.ops] == ["AOp", "ParallelOp", "AOp"]
    ctx = FlowContext()
    asyncio.run(flow.async_call(context=ctx))
    assert ctx["trail"][0] == "a" and ctx["trail"][-1] == "z" and sorted(ctx["trail"][1:3]) == ["b", "c"]


def test_a_failing_parallel_branch_raises() -> None:
    class BoomOp(BaseAsyncOp):
        async def async_execute(self):
            raise RuntimeError("branch failed")

    with pytest.raises(RuntimeError, match="branch failed"):
        asyncio.run((AOp() | BoomOp()).async_call())


# -- expressions ---------------------------------------------------------------------------------------


def test_expression_builds_fresh_ops() -> None:
    expression = FlowExpression("AOp(tag='x') >> (BOp() | SyncCOp()) >> AOp()", OPS)
    first, second = expression.build(), expression.build()
    assert first is not second and first.ops[0] is not second.ops[0]
    assert first.ops[0].op_params == {"tag": "x"}
    assert isinstance(first.ops[1], ParallelOp)
    assert expression.op_names() == ["AOp", "BOp", "SyncCOp", "AOp"]


def test_multiline_expression_in_parentheses() -> None:
    assert len(FlowExpression("(AOp()\n  >> BOp())", OPS).build().ops) == 2


@pytest.mark.parametrize(("text", "quoted"), [
    ("__import__('os').system('id')", "__import__('os').system"),
    ("AOp().__class__", "AOp().__class__"),
    ("AOp", "AOp"),
    ("EvilOp()", "EvilOp"),
    ("AOp(tag=open('/etc/passwd'))", "open('/etc/passwd')"),
    ("AOp('positional')", "'positional'"),
    ("AOp(**{'tag': 1})", "**{'tag': 1}"),
    ("AOp() + BOp()", "AOp() + BOp()"),
    ("AOp() << 'x'", "'x'"),
    ("[AOp()]", "[AOp()]"),
    ("lambda: AOp()", "lambda: AOp()"),
    ("(lambda: 1)()", "lambda: 1"),
    ("AOp(tag=AOp())", "AOp()"),
])
def test_expression_rejects_anything_else(text: str, quoted: str) -> None:
    with pytest.raises(FlowExpressionError) as info:
        FlowExpression(text, OPS)
    assert f"`{quoted}`" in str(info.value)


@pytest.mark.parametrize("text", ["", "   ", "AOp() >>", "import os"])
def test_expression_syntax_errors(text: str) -> None:
    with pytest.raises(FlowExpressionError):
        FlowExpression(text, OPS)


def test_constructor_errors_are_flow_errors() -> None:
    with pytest.raises(FlowExpressionError, match="max_retries"):
        FlowExpression("AOp(max_retries=0)", OPS).build()


# -- flows -----------------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flows.yaml"
    path.write_text(text)
    return path


def test_flows_load_and_run(tmp_path: Path) -> None:
    flows = load_flows(write(tmp_path, """
flows:
  trail:
    flow_content: "AOp() >> (BOp() | SyncCOp())"
    description: "demo"
    input_schema:
      seed: {type: string, required: true}
"""), OPS)
    flow = flows["trail"]
    assert flow.description == "demo" and flow.stream is False
    tool = flow.tool_call.simple_input_dump()
    assert tool["function"]["name"] == "trail" and tool["function"]["parameters"]["required"] == ["seed"]
    ctx = FlowContext(seed="s")
    response = asyncio.run(flow.run(ctx))
    assert response is ctx.response and ctx["trail"][0] == "a"


@pytest.mark.parametrize(("text", "named"), [
    ("flows:\n  bad:\n    flow_content: \"__import__('os')\"\n", "flow 'bad'"),
    ("flows:\n  bad:\n    description: no content\n", "flow_content"),
    ("flows:\n  bad:\n    flow_content: AOp()\n    colour: red\n", "colour"),
    ("flows: [1, 2]\n", "'flows:' mapping"),
    ("flows:\n  bad: {flow_content: 'AOp()', input_schema: {x: {type: tuple}}}\n", "input_schema.x.type"),
    ("flows: {: [\n", "not valid YAML"),
])
def test_bad_flow_files_name_the_problem(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(FlowConfigError, match=named.replace("(", r"\(").replace("[", r"\[")):
        load_flows(write(tmp_path, text), OPS)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    with pytest.raises(FlowConfigError, match="not valid YAML"):
        load_flows(write(tmp_path, "flows: !!python/object/apply:os.system ['id']\n"), OPS)


def test_missing_flows_file() -> None:
    with pytest.raises(FlowConfigError, match="cannot read flows file"):
        load_flows("/nonexistent/flows.yaml", OPS)


# -- registry ---------------------------------------------------------------------------------------------


def test_registry_names_and_duplicates() -> None:
    registry = ServiceContext()

    @registry.register_op()
    class PingOp(BaseAsyncOp):
        pass

    @registry.register_op("pong")
    class PongOp(BaseAsyncOp):
        pass

    assert registry.get_op_class("PingOp") is PingOp
    assert registry.get_op_class("ping_op") is PingOp and registry.get_op_class("ping") is PingOp
    assert registry.get_op_class("pong") is PongOp
    registry.register_op()(PingOp)  # the same class again is fine


    impostor = type("PingOp", (BaseAsyncOp,), {"__module__": "elsewhere"})
    with pytest.raises(ValueError, match="already registered"):
        registry.register_op()(impostor)
    with pytest.raises(KeyError, match="no op named 'missing'"):
        registry.get_op_class("missing")


def test_op_app_installs_the_gallery_and_flows(upstream: FakeUpstream) -> None:
    with OpApp(env={"LLM_BASE_URL": upstream.base_url}):
        assert "ChatOp" in C.ops and "EchoToolOp" in C.ops
        assert C.flows and all(name in C.flows for name in ("chat", "echo"))
