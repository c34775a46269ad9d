"""Streamed chat answers as events, shared by ``POST /api/chat`` and the ``chat_stream`` function."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from llm_client import LLMClient, LLMQueueFullError

from . import sse

__all__ = ["chat_events", "check_capacity"]


async def chat_events(
    client: LLMClient, messages: list[dict[str, str]], temperature: float, max_tokens: int
) -> AsyncIterator[dict[str, Any]]:
    """``start`` with the model, one ``content`` per text delta, ``done`` with counts and
    the upstream's ``finish_reason`` (``"length"``: the answer was cut at ``max_tokens``).

    Closing it early (the client went away) closes the upstream response at once,
    not when the generator is garbage-collected.
    """
    yield sse.start({"model": client.model})
    chunks = characters = 0
    stream = client.chat_stream(messages, temperature, max_tokens)
    async with contextlib.aclosing(client.iterate_stream_async(stream)) as deltas:
        async for delta in deltas:
            chunks += 1
            characters += len(delta)
            yield sse.content(delta)
    yield sse.done({"model": client.model, "chunks": chunks, "characters": characters,
                    "finish_reason": stream.finish_reason})


def check_capacity(client: LLMClient) -> None:
    """Refuse a stream up front (HTTP 503) when the LLM pool has no room, rather than inside it.

    :raises LLMQueueFullError: when every slot of the client's pool is taken.
    """
    stats = client.pool_stats
    if stats.running + stats.queued >= stats.capacity:
        raise LLMQueueFullError(f"all {stats.capacity} LLM slots are busy; retry shortly")
