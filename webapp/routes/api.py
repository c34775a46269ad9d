"""The JSON API."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from flask import Blueprint, Response, jsonify, request

from async_utils import async_route
from llm_client import LLMClient, LLMQueueFullError

from .. import sse
from ..errors import APIError
from ..extensions import get_llm_client
from ..schemas import ChatRequest, ChatResponse, parse_body

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.post("/chat")
@async_route
async def chat() -> Response:
    """Answer one message or a conversation: ``{"response", "model", "usage"}``.

    With ``"stream": true`` (or ``Accept: text/event-stream``) the answer is an
    event stream instead: ``start``, one ``content`` event per text delta, then
    ``done`` (or ``error`` if the upstream fails midway).
    """
    body = parse_body(ChatRequest, _json_body())
    assert isinstance(body, ChatRequest)
    client = get_llm_client()
    if sse.wants_stream(body.stream):
        _check_capacity(client)
        return sse.sse_response(chat_events(client, body.conversation(), body.temperature, body.max_tokens))
    result = await client.chat_completion_async(body.conversation(), body.temperature, body.max_tokens)
    reply = ChatResponse(response=result.text, model=result.model, usage=result.usage)
    return jsonify(reply.model_dump())


async def chat_events(
    client: LLMClient, messages: list[dict[str, str]], temperature: float, max_tokens: int
) -> AsyncIterator[dict[str, Any]]:
    """The events of a streamed chat answer. Closing it closes the upstream response."""
    yield sse.start({"model": client.model})
    chunks = characters = 0
    stream = client.chat_stream_async(messages, temperature, max_tokens)
    async with contextlib.aclosing(stream) as deltas:
        async for delta in deltas:
            chunks += 1
            characters += len(delta)
            yield sse.content(delta)
    yield sse.done({"model": client.model, "chunks": chunks, "characters": characters})


def _check_capacity(client: LLMClient) -> None:
    """Refuse a stream up front (503) when the LLM pool has no room, rather than in the stream."""
    stats = client.pool_stats
    if stats.running + stats.queued >= stats.capacity:
        raise LLMQueueFullError(f"all {stats.capacity} LLM slots are busy; retry shortly")


def _json_body() -> object:
    if not request.is_json:
        raise APIError("send a JSON body with Content-Type: application/json", status=415, type="unsupported_media_type")
    data = request.get_json(silent=True)
    if data is None:
        raise APIError("the request body is not valid JSON")
    return data
