"""Streamed ``/v1/chat/completions``: OpenAI's chunk stream, on flowbridge's event-stream machinery.

The sources yield flowbridge events (:mod:`webapp.sse`) whose ``data`` is already an OpenAI
``chat.completion.chunk``; :class:`OpenAIStream` writes each as ``data: <chunk>`` and ends with
``data: [DONE]``. Heartbeats (comment lines, which OpenAI clients skip), noticing a client that went
away and closing the source then, and turning an exception into the stream's last frame are
:class:`webapp.sse.EventStream`'s. A failure after the first chunk is OpenAI's in-stream error
``data: {"error": {"message", "type", "param", "code"}}`` (the ``openai`` SDK raises ``APIError``),
with no ``[DONE]`` after it.

* the upstream model: its deltas as they come (text, ``reasoning_content``), its tool calls put
  together in one chunk at the end, then the finish reason, and the usage chunk when asked for;
* a flow: its ``content`` chunks as text; its ``progress`` as chunks whose ``delta`` holds one line
  of ``reasoning_content`` and whose ``progress`` field the event's data; its answer as text at the
  end when it streamed none;
* a workflow: a chunk per node status change, as a flow's progress, then the end node's outputs.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from flask import Response, current_app

from llm_client import ChatStream, LLMClient, LLMTimeoutError

from .. import sse
from ..chat import _stream_slot
from .openai_models import answer_text

__all__ = ["Chunks", "OpenAIStream", "UpstreamChunks", "flow_answer", "openai_response", "openai_type", "run_chunks",
           "workflow_answer"]

DONE_FRAME = b"data: [DONE]\n\n"
#: flowbridge error types → OpenAI error types, for in-stream errors and error bodies
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 409: "conflict_error", 413: "invalid_request_error",
          415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error"}


def openai_type(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status."""
    return _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


class Chunks:
    """Makes the chunks of one streamed completion: same ``id``, ``created`` and ``model`` in each."""

    def __init__(self, model: str) -> None:
        self.id = "chatcmpl-" + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = model
        self._role_sent = False

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
        if not self._role_sent:
            delta = {"role": "assistant", **delta}
            self._role_sent = True
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
                **extra}

    def usage(self, usage: dict[str, Any] | None) -> dict[str, Any]:
        """The last chunk of ``stream_options.include_usage``: no choices, the token counts."""
        counts = {k: v for k, v in (usage or {}).items() if isinstance(v, int)}
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            counts.setdefault(key, 0)
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": counts}


def event(chunk: dict[str, Any]) -> dict[str, Any]:
    """A flowbridge ``content`` event carrying one OpenAI chunk, for :class:`OpenAIStream`."""
    return {"type": "content", "data": chunk}


class OpenAIStream(sse.EventStream):
    """An :class:`~webapp.sse.EventStream` that writes OpenAI's frames: each event's ``data`` chunk,
    ``[DONE]`` at the end, an ``error`` event as OpenAI's error object."""

    def __iter__(self) -> Iterator[bytes]:
        events = self._async_frames() if hasattr(self.source, "__anext__") else self._sync_frames()
        try:
            for item in events:
                if item is None:
                    yield sse.HEARTBEAT_FRAME
                    continue
                self.sent.append(item["type"])
                if item["type"] == "error":
                    status, code = _status_of(item.get("error_code")), item.get("error_code")
                    error = {"message": str(item.get("data")), "type": openai_type(status), "param": None,
                             "code": code}
                    yield b"data: " + _dumps({"error": error}) + b"\n\n"
                    return
                if item["type"] == "done":
                    break
                if item["type"] == "content":
                    yield b"data: " + _dumps(item["data"]) + b"\n\n"
            if not self.abandoned:
                self.sent.append("done")
                yield DONE_FRAME
        finally:
            events.close()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _status_of(code: Any) -> int:
    """The HTTP status an error type would have had, for its OpenAI type (unknown: a server error)."""
    return {"invalid_request": 400, "op_failed": 422, "workflow_failed": 422, "task_failed": 422,
            "task_canceled": 409, "not_found": 404, "rate_limited": 429, "deadline_exceeded": 504}.get(
        str(code), 500)


def openai_response(source: Any, on_close: Callable[[], None] | None = None) -> Response:
    """The ``text/event-stream`` response of a streamed completion (as :func:`webapp.sse.sse_response`)."""
    from flask import stream_with_context

    heartbeat = float(current_app.config.get("FLOWBRIDGE_SSE_HEARTBEAT", 15.0))
    sock = sse._request_socket()
    stream = OpenAIStream(source, heartbeat=heartbeat, gone=lambda: sse.client_gone(sock))
    response = sse._EventStreamResponse(stream_with_context(iter(stream)), mimetype="text/event-stream",
                                        headers=sse.HEADERS)
    response.event_stream = stream
    if on_close is not None:
        response.call_on_close(on_close)
    return response


# -- the upstream model ------------------------------------------------------------------------------

class UpstreamChunks:
    """The chunks of a streamed upstream completion, read on the request thread (as ``webapp.chat``).

    The upstream stream is opened, and its first piece read, when this is made: a failure before the
    first token is still an HTTP error status (429, 503...), which OpenAI clients map to their
    exceptions. Iterate it, or :meth:`close` it (idempotent; the response calls it when it closes).

    :raises LLMQueueFullError: when the LLM client's capacity is taken.
    """

    def __init__(self, client: LLMClient, stream: ChatStream, model: str, include_usage: bool) -> None:
        self._chunks = Chunks(model)
        self._include_usage = include_usage
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(_stream_slot(client))
        self._stream = self._stack.enter_context(stream)
        self._limit = client.pool_stats.timeout
        self._last = time.monotonic()
        self._deltas = stream.deltas()
        try:
            self._first = next(self._deltas, None)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._stack.close()

    def _idle(self) -> None:
        sse.idle()
        if self._limit is not None and time.monotonic() - self._last >= self._limit:
            raise LLMTimeoutError(f"the stream sent nothing for LLM_ASYNC_TIMEOUT={self._limit:g}s")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            interval = sse.probe_interval()
            self._stream.on_idle = (interval if self._limit is None else min(interval, self._limit), self._idle)
            usage: dict[str, Any] | None = None
            pending = [self._first] if self._first is not None else []
            while True:
                delta = pending.pop() if pending else next(self._deltas, None)
                if delta is None:
                    break
                self._last = time.monotonic()
                if delta.kind == "usage":
                    usage = delta.value
                elif delta.kind == "content":
                    yield event(self._chunks.chunk({"content": delta.value}))
                elif delta.kind == "reasoning":
                    yield event(self._chunks.chunk({"reasoning_content": delta.value}))
            calls = self._stream.tool_calls
            if calls:
                yield event(self._chunks.chunk({"tool_calls": calls}))
            finish = self._stream.finish_reason or ("tool_calls" if calls else "stop")
            yield event(self._chunks.chunk({}, finish))
            if self._include_usage:
                yield event(self._chunks.usage(usage))
        finally:
            self.close()


# -- flows and workflows ------------------------------------------------------------------------------

def progress_line(data: Any) -> str:
    """One line of text for a progress event: its message (else its node and status), and how far it is."""
    if not isinstance(data, dict):
        return f"{data}\n"
    line = str(data.get("message") or " ".join(str(p) for p in (data.get("nodeID"), data.get("status")) if p))
    if isinstance(data.get("current"), int) and isinstance(data.get("total"), int) and data.get("total"):
        line += f" ({data['current']}/{data['total']})"
    return line + "\n"


async def run_chunks(events: AsyncIterator[dict[str, Any]], model: str, include_usage: bool,
                     answer: Callable[[dict[str, Any]], str]) -> AsyncIterator[dict[str, Any]]:
    """A flow's or workflow's flowbridge events as OpenAI chunks.

    :param answer: the answer text from the ``done`` event's data (sent unless content was streamed).
    """
    chunks = Chunks(model)
    streamed = False
    try:
        async for item in events:
            kind = item.get("type")
            if kind == "content":
                text = item["data"] if isinstance(item["data"], str) else json.dumps(item["data"])
                streamed = streamed or bool(text)
                yield event(chunks.chunk({"content": text}))
            elif kind == "progress":
                yield event(chunks.chunk({"reasoning_content": progress_line(item["data"])},
                                         progress=item["data"]))
            elif kind == "error":
                yield item
                return
            elif kind == "done":
                text = "" if streamed else answer(item.get("data") or {})
                if text:
                    yield event(chunks.chunk({"content": text}))
                yield event(chunks.chunk({}, "stop"))
                if include_usage:
                    yield event(chunks.usage(None))
                return
            elif kind == "start":
                yield event(chunks.chunk({"content": ""}))
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()


def flow_answer(summary: dict[str, Any]) -> str:
    """The text of a flow's ``done`` summary (its FlowResponse)."""
    return answer_text(summary.get("answer", ""))


def workflow_answer(data: dict[str, Any]) -> str:
    """The text of a workflow's ``done`` event: its end node's outputs."""
    return answer_text(data.get("outputs") or {})
