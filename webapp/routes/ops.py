"""``/api/ops`` and ``/api/flows``: run registered ops and YAML flows over JSON."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from async_utils import async_route
from ops import BaseAsyncToolOp, BaseOp, C, Flow, FlowContext, FlowExpressionError, FlowStreamChunk
from ops.compose import run_op
from ops.flows import FlowSpec
from ops.runs import ChunkEvents, op_result

from .. import sse
from ..errors import APIError
from ..schemas import AdhocFlowRequest, FlowRunRequest, OpRunRequest, parse_body

bp = Blueprint("ops", __name__, url_prefix="/api")


def describe_op(name: str, cls: type[BaseOp]) -> dict[str, Any]:
    op = cls()
    tool = op.tool_call.simple_input_dump() if isinstance(op, BaseAsyncToolOp) else None
    return {
        "name": op.short_name,
        "class": name,
        "description": (tool or {}).get("function", {}).get("description") or (cls.__doc__ or "").strip(),
        "tool": tool,
    }


@bp.get("/ops")
def list_ops() -> Response:
    """Every registered op, with its OpenAI tool schema when it is a tool op."""
    return jsonify({"ops": [describe_op(name, cls) for name, cls in sorted(C.ops.items())]})


@bp.post("/ops/<name>")
@async_route
async def run_op_route(name: str) -> Response:
    """``{"inputs": {...}}`` → ``{"answer", "outputs", "success"}``."""
    cls = _find_op(name)
    inputs = _inputs()
    op = cls()
    problems = op.tool_call.validate_inputs(inputs) if isinstance(op, BaseAsyncToolOp) else []
    _check(f"op {op.short_name}", problems, inputs)
    if sse.wants_stream():
        return sse.sse_response(run_events(f"op {op.short_name}", lambda ctx: _op_summary(op, ctx), inputs))
    context = FlowContext(**inputs)
    await _run(op, context)
    return jsonify(op_result(op, context))


async def _op_summary(op: BaseOp, context: FlowContext) -> dict[str, Any]:
    await run_op(op, context)
    return op_result(op, context)


@bp.get("/flows")
def list_flows() -> Response:
    """The flows of ``FLOWBRIDGE_FLOWS``: ``{"flows": [...]}``, by name."""
    return jsonify({"flows": [flow.to_dict() for _, flow in sorted(C.flows.items())]})


@bp.post("/flows")
@async_route
async def run_adhoc_flow() -> Response:
    """``{"flow_content": "ChatOp() >> SummarizeOp()", "inputs": {...}}``: run an expression once.

    The expression is checked like a flows file (registered ops, literal
    keyword arguments, ``>>`` and ``|``); anything else is a 400 quoting it.
    """
    body = parse_body(AdhocFlowRequest, _json_object())
    assert isinstance(body, AdhocFlowRequest)
    inputs = body.inputs
    try:
        flow = Flow("adhoc", FlowSpec(flow_content=body.flow_content), C.ops)
        tool_call = flow.tool_call  # builds the ops: one may refuse its arguments
    except FlowExpressionError as exc:
        raise APIError(f"invalid flow_content: {exc}") from None
    _check("the flow", tool_call.validate_inputs(inputs), inputs)
    try:
        response = await flow.run(FlowContext(**inputs))
    except ValueError as exc:
        raise APIError(f"the flow failed: {exc}", status=422, type="op_failed") from exc
    return jsonify(response.model_dump())


@bp.post("/flows/<name>")
@async_route
async def run_flow_route(name: str) -> Response:
    """``{"inputs": {...}}`` (or the inputs at top level, as flowllm posts them) → FlowResponse."""
    flow = C.flows.get(name)
    if flow is None:
        raise APIError(f"no flow named {name!r}; see GET /api/flows", status=404, type="not_found")
    inputs = _inputs(allow_top_level=True)
    _check(f"flow {name}", flow.tool_call.validate_inputs(inputs), inputs)
    if _stream_flow(flow):
        return sse.sse_response(run_events(f"flow {name}", lambda ctx: _flow_summary(flow, ctx), inputs))
    context = FlowContext(**inputs)
    try:
        response = await flow.run(context)
    except ValueError as exc:
        raise APIError(f"flow {name} failed: {exc}", status=422, type="op_failed") from exc
    return jsonify(response.model_dump())


async def _flow_summary(flow: Flow, context: FlowContext) -> dict[str, Any]:
    return (await flow.run(context)).model_dump()


def _stream_flow(flow: Flow) -> bool:
    """A ``stream: true`` flow streams unless the client asks for JSON only; others on request."""
    accept = request.headers.get("Accept", "")
    if flow.stream:
        return not ("application/json" in accept and "text/event-stream" not in accept)
    return sse.wants_stream()


async def run_events(
    what: str, run: Callable[[FlowContext], Awaitable[dict[str, Any]]], inputs: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """Run an op or flow with a stream queue and turn what it emits into events.

    Each chunk becomes the event its type names (:class:`ops.runs.ChunkEvents`:
    ``answer``/``content`` → ``content``, ``tool``/``progress`` → ``progress``,
    ``think`` and ``usage`` are not sent), as it comes; the run's summary
    (answer, outputs, success) is the ``done`` event. An op's own ``error``
    chunk ends the stream (and the run); a ``done`` chunk an op emits is kept as
    ``summary`` in the final ``done``. A ``ValueError`` from an op (input it
    cannot work with) is an ``error`` with code ``op_failed``.
    """
    queue: asyncio.Queue[FlowStreamChunk] = asyncio.Queue()
    events = ChunkEvents()
    context = FlowContext(stream_queue=queue, **inputs)
    yield sse.start({"name": what, "flow_id": context.flow_id})
    task = asyncio.ensure_future(run(context))
    op_summary: Any = None
    try:
        while not task.done() or not queue.empty():
            if queue.empty():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    continue
                chunk = getter.result()
            else:
                chunk = queue.get_nowait()
            event = events.event(chunk)
            if event is None:
                continue
            if event["type"] == "error":
                yield sse.error(event["data"], event["error_code"])
                return
            if event["type"] == "done":
                op_summary = event["data"]
            else:
                yield event
        try:
            summary = task.result()
        except ValueError as exc:  # as the JSON route's 422
            yield sse.error(f"{what} failed: {exc}", "op_failed")
            return
        if op_summary is not None:
            summary["summary"] = op_summary
        yield sse.done(summary)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _find_op(name: str) -> type[BaseOp]:
    try:
        return C.get_op_class(name)
    except KeyError:
        raise APIError(f"no op named {name!r}; see GET /api/ops", status=404, type="not_found") from None


def _json_object() -> object:
    """The JSON body; 415 when it is not sent as JSON."""
    if not request.is_json:
        raise APIError("send a JSON body with Content-Type: application/json", status=415,
                       type="unsupported_media_type")
    return request.get_json(silent=True)


def _inputs(allow_top_level: bool = False) -> dict[str, Any]:
    """The body's ``inputs``, checked by the models the OpenAPI spec documents.

    flowllm's clients post a flow's inputs at top level; ``allow_top_level``
    accepts that form, which the spec does not describe.
    """
    body = _json_object()
    if allow_top_level and isinstance(body, dict) and "inputs" not in body:
        return body
    model = FlowRunRequest if allow_top_level else OpRunRequest
    parsed = parse_body(model, body)
    assert isinstance(parsed, (OpRunRequest, FlowRunRequest))
    return parsed.inputs


#: Context fields that inputs may not overwrite.
_RESERVED_INPUTS = frozenset({"flow_id", "response", "stream_queue", "stream"})


def _check(what: str, problems: list[str], inputs: dict[str, Any] | None = None) -> None:
    reserved = sorted(_RESERVED_INPUTS & set(inputs or {}))
    if reserved:
        problems = [*problems, f"{', '.join(map(repr, reserved))} cannot be used as input names"]
    if problems:
        raise APIError(f"invalid inputs for {what}: " + "; ".join(problems))


async def _run(op: BaseOp, context: FlowContext) -> None:
    try:
        await run_op(op, context)
    except ValueError as exc:
        # Raised by ops for input they cannot work with (e.g. no JSON in the text).
        raise APIError(f"{op.short_name} failed: {exc}", status=422, type="op_failed") from exc
