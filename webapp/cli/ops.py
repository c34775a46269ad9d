"""``flowbridge run-op``: run a registered op or a configured flow in this process."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from .common import CLIError, model_server

if TYPE_CHECKING:
    from ops import FlowContext, FlowStreamChunk
    from ops.runs import ChunkEvents
    from ops.tool_call import ToolAttr

__all__ = ["add_run_op_parser", "parse_inputs", "run_op_command"]


def add_run_op_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "run-op", help="run an op or a flow",
        description="Run a registered op (ops/gallery) or a flow of FLOWBRIDGE_FLOWS (default examples/flows.yaml) "
                    "in this process and print its answer. Each input is KEY=VALUE; VALUE is read as JSON when it "
                    "parses (42, true, [1,2], {\"a\":1}) unless the input is declared a string, else taken as text. "
                    "Without NAME, list the ops and flows.",
        epilog="example: flowbridge run-op echo_tool text=hello")
    parser.add_argument("name", nargs="?", metavar="NAME", help="op (e.g. echo_tool, chat) or flow name")
    parser.add_argument("inputs", nargs="*", metavar="KEY=VALUE", help="the inputs")
    parser.add_argument("--flow", action="store_true", help="NAME is a flow, even if an op has that name too")
    parser.add_argument("--json", action="store_true",
                        help="print the whole response as JSON (answer, outputs, success, metadata)")
    parser.set_defaults(handler=run_op_command, takes_inputs=True)


def parse_inputs(pairs: Sequence[str], schema: dict[str, ToolAttr]) -> dict[str, Any]:
    """``["k=v", ...]`` as a dict: a declared string stays text, other values are JSON when they parse.

    :raises CLIError: for an argument without ``=`` or a key given twice.
    """
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CLIError(f"bad input {pair!r}: expected KEY=VALUE")
        if key in inputs:
            raise CLIError(f"input {key!r} given twice")
        attr = schema.get(key)
        if attr is not None and attr.type == "string":
            inputs[key] = raw
            continue
        try:
            inputs[key] = json.loads(raw)
        except ValueError:
            inputs[key] = raw
    return inputs


def run_op_command(args: argparse.Namespace) -> int:
    from llm_client import LLMError
    from ops import OpApp

    with OpApp():
        if args.name is None:
            if args.inputs:
                raise CLIError("give NAME before the inputs")
            _list()
            return 0
        what, tool_call, _ = _target(args.name, args.flow)
        inputs = parse_inputs(args.inputs, tool_call.input_schema)
        problems = tool_call.validate_inputs(inputs)
        reserved = sorted({"flow_id", "response", "stream_queue", "stream"} & set(inputs))
        problems += [f"{name!r} cannot be used as an input name" for name in reserved]
        if problems:
            raise CLIError(f"invalid inputs for {what}: " + "; ".join(problems))
    printer = _Printer(streaming=not args.json)
    # the model server first: OpApp reads LLM_BASE_URL, which model_server() sets when it starts one
    with model_server(), OpApp():
        _, _, run = _target(args.name, args.flow)
        try:
            result = asyncio.run(_execute(run, inputs, printer))
        except ValueError as exc:  # an op's "cannot work with this input" (the API's 422)
            if isinstance(exc, LLMError):
                raise
            raise CLIError(f"{what} failed: {exc}") from exc
    if printer.error:
        raise CLIError(f"{what} failed: {printer.error}")
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    else:
        printer.finish(result.get("answer"))
    if not result.get("success", True):
        error = (result.get("metadata") or {}).get("error") or {}
        raise CLIError(f"{what} failed: {error.get('message') or result.get('answer')}")
    return 0


def _list() -> None:
    from ops import BaseAsyncToolOp, C

    print("ops:")
    for _, cls in sorted(C.ops.items()):
        op = cls()
        tool = op.tool_call if isinstance(op, BaseAsyncToolOp) else None
        description = (tool.description if tool else "") or (cls.__doc__ or "").strip().splitlines()[0]
        print(f"  {op.short_name:<24} {description}")
    print("flows:")
    for name, flow in sorted(C.flows.items()):
        print(f"  {name:<24} {flow.description}")


Runner = Callable[["FlowContext"], Awaitable[dict[str, Any]]]


def _target(name: str, flow_only: bool) -> tuple[str, Any, Runner]:
    """``(label, tool call, runner)`` of the op, else the flow, called ``name``."""
    from ops import BaseAsyncToolOp, C, ToolCall
    from ops.compose import run_op
    from ops.runs import op_result

    if not flow_only:
        try:
            cls = C.get_op_class(name)
        except KeyError:
            cls = None
        if cls is not None:
            op = cls()

            async def run(context: FlowContext) -> dict[str, Any]:
                await run_op(op, context)
                return op_result(op, context)

            tool = op.tool_call if isinstance(op, BaseAsyncToolOp) else ToolCall(name=name)
            return f"op {op.short_name}", tool, run
    flow = C.flows.get(name)
    if flow is None:
        known = sorted({cls().short_name for cls in C.ops.values()} | set(C.flows))
        kind = "flow" if flow_only else "op or flow"
        raise CLIError(f"no {kind} named {name!r}; known: {', '.join(known)}")

    async def run_flow(context: FlowContext) -> dict[str, Any]:
        return (await flow.run(context)).model_dump()

    return f"flow {name}", flow.tool_call, run_flow


class _Printer:
    """Shows what a run streams: text as it comes on stdout, progress (and tool calls) on stderr.

    Chunks become the events the SSE routes send (:class:`ops.runs.ChunkEvents`): the model's
    reasoning and token counts are not shown.
    """

    def __init__(self, streaming: bool) -> None:
        self.streaming = streaming
        self.streamed = ""
        self.error: str | None = None
        self._events: ChunkEvents | None = None

    def chunk(self, chunk: FlowStreamChunk) -> None:
        if self._events is None:
            from ops.runs import ChunkEvents

            self._events = ChunkEvents()
        event = self._events.event(chunk)
        if event is None:
            return
        kind, data = event["type"], event["data"]
        if kind == "error":
            self.error = str(data)
        elif not self.streaming:
            return
        elif kind == "content" and isinstance(data, str):
            self.streamed += data
            sys.stdout.write(data)
            sys.stdout.flush()
        elif kind == "progress" and isinstance(data, dict):
            where = f"[{data.get('current')}/{data.get('total')}] " if data.get("total") else ""
            print(f"{where}{data.get('message', '')}", file=sys.stderr)

    def finish(self, answer: Any) -> None:
        """Print the answer, or end the line of the text already streamed."""
        if self.streamed:
            if not self.streamed.endswith("\n"):
                print()
            return
        print(answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False, indent=2))


async def _execute(run: Runner, inputs: dict[str, Any], printer: _Printer) -> dict[str, Any]:
    """Run with a stream queue, handing each chunk to ``printer`` as it comes."""
    from ops import FlowContext, FlowStreamChunk

    queue: asyncio.Queue[FlowStreamChunk] = asyncio.Queue()
    context = FlowContext(stream_queue=queue, **inputs)

    async def drain() -> None:
        while True:
            printer.chunk(await queue.get())

    reader = asyncio.ensure_future(drain())
    try:
        return await run(context)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        while not queue.empty():
            printer.chunk(queue.get_nowait())
