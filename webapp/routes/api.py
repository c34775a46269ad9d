"""The JSON API."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from async_utils import async_route

from .. import sse
from ..chat import chat_events, check_capacity
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
        check_capacity(client)
        return sse.sse_response(chat_events(client, body.conversation(), body.temperature, body.max_tokens))
    result = await client.chat_completion_async(body.conversation(), body.temperature, body.max_tokens)
    reply = ChatResponse(response=result.text, model=result.model, usage=result.usage,
                         finish_reason=result.finish_reason)
    response = jsonify(reply.model_dump())
    if result.cache:  # LLM_CACHE is on and the request was cacheable
        response.headers["X-Cache"] = result.cache  # miss | hit | coalesced
    return response


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI 3.1 description of the JSON API, generated from the request and response models."""
    from ..openapi import build_spec

    return jsonify(build_spec(current_app._get_current_object()))  # type: ignore[attr-defined]


def _json_body() -> object:
    if not request.is_json:
        raise APIError("send a JSON body with Content-Type: application/json", status=415, type="unsupported_media_type")
    data = request.get_json(silent=True)
    if data is None:
        raise APIError("the request body is not valid JSON")
    return data
