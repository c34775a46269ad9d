"""Executors of FlowGram's core nodes (start, end, condition, blocks, break, continue) and ``op``; their registration.

The llm, code and http nodes have modules of their own.
"""

from __future__ import annotations

from typing import Any

from ..conditions import choose_branch
from ..executor import ExecutionContext, NodeError, NodeResult


async def execute_start(ctx: ExecutionContext) -> NodeResult:
    """Outputs are the workflow's raw inputs."""
    return NodeResult(dict(ctx.workflow_inputs))


async def execute_end(ctx: ExecutionContext) -> NodeResult:
    """Outputs (and the workflow's outputs) are the resolved inputs."""
    return NodeResult(dict(ctx.inputs))


async def execute_noop(ctx: ExecutionContext) -> NodeResult:
    """block-start, block-end, break and continue do nothing themselves (the engine sets loop flags)."""
    return NodeResult({})


async def execute_condition(ctx: ExecutionContext) -> NodeResult:
    """First true condition wins (its key is the branch), else ``else``."""
    conditions = ctx.node.data.get("conditions") or []
    branch = choose_branch(conditions, ctx.resolve)
    return NodeResult({}, branch=branch)


async def execute_op(ctx: ExecutionContext) -> NodeResult:
    """Run a registered Op by name (``data.opName``, built with ``data.opParams``) with the node's inputs.

    Outputs: the op's outputs (tool ops), plus ``answer`` and ``success``; an op that records tool
    calls (an agent: ``opParams: {"tools": ["op_name", ...]}``) adds them as ``tool_calls``, so they
    show in the node's snapshot (declare ``tool_calls`` as an array output to use them downstream).
    """
    from ops import BaseAsyncToolOp, C, FlowContext
    from ops.compose import run_op

    name = ctx.node.data.get("opName") or ctx.node.data.get("op")
    if not isinstance(name, str) or not name:
        raise NodeError('Op node needs "opName" in its data')
    try:
        cls = C.get_op_class(name)
    except KeyError as exc:
        raise NodeError(str(exc.args[0])) from None
    params = ctx.node.data.get("opParams") or {}
    if not isinstance(params, dict):
        raise NodeError(f'Op node "opParams" must be an object, got {type(params).__name__}')
    try:
        op = cls(**params)
    except (TypeError, ValueError) as exc:
        raise NodeError(f"op {name}: bad opParams: {exc}") from None
    if isinstance(op, BaseAsyncToolOp):
        problems = op.tool_call.validate_inputs(ctx.inputs)
        if problems:
            raise NodeError(f"op {op.short_name}: " + "; ".join(problems))
    context = FlowContext(**ctx.inputs)
    await run_op(op, context)
    outputs: dict[str, Any] = dict(op.output_dict) if isinstance(op, BaseAsyncToolOp) else {}
    outputs["answer"] = context.response.answer
    outputs["success"] = context.response.success
    tool_calls = context.response.metadata.get("tool_calls")
    if isinstance(tool_calls, list):
        outputs["tool_calls"] = [dict(record) for record in tool_calls]
    return NodeResult(outputs)


def register_builtin_executors() -> None:
    from ..executor import register_node_executor
    from .code import execute_code
    from .http import execute_http
    from .llm import execute_llm

    for node_type, executor in {
        "start": execute_start,
        "end": execute_end,
        "block-start": execute_noop,
        "block-end": execute_noop,
        "break": execute_noop,
        "continue": execute_noop,
        "condition": execute_condition,
        "llm": execute_llm,
        "code": execute_code,
        "http": execute_http,
        "op": execute_op,
    }.items():
        register_node_executor(node_type, executor)
