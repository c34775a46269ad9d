"""Parsing of the upstream's Server-Sent Events and the ``ChatStream`` iterator."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import requests

from ._deadline import CallGuard
from ._http import stream_read_error
from ._idle import paced
from ._tools import ToolCallAssembler
from .exceptions import LLMConnectionError, LLMError, LLMResponseError

#: How much of a stream's body is kept to describe one that is not Server-Sent Events.
_BODY_KEPT = 500


def iter_sse_data(chunks: Iterable[bytes]) -> Iterator[str]:
    """Yield the ``data`` of each SSE event in a byte stream.

    Multi-line ``data:`` fields are joined with newlines; comments (``:``) and
    other fields (``event``, ``id``, ``retry``) are skipped. Accepts ``\\n``,
    ``\\r\\n`` and ``\\r`` line ends, and events split across chunks.
    """
    buffer = b""
    data: list[str] = []
    for chunk in chunks:
        buffer += chunk
        lines = buffer.splitlines(keepends=True)
        # A last line without its end (or ending in \r, maybe half of \r\n) waits for more bytes.
        buffer = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        for raw in lines:
            line = _decode(raw.rstrip(b"\r\n"))
            if not line:
                if data:
                    yield "\n".join(data)
                    data = []
            elif line.startswith("data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(" ") else value)
    if buffer.strip():
        line = _decode(buffer.rstrip(b"\r\n"))
        if line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _decode(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise LLMResponseError("stream line is not UTF-8", body=line.decode("utf-8", "replace")) from None


def first_choice(data: dict[str, Any]) -> dict[str, Any]:
    """``choices[0]`` of a non-streamed chat completion.

    :raises LLMResponseError: when ``choices`` is missing, empty or not a list of objects.
    """
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise LLMResponseError("chat completion has no choices[0]", body=str(data)[:500])
    return choices[0]


class StreamDelta(NamedTuple):
    """One piece of a stream, as :meth:`ChatStream.deltas` yields it: ``kind`` is ``"content"``
    (answer text), ``"reasoning"`` (``delta.reasoning_content`` of reasoning models) or ``"usage"``
    (the token counts, a dict, from a usage chunk)."""

    kind: str
    value: Any


#: A parsed chunk: text, finish_reason, reasoning text, tool-call deltas, usage.
Chunk = tuple[str, "str | None", str, "list[Any] | None", "dict[str, Any] | None"]
_EMPTY: Chunk = ("", None, "", None, None)


def parse_chunk(payload: str) -> Chunk | None:
    """``(text, finish_reason, reasoning, tool_call_deltas, usage)`` of one chat-completion chunk;
    None for ``[DONE]``.

    ``"content": null`` is no text. ``"choices": []`` is a chunk without a choice (e.g. the
    usage chunk); a chunk without ``choices`` at all is not a chat-completion chunk.

    :raises LLMResponseError: if the chunk is not JSON, is an error object, or has no ``choices``.
    """
    if payload.strip() == "[DONE]":
        return None
    try:
        event: Any = json.loads(payload)
    except ValueError:
        raise LLMResponseError("stream chunk is not JSON", body=payload) from None
    if not isinstance(event, dict):
        raise LLMResponseError("stream chunk is not a JSON object", body=payload)
    if "error" in event:
        error = event["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise LLMResponseError(f"upstream error in stream: {message}", body=payload)
    choices = event.get("choices")
    if not isinstance(choices, list) or (choices and not isinstance(choices[0], dict)):
        raise LLMResponseError("stream chunk has no choices", body=payload)
    usage = event.get("usage")
    usage = usage if isinstance(usage, dict) else None
    if not choices:
        return _EMPTY if usage is None else ("", None, "", None, usage)  # e.g. a usage-only chunk
    delta = choices[0].get("delta")
    finish_reason = choices[0].get("finish_reason")
    finish_reason = finish_reason if isinstance(finish_reason, str) else None
    if not isinstance(delta, dict):
        return ("", finish_reason, "", None, usage)
    content = delta.get("content")
    reasoning = delta.get("reasoning_content")
    return (content if isinstance(content, str) else "", finish_reason,
            reasoning if isinstance(reasoning, str) else "", delta.get("tool_calls"), usage)


class ChatStream(Iterator[str]):
    """An iterator over the text deltas of a streamed chat completion.

    Nothing is sent until the first ``next()``. ``close()`` (also called by
    ``with``, by garbage collection of a generator wrapping it, or when the
    stream ends) closes the upstream response, and may be called from another
    thread to interrupt a blocked read. :attr:`finish_reason` tells why the
    answer ended (``"stop"``, ``"length"``, ``"tool_calls"``...) once the upstream said so;
    :attr:`tool_calls` holds the model's tool calls put together from their deltas, and
    :attr:`usage` the token counts of a usage chunk. :meth:`deltas` also yields the reasoning
    of reasoning models.

    Until the first event the call's total deadline applies (``LLM_TOTAL_TIMEOUT``, or the
    deadline of the request it serves); after it, no pause between two events may last
    longer than ``stall`` seconds (``LLM_TIMEOUT``), however slowly bytes trickle in.

    :param open_response: sends the request (with retries); returns the response and the call's guard.
    :param stall: the longest pause between two events, in seconds; None = no limit.
    """

    def __init__(self, open_response: Callable[[], tuple[requests.Response, CallGuard]], *,
                 stall: float | None = None) -> None:
        self._open = open_response
        self._stall = stall
        self._response: requests.Response | None = None
        self._guard: CallGuard | None = None
        self._events: Iterator[str] | None = None
        self._closed = False
        self._received = 0  # events read so far
        self._body = bytearray()  # the first bytes of the body, to tell what a body without events was
        self.finish_reason: str | None = None
        #: the token counts of the usage chunk, when the server sent one
        self.usage: dict[str, Any] | None = None
        self._tools: ToolCallAssembler | None = None
        self._lock = threading.Lock()
        #: ``(seconds, callback)``: while the upstream is silent, call ``callback()`` that often on the
        #: reading thread (:func:`llm_client._idle.paced`); what it raises ends the read. None: just block.
        self.on_idle: tuple[float, Callable[[], None]] | None = None

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> str:
        while True:
            text = self._advance()[0]
            if text:
                return text

    def deltas(self) -> Iterator[StreamDelta]:
        """The stream as :class:`StreamDelta` items: answer text, reasoning and usage, in the
        order the server sent them (use this or iterate the stream itself, not both)."""
        return _Deltas(self)

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """The model's tool calls put together from the deltas (see ``llm_client._tools``),
        OpenAI-shaped; complete once the stream has ended (``finish_reason`` is then
        ``"tool_calls"`` on most servers)."""
        return self._tools.calls if self._tools is not None else []

    def _advance(self) -> Chunk:
        """Read up to the next chunk; record its finish reason, tool-call deltas and usage.

        :raises StopIteration: at the end of the stream, or once it was closed.
        """
        while True:
            if self._closed:
                raise StopIteration
            if self._events is None:
                response, guard = self._open()
                with self._lock:
                    if self._closed:
                        guard.cancel()
                        response.close()
                        raise StopIteration
                    self._response, self._guard = response, guard
                chunks = response.iter_content(chunk_size=None)
                if self.on_idle is not None:
                    chunks = paced(response, chunks, *self.on_idle)
                self._events = iter_sse_data(self._remember(chunks))
            try:
                payload = next(self._events)
            except StopIteration:
                self.close()
                if self.finish_reason is not None:  # some servers omit [DONE] after the last chunk
                    raise
                if not self._received and bytes(self._body).strip():
                    raise LLMResponseError("the stream's body is not Server-Sent Events",
                                           body=bytes(self._body).decode("utf-8", "replace")) from None
                raise LLMConnectionError("stream ended before the answer was complete") from None
            except LLMError:
                self.close()
                raise
            except (requests.RequestException, OSError, AttributeError, ValueError) as exc:
                # AttributeError/ValueError: urllib3 reading from a response closed under it.
                was_closed, guard = self._closed, self._guard
                self.close()
                if was_closed and not (guard is not None and guard.expired):
                    raise StopIteration from None
                raise stream_read_error(exc, guard, self._stall, started=self._received > 0) from exc
            self._received += 1
            self._after_event()
            try:
                parsed = parse_chunk(payload)
            except LLMResponseError:
                self.close()
                raise
            if parsed is None:
                self.close()
                raise StopIteration
            if parsed[1] is not None:
                self.finish_reason = parsed[1]
            if parsed[3] is not None:
                if self._tools is None:
                    self._tools = ToolCallAssembler()
                self._tools.add(parsed[3])
            if parsed[4] is not None:
                self.usage = parsed[4]
            return parsed

    def _remember(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if len(self._body) < _BODY_KEPT:
                self._body += chunk[: _BODY_KEPT - len(self._body)]
            yield chunk

    def _after_event(self) -> None:
        """From now on the stall limit applies, not the call's deadline (see the class docstring)."""
        guard, response = self._guard, self._response
        if guard is None or self._stall is None:
            return
        guard.rearm(self._stall, f"LLM_TIMEOUT={self._stall:g}s")
        if self._received == 1 and response is not None:
            # The socket's read timeout was cut to the time left of the call's deadline; a stream
            # running is exempt from that deadline, and its pauses are limited by LLM_TIMEOUT.
            with contextlib.suppress(AttributeError, OSError):
                response.raw.connection.sock.settimeout(self._stall)

    def close(self) -> None:
        """Close the upstream response; idempotent and thread-safe."""
        with self._lock:
            self._closed = True
            response, self._response = self._response, None
            guard = self._guard
        if guard is not None:
            guard.cancel()
        if response is not None:
            response.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class _Deltas(Iterator[StreamDelta]):
    """:meth:`ChatStream.deltas`: each chunk's reasoning, text and usage as separate items."""

    def __init__(self, stream: ChatStream) -> None:
        self._stream = stream
        self._pending: list[StreamDelta] = []

    def __next__(self) -> StreamDelta:
        while not self._pending:
            text, _finish, reasoning, _calls, usage = self._stream._advance()
            if reasoning:
                self._pending.append(StreamDelta("reasoning", reasoning))
            if text:
                self._pending.append(StreamDelta("content", text))
            if usage is not None:
                self._pending.append(StreamDelta("usage", usage))
        return self._pending.pop(0)

    def close(self) -> None:
        self._stream.close()
