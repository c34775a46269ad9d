"""Parsing of the upstream's Server-Sent Events and the ``ChatStream`` iterator."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import requests

from .exceptions import LLMConnectionError, LLMResponseError


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
            line = raw.rstrip(b"\r\n").decode("utf-8")
            if not line:
                if data:
                    yield "\n".join(data)
                    data = []
            elif line.startswith("data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(" ") else value)
    if buffer.strip():
        line = buffer.rstrip(b"\r\n").decode("utf-8")
        if line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def parse_chunk(payload: str) -> tuple[str, bool] | None:
    """``(text delta, finished)`` of one chat-completion chunk; None for ``[DONE]``.

    :raises LLMResponseError: if the chunk is not JSON, or is an error object.
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
    choices = event.get("choices") or []
    if not choices:
        return "", False  # e.g. a usage-only chunk
    delta = choices[0].get("delta") or {}
    return delta.get("content") or "", choices[0].get("finish_reason") is not None


class ChatStream(Iterator[str]):
    """An iterator over the text deltas of a streamed chat completion.

    Nothing is sent until the first ``next()``. ``close()`` (also called by
    ``with``, by garbage collection of a generator wrapping it, or when the
    stream ends) closes the upstream response, and may be called from another
    thread to interrupt a blocked read.

    :param open_response: sends the request (with retries) and returns the response.
    """

    def __init__(self, open_response: Callable[[], requests.Response]) -> None:
        self._open = open_response
        self._response: requests.Response | None = None
        self._events: Iterator[str] | None = None
        self._closed = False
        self._finished = False  # a chunk carried finish_reason
        self._lock = threading.Lock()

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> str:
        while True:
            if self._closed:
                raise StopIteration
            if self._events is None:
                response = self._open()
                with self._lock:
                    if self._closed:
                        response.close()
                        raise StopIteration
                    self._response = response
                self._events = iter_sse_data(response.iter_content(chunk_size=None))
            try:
                payload = next(self._events)
            except StopIteration:
                self.close()
                if self._finished:  # some servers omit [DONE] after the last chunk
                    raise
                raise LLMConnectionError("stream ended before the answer was complete") from None
            except (requests.RequestException, OSError, AttributeError, ValueError) as exc:
                # AttributeError/ValueError: urllib3 reading from a response closed under it.
                was_closed = self._closed
                self.close()
                if was_closed:
                    raise StopIteration from None
                raise LLMConnectionError(f"stream interrupted: {type(exc).__name__}") from exc
            try:
                parsed = parse_chunk(payload)
            except LLMResponseError:
                self.close()
                raise
            if parsed is None:
                self.close()
                raise StopIteration
            text, finished = parsed
            self._finished = self._finished or finished
            if text:
                return text

    def close(self) -> None:
        """Close the upstream response; idempotent and thread-safe."""
        with self._lock:
            self._closed = True
            response, self._response = self._response, None
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
