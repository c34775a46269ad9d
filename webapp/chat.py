"""Streamed chat answers as events, shared by ``POST /api/chat`` and the ``chat_stream`` function.

A stream is read on the thread that serves its request: the client's sync
:class:`~llm_client.ChatStream` is iterated directly, with no LLM pool thread
and no hand-over between threads per token (under load, two threads per stream
and a wake-up per token kept a thousand streams' threads fighting for the GIL,
and health checks waited seconds). While the upstream is silent the request
thread waits for its bytes and every :func:`webapp.sse.probe_interval` seconds
does the event stream's chores (:func:`webapp.sse.idle`): it notices a client
that went away (the upstream response is closed at once) and sends heartbeats.
The limits are those of a stream read on the pool: ``LLM_TOTAL_TIMEOUT`` until
the first event and ``LLM_TIMEOUT`` between events (the client's own), and
``LLM_ASYNC_TIMEOUT`` between two text deltas.

Streams take no pool thread, but they count against the same bound as before:
the pool's capacity (``LLM_ASYNC_WORKERS + LLM_ASYNC_QUEUE_SIZE``) holds the
pool's calls and the open streams of the client together; beyond it a stream
is refused (503 ``overloaded``). Under gunicorn the worker's work slots
(:mod:`webapp.guards.capacity`) are the tighter bound.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from llm_client import LLMClient, LLMQueueFullError, LLMTimeoutError

from . import sse

__all__ = ["chat_events", "check_capacity", "open_streams"]

_lock = threading.Lock()
_open: weakref.WeakKeyDictionary[LLMClient, int] = weakref.WeakKeyDictionary()


def chat_events(
    client: LLMClient, messages: list[dict[str, str]], temperature: float, max_tokens: int
) -> Iterator[dict[str, Any]]:
    """``start`` with the model, one ``content`` per text delta, ``done`` with counts and
    the upstream's ``finish_reason`` (``"length"``: the answer was cut at ``max_tokens``).

    Read on the calling thread. Closing it early (the client went away) closes the
    upstream response at once, not when the generator is garbage-collected.

    :raises LLMQueueFullError: when the pool's calls and the open streams fill its capacity.
    """
    yield sse.start({"model": client.model})
    chunks = characters = 0
    limit = client.pool_stats.timeout
    last = time.monotonic()

    def idle() -> None:
        sse.idle()
        if limit is not None and time.monotonic() - last >= limit:
            # the bridge's limit per item, named as it names it
            raise LLMTimeoutError(f"the stream sent nothing for LLM_ASYNC_TIMEOUT={limit:g}s")

    with _stream_slot(client), client.chat_stream(messages, temperature, max_tokens) as stream:
        stream.on_idle = (sse.probe_interval() if limit is None else min(sse.probe_interval(), limit), idle)
        for delta in stream:
            last = time.monotonic()
            chunks += 1
            characters += len(delta)
            yield sse.content(delta)
    yield sse.done({"model": client.model, "chunks": chunks, "characters": characters,
                    "finish_reason": stream.finish_reason})


def open_streams(client: LLMClient) -> int:
    """Streams of ``client`` being read now, in this process."""
    with _lock:
        return _open.get(client, 0)


def check_capacity(client: LLMClient) -> None:
    """Refuse a stream up front (HTTP 503) when the LLM client has no room, rather than inside it.

    :raises LLMQueueFullError: when the pool's calls and the open streams fill its capacity.
    """
    with _lock:
        _refuse_if_full(client)


@contextlib.contextmanager
def _stream_slot(client: LLMClient) -> Iterator[None]:
    """Count one open stream of ``client`` while the block runs, if there is room."""
    with _lock:
        _refuse_if_full(client)
        _open[client] = _open.get(client, 0) + 1
    try:
        yield
    finally:
        with _lock:
            _open[client] -= 1


def _refuse_if_full(client: LLMClient) -> None:
    stats = client.pool_stats
    streams = _open.get(client, 0)
    if stats.running + stats.queued + streams >= stats.capacity:
        raise LLMQueueFullError(f"all {stats.capacity} LLM slots are busy ({streams} streams, "
                                f"{stats.running + stats.queued} calls); retry shortly")
