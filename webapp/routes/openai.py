"""``/v1``: the OpenAI API as a front door (chat completions, models, embeddings).

Any OpenAI client (the ``openai`` SDK, LangChain's ``ChatOpenAI``...) pointed at
``http://<flowbridge>/v1`` chats with the upstream model through the app's LLM client, so it
gets what ``/api/chat`` gets: the response cache and coalescing (``X-Cache``), API keys,
metrics, request IDs, the request deadline and backpressure (503 with ``Retry-After``).
Flows and workflows are models too (``flow/<name>``, ``workflow/<name>``; see
:mod:`webapp.routes.openai_models`), streamed as chunks (:mod:`webapp.routes.openai_stream`).

Errors are OpenAI's ``{"error": {"message", "type", "param", "code"}}`` with the statuses its SDK
maps to its exception classes: 400 BadRequestError, 401 AuthenticationError, 404 NotFoundError,
409 ConflictError (a workflow task canceled), 422 UnprocessableEntityError (a flow or workflow that
failed on its input), 429 RateLimitError (with ``Retry-After``), 5xx InternalServerError
(500, 502/504 from the upstream, 503 overloaded with ``Retry-After``). ``code`` is flowbridge's
error type (``model_not_found``, ``overloaded``...).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import struct
import time
import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from async_utils import async_route
from llm_client import LLMError, LLMStatusError
from ops import FlowContext
from workflow import TaskCapacityError, WorkflowInputError

from .. import schemas as s
from ..chat import check_capacity
from ..errors import UPSTREAM_REJECTED, APIError, classify, retry_after
from ..extensions import get_llm_client, get_workflow_runtime
from ..guards.deadlines import remaining
from ..task_events import task_events
from .ops import run_events
from .openai_models import Model, ModelInputError, answer_text, find_model, list_models, model_inputs, \
    upstream_names
from .openai_stream import UpstreamChunks, flow_answer, openai_response, openai_type, run_chunks, workflow_answer

logger = logging.getLogger(__name__)

bp = Blueprint("openai", __name__, url_prefix="/v1")

#: Request fields sent on to the upstream as they are (the client sets the others itself).
_PASSED_ON = ("top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias", "parallel_tool_calls")
#: Seconds a workflow model may run when the request has no deadline.
WORKFLOW_WAIT = 60.0


class OpenAIRequestError(APIError):
    """A 4xx naming the request field at fault (``param``)."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400,
                 type: str = "invalid_request") -> None:
        super().__init__(message, status=status, type=type)
        self.param = param


# -- routes -------------------------------------------------------------------------------------------

@bp.post("/chat/completions")
@async_route
async def chat_completions() -> Response:
    """OpenAI's chat completion: the upstream model, a flow (``flow/<name>``) or a workflow (``workflow/<name>``).

    ``stream: true`` answers ``chat.completion.chunk`` frames ending in ``data: [DONE]``
    (``stream_options.include_usage`` adds the usage chunk); tools, tool_choice and response_format
    go to the upstream model; ``n`` may only be 1.
    """
    body = s.parse_body(s.OpenAIChatRequest, _json_body())
    assert isinstance(body, s.OpenAIChatRequest)
    if body.stream_options is not None and not body.stream:
        raise OpenAIRequestError("stream_options is only allowed with stream: true", param="stream_options")
    model = find_model(body.model)
    if model is None:
        raise _no_model(body.model)
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    if model.kind == "upstream":
        return await _upstream_chat(body, messages)
    _no_tools_for(model, body)
    try:
        inputs = model_inputs(model, messages)
    except ModelInputError as exc:
        raise OpenAIRequestError(str(exc), param="messages") from None
    usage = bool(body.stream_options and body.stream_options.include_usage)
    if model.kind == "flow":
        return await _flow_chat(model, inputs, bool(body.stream), usage)
    return await _workflow_chat(model, inputs, bool(body.stream), usage)


@bp.get("/models")
def models() -> Response:
    """OpenAI's model list: the upstream model(s), then ``flow/<name>`` and ``workflow/<name>``, each with
    ``input`` saying what a chat feeds it."""
    return jsonify({"object": "list", "data": [m.describe() for m in list_models()]})


@bp.get("/models/<path:model>")
def retrieve_model(model: str) -> Response:
    """OpenAI's model retrieval (``client.models.retrieve``): one entry of ``GET /v1/models``, else 404."""
    for each in list_models():
        if each.id == model:
            return jsonify(each.describe())
    raise _no_model(model)


@bp.post("/embeddings")
@async_route
async def embeddings() -> Response:
    """OpenAI's embeddings of a text or a list of texts, by the upstream (``LLM_EMBEDDING_MODEL``, else
    ``LLM_MODEL``); ``encoding_format`` ``float`` or ``base64``."""
    body = s.parse_body(s.OpenAIEmbeddingRequest, _json_body())
    assert isinstance(body, s.OpenAIEmbeddingRequest)
    if body.model not in upstream_names(embeddings=True):
        raise _no_model(body.model, embeddings=True)
    if body.dimensions is not None:
        raise OpenAIRequestError("dimensions is not supported: the upstream's vectors have their own size",
                                 param="dimensions")
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not all(texts):
        raise OpenAIRequestError("input: every text must be non-empty", param="input")
    try:
        vectors = await get_llm_client().embed_async(texts)
    except LLMStatusError as exc:
        if exc.status_code in (404, 405, 501):
            raise OpenAIRequestError(f"the upstream LLM server has no embeddings endpoint (it answered "
                                     f"{exc.status_code})", param="model", status=404,
                                     type="embeddings_not_supported") from None
        raise
    data = [{"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
            for i, v in enumerate(vectors)]
    # The client returns the vectors only: the count is an estimate, one token per word.
    tokens = sum(len(t.split()) for t in texts)
    return jsonify({"object": "list", "data": data, "model": body.model,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


# -- the upstream model --------------------------------------------------------------------------------

async def _upstream_chat(body: s.OpenAIChatRequest, messages: list[dict[str, Any]]) -> Response:
    client = get_llm_client()
    extra = {k: getattr(body, k) for k in _PASSED_ON if getattr(body, k) is not None}
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    options: dict[str, Any] = {
        "model": body.model, "tools": body.tools or None,
        # without tools, "none" and "auto" mean what no tool_choice means: not sent
        "tool_choice": None if not body.tools and body.tool_choice in ("none", "auto") else body.tool_choice,
        "response_format": body.response_format}
    max_tokens = body.max_tokens if body.max_tokens is not None else body.max_completion_tokens
    try:
        if body.stream:
            check_capacity(client)
            if include_usage:
                extra["stream_options"] = {"include_usage": True}
            stream = client.chat_stream(messages, body.temperature, max_tokens, extra_body=extra or None, **options)
            source = UpstreamChunks(client, stream, body.model, include_usage)
            return openai_response(iter(source), on_close=source.close)
        result = await client.chat_completion_async(messages, body.temperature, max_tokens,
                                                    extra_body=extra or None, **options)
    except ValueError as exc:  # the client's own checks of messages, tools, tool_choice, response_format
        raise OpenAIRequestError(str(exc), param=_param_of(str(exc))) from None
    message = result.message
    if result.reasoning_content:
        message["reasoning_content"] = result.reasoning_content
    response = _completion(body.model, message, result.finish_reason or "stop", result.usage)
    if result.cache:  # LLM_CACHE is on and the request was cacheable
        response.headers["X-Cache"] = result.cache  # miss | hit | coalesced
    return response


def _completion(model: str, message: dict[str, Any], finish_reason: str, usage: dict[str, int] | None) -> Response:
    counts = dict(usage or {})
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        counts.setdefault(key, 0)
    return jsonify({"id": "chatcmpl-" + uuid.uuid4().hex, "object": "chat.completion", "created": int(time.time()),
                    "model": model, "choices": [{"index": 0, "message": message, "logprobs": None,
                                                 "finish_reason": finish_reason}],
                    "usage": counts})


def _text_message(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


# -- flows and workflows --------------------------------------------------------------------------------

async def _flow_chat(model: Model, inputs: dict[str, Any], stream: bool, include_usage: bool) -> Response:
    flow = model.flow
    assert flow is not None
    problems = flow.tool_call.validate_inputs(inputs)
    if problems:
        raise OpenAIRequestError(f"invalid inputs for {model.id}: " + "; ".join(problems), param="messages")

    async def summary(context: FlowContext) -> dict[str, Any]:
        return (await flow.run(context)).model_dump()

    if stream:
        events = run_events(model.id, summary, inputs)
        return openai_response(run_chunks(events, model.id, include_usage, flow_answer))
    try:
        answer = await summary(FlowContext(**inputs))
    except ValueError as exc:  # as /api/flows: input the flow cannot work with
        raise OpenAIRequestError(f"{model.id} failed: {exc}", status=422, type="op_failed") from exc
    return _completion(model.id, _text_message(flow_answer(answer)), "stop", None)


async def _workflow_chat(model: Model, inputs: dict[str, Any], stream: bool, include_usage: bool) -> Response:
    runtime = get_workflow_runtime()
    try:
        problems = runtime.validate(model.schema, inputs).errors
        if problems:
            raise OpenAIRequestError(f"invalid inputs for {model.id}: " + "; ".join(problems), param="messages")
        task_id = runtime.run(model.schema, inputs)
    except WorkflowInputError as exc:
        raise OpenAIRequestError(f"{model.id}: {exc}", param="messages") from None
    except TaskCapacityError as exc:
        raise APIError(str(exc), status=503, type="overloaded") from None

    def cancel_unfinished() -> None:
        record = runtime.store.get(task_id)
        if record is not None and not record.terminated:
            runtime.cancel(task_id)  # the client went away, or the request ran out of time

    if stream:
        record = runtime.get(task_id)
        assert record is not None
        events = task_events(runtime.store, record)
        response = openai_response(run_chunks(events, model.id, include_usage, workflow_answer),
                                   on_close=cancel_unfinished)
        response.headers["X-Task-ID"] = task_id
        return response
    left = remaining()
    try:
        record = await runtime.wait_async(task_id, WORKFLOW_WAIT if left is None else max(0.0, left - 0.5))
    except asyncio.CancelledError:
        cancel_unfinished()
        raise
    if record is None or not record.terminated:
        cancel_unfinished()
        raise APIError(f"{model.id} did not finish before the request's deadline; its task was canceled",
                       status=504, type="deadline_exceeded")
    if record.status != "succeeded":
        messages = [m.get("message", "") for m in ((record.report or {}).get("messages") or {}).get("error", [])]
        detail = "; ".join(m for m in messages if m) or record.error or record.status
        status, kind = (409, "task_canceled") if record.status == "canceled" else (422, "workflow_failed")
        raise APIError(f"{model.id} {record.status} (task {task_id}): {detail}", status=status, type=kind)
    response = _completion(model.id, _text_message(answer_text(record.outputs or {})), "stop", None)
    response.headers["X-Task-ID"] = task_id
    return response


def _no_tools_for(model: Model, body: s.OpenAIChatRequest) -> None:
    if body.tools:
        raise OpenAIRequestError(f"{model.id} is a {model.kind}: it takes no tools", param="tools")
    kind = (body.response_format or {}).get("type")
    if kind not in (None, "text"):
        raise OpenAIRequestError(f"{model.id} is a {model.kind}: it answers as it does, without response_format",
                                 param="response_format")


# -- helpers ---------------------------------------------------------------------------------------------

def _json_body() -> object:
    if not request.is_json:
        raise OpenAIRequestError("send a JSON body with Content-Type: application/json", status=415,
                                 type="unsupported_media_type")
    return request.get_json()  # an unreadable body raises its own 400 (webapp.guards.jsonbody)


def _no_model(name: str, embeddings: bool = False) -> OpenAIRequestError:
    known = upstream_names(embeddings) if embeddings else [m.id for m in list_models()]
    shown = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
    return OpenAIRequestError(f"The model {name[:200]!r} does not exist; the models are: {shown} "
                              "(GET /v1/models)", param="model", status=404, type="model_not_found")


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":  # what the openai SDK asks for by default: little-endian float32
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


_FIELD = re.compile(r"^(?:invalid request: )?([A-Za-z_]+)")
_FIELDS = frozenset(s.OpenAIChatRequest.model_fields) | frozenset(s.OpenAIEmbeddingRequest.model_fields)


def _param_of(message: str) -> str | None:
    """The request field a validation message starts with (``messages[2].role: ...`` → ``messages``)."""
    match = _FIELD.match(message)
    return match.group(1) if match and match.group(1) in _FIELDS else None


# -- errors: OpenAI's shape for everything under /v1 -------------------------------------------------------

def _error(status: int, code: str, message: str, param: str | None = None,
           headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"error": {"message": message, "type": openai_type(status), "param": param, "code": code}})
    response.status_code = status
    if status in (429, 503) and "Retry-After" not in (headers or {}):
        headers = {**(headers or {}), "Retry-After": "1"}
    response.headers.update(headers or {})
    return response


@bp.errorhandler(APIError)
def _api_error(exc: APIError) -> Response:
    param = getattr(exc, "param", None) or (_param_of(exc.message) if exc.status == 400 else None)
    return _error(exc.status, exc.type, exc.message, param)


@bp.errorhandler(LLMError)
@bp.errorhandler(asyncio.TimeoutError)
def _llm_error(exc: Exception) -> Response:
    status, code, message = classify(exc)
    if code == "upstream_rejected":
        return _error(status, code, message, _param_of(message.removeprefix(UPSTREAM_REJECTED)))
    headers = {"Retry-After": str(retry_after(exc))} if status in (429, 503) else None
    return _error(status, code, message, None, headers)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    code = (exc.name or "error").lower().replace(" ", "_")
    allow = dict(exc.get_headers()).get("Allow") if exc.code == 405 else None
    return _error(exc.code or 500, code, exc.description or exc.name, None, {"Allow": allow} if allow else None)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    logger.exception("unhandled error in %s %s", request.method, request.path)
    return _error(500, "internal_error", "internal server error; see the server log")


@bp.after_app_request
def _openai_error_shape(response: Response) -> Response:
    """Errors under ``/v1`` answered outside its views (API keys, capacity, body size, an unknown path or
    method...) get OpenAI's shape too."""
    if (response.status_code < 400 or response.is_streamed or response.mimetype != "application/json"
            or not (request.path == "/v1" or request.path.startswith("/v1/"))):
        return response
    data = response.get_json(silent=True)
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict) or "param" in error:
        return response
    code = error.get("type") if isinstance(error.get("type"), str) else "error"
    shaped = {"error": {"message": str(error.get("message", "")), "type": openai_type(response.status_code),
                        "param": None, "code": code}}
    response.set_data(jsonify(shaped).get_data())
    if response.status_code in (429, 503) and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = "1"
    return response
