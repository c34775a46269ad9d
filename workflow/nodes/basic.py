"""Executors of FlowGram's core nodes (start, end, llm, condition, blocks, break, continue) and ``op``."""

from __future__ import annotations

from typing import Any

from ..conditions import choose_branch
from ..executor import ExecutionContext, NodeError, NodeResult
from ..outbound import Target

LLM_REQUIRED = ("modelName", "apiKey", "apiHost", "prompt")


async def execute_start(ctx: ExecutionContext) -> NodeResult:
    """Outputs are the workflow's raw inputs."""
    return NodeResult(dict(ctx.run.state.inputs))  # type: ignore[attr-defined]


async def execute_end(ctx: ExecutionContext) -> NodeResult:
    """Outputs (and the workflow's outputs) are the resolved inputs."""
    return NodeResult(dict(ctx.inputs))


async def execute_noop(ctx: ExecutionContext) -> NodeResult:
    """block-start, block-end, break and continue do nothing themselves (the engine sets loop flags)."""
    return NodeResult({})


async def execute_condition(ctx: ExecutionContext) -> NodeResult:
    """First true condition wins (its key is the branch), else ``else``."""
    conditions = ctx.node.data.get("conditions") or []
    branch = choose_branch(conditions, ctx.resolve)  # type: ignore[attr-defined]
    return NodeResult({}, branch=branch)


def llm_inputs(ctx: ExecutionContext) -> dict[str, Any]:
    """The llm node's inputs, with the configured server's host and model as defaults.

    :raises NodeError: FlowGram's ``LLM node missing required inputs: "a", "b"``, or a bad host.
    """
    inputs = dict(ctx.inputs)
    settings = ctx.settings
    if not inputs.get("apiHost") and settings.llm_base_url:
        inputs["apiHost"] = settings.llm_base_url
    if not inputs.get("modelName") and settings.llm_model:
        inputs["modelName"] = settings.llm_model
    if not inputs.get("apiKey") and inputs.get("apiHost") == settings.llm_base_url:
        inputs["apiKey"] = "configured"  # the app's own client carries its key
    missing = [name for name in LLM_REQUIRED if inputs.get(name) in (None, "")]
    if inputs.get("temperature") is None:
        missing.append("temperature")
    if missing:
        raise NodeError("LLM node missing required inputs: " + ", ".join(f'"{name}"' for name in missing))
    if not str(inputs["apiHost"]).startswith(("http://", "https://")):
        raise NodeError("Invalid API host: it is not an http(s) URL")  # never echoed: it may hold a key
    return inputs


def _checked_api_host(ctx: ExecutionContext, url: str) -> Target:
    """Where the llm node's requests (and its ``apiKey``) go; :class:`NodeError` unless allowed."""
    try:
        return ctx.settings.check_url(url)
    except NodeError as exc:
        raise NodeError(f"Invalid API host: {exc}") from None


async def execute_llm(ctx: ExecutionContext) -> NodeResult:
    """Chat through the app's LLM client (or a client for the node's own host, if allowed)."""
    inputs = llm_inputs(ctx)
    target = _checked_api_host(ctx, str(inputs["apiHost"]))
    messages = []
    if inputs.get("systemPrompt"):
        messages.append({"role": "system", "content": str(inputs["systemPrompt"])})
    messages.append({"role": "user", "content": str(inputs["prompt"])})
    client = ctx.runtime.llm_client_for(inputs)  # type: ignore[attr-defined]
    # the URL the client will really POST to (its own spelling of the base URL): the checked host, or nothing
    if _checked_api_host(ctx, f"{client.base_url}/chat/completions").origin != target.origin:
        raise NodeError("Invalid API host: the LLM client would send to another host than the one checked")
    temperature = float(inputs["temperature"])
    result = await client.chat_completion_async(messages, temperature=min(max(temperature, 0.0), 2.0),
                                                max_tokens=int(inputs.get("maxTokens") or 512))
    return NodeResult({"result": result.text})


async def execute_op(ctx: ExecutionContext) -> NodeResult:
    """Run a registered Op by name (``data.opName``) with the node's inputs.

    Outputs: the op's outputs (tool ops), plus ``answer`` and ``success``.
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
    op = cls(**params)
    if isinstance(op, BaseAsyncToolOp):
        problems = op.tool_call.validate_inputs(ctx.inputs)
        if problems:
            raise NodeError(f"op {op.short_name}: " + "; ".join(problems))
    context = FlowContext(**ctx.inputs)
    await run_op(op, context)
    outputs: dict[str, Any] = dict(op.output_dict) if isinstance(op, BaseAsyncToolOp) else {}
    outputs["answer"] = context.response.answer
    outputs["success"] = context.response.success
    return NodeResult(outputs)


def register_builtin_executors() -> None:
    from ..executor import register_node_executor
    from .code import execute_code
    from .http import execute_http

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
