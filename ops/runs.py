"""What a run of an op gives the code that started it: the result of an op run, and the event each of
its stream chunks becomes.

The HTTP routes (``/api/ops``, ``/api/flows``: SSE) and ``flowbridge run-op`` (the terminal) both use
these, so an op's chunks mean the same everywhere. A chunk becomes the event named by
:attr:`~ops.schema.FlowStreamChunk.event_type`:

========================  ===========  ==================================================================
chunk type                event        data
========================  ===========  ==================================================================
``answer``, ``content``   ``content``  the text
``tool``                  ``progress`` ``{"current": n, "total": 0, "percentage": 0, "message":
                                       "tool call: <name>", "name"}`` and the chunk's own fields (the
                                       call's ``id``, ``type``, ``function: {name, arguments}``, what
                                       the op adds); n counts the run's tool calls; ``"problem"`` when
                                       the call cannot run (see :mod:`ops.llm`)
``progress``              ``progress`` the chunk as sent (``{"current", "total", "percentage", "message"}``)
``error``                 ``error``    the message; ``error_code`` from the chunk's metadata
                                       (default ``op_failed``). It ends the stream.
``done``                  ``done``     the chunk (the caller adds it to its summary)
``think``, ``usage``,     none         the model's reasoning and token counts are not output; ``start``
``start``                              is sent by the caller itself
========================  ===========  ==================================================================
"""

from __future__ import annotations

from typing import Any

from .base import BaseOp
from .context import FlowContext
from .schema import ChunkEnum, FlowStreamChunk
from .tool_op import BaseAsyncToolOp

__all__ = ["ChunkEvents", "op_result"]

Event = dict[str, Any]


def op_result(op: BaseOp, context: FlowContext) -> dict[str, Any]:
    """``{"answer", "outputs", "success", "metadata"}`` of ``op`` after it ran on ``context``."""
    outputs = dict(op.output_dict) if isinstance(op, BaseAsyncToolOp) else {}
    response = context.response
    return {"answer": response.answer, "outputs": outputs, "success": response.success,
            "metadata": response.metadata}


class ChunkEvents:
    """Turns the chunks of one run into events ``{"type", "data"}`` (see the module doc); one per run,
    as it numbers the run's tool calls."""

    def __init__(self) -> None:
        self.tool_calls = 0

    def event(self, chunk: FlowStreamChunk) -> Event | None:
        """The event of ``chunk``, or ``None`` when it is not sent."""
        kind = chunk.event_type
        if kind is None or kind == "start":
            return None
        if kind == "error":
            return {"type": "error", "data": str(chunk.chunk),
                    "error_code": str(chunk.metadata.get("error_code", "op_failed"))}
        if chunk.chunk_type is ChunkEnum.TOOL:
            return {"type": "progress", "data": self._tool_progress(chunk)}
        return {"type": kind, "data": chunk.chunk}

    def _tool_progress(self, chunk: FlowStreamChunk) -> dict[str, Any]:
        """The progress data of a tool chunk: the chunk's own fields (the call's OpenAI dump
        ``{"id", "type", "function"}`` and whatever the op added), over the progress fields."""
        self.tool_calls += 1
        call = chunk.chunk if isinstance(chunk.chunk, dict) else {"call": chunk.chunk}
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        name = str(call.get("name") or function.get("name") or "")
        data: dict[str, Any] = {"current": self.tool_calls, "total": 0, "percentage": 0,
                                "message": f"tool call: {name}", "name": name, **call}
        if chunk.metadata.get("problem") and "problem" not in data:
            data["problem"] = str(chunk.metadata["problem"])
        return data
