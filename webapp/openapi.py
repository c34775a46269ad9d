"""``/api/openapi.json``: the OpenAPI 3.1 description of the JSON API.

:data:`OPERATIONS` is the one table of documented routes: method, path, and
the pydantic models of the request body, the query and each response. The
spec is built from it (each model's ``model_json_schema``), the routes validate
their bodies with the same models (:func:`webapp.schemas.parse_body`), and a
test checks the table against the app's URL map both ways.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from flask import Flask
from pydantic import BaseModel

from .guards import auth
from . import schemas as s

__all__ = ["OPERATIONS", "Operation", "build_spec", "flask_path", "openapi_path"]

#: Marks a response whose body is an event stream (``text/event-stream``) rather than a model.
SSE = "text/event-stream"
#: What each error status means, for the response descriptions.
ERROR_STATUSES: Mapping[int, str] = {
    400: "bad input; the message names the field",
    401: "no valid API key (FLOWBRIDGE_API_KEYS is set)",
    404: "unknown op, flow, function, task or model",
    409: "the task failed or was canceled",
    413: "the request body is too large",
    414: "the URL is longer than the server takes (gunicorn's limit_request_line, 4094 bytes by default)",
    415: "the body is not JSON",
    422: "the op, function, flow or workflow could not work with its input",
    429: "the LLM server limits our rate; Retry-After passes on how long it asked us to wait",
    502: "the LLM server answered with an error",
    503: "every LLM slot (or task slot) is busy, or the LLM server does not answer; see Retry-After",
    504: "the LLM call or the request deadline ran out",
}
#: Errors any request with a JSON body may get.
_BODY_ERRORS = (400, 413, 415)
#: Errors of a request that calls the LLM server.
_LLM_ERRORS = (429, 502, 503, 504)


@dataclass(frozen=True)
class Operation:
    """One documented route.

    :param responses: status → response model, :data:`SSE`, or a tuple of both
        (JSON, or an event stream when asked for).
    :param errors: error statuses, each answered with :class:`webapp.schemas.Error`.
    """

    method: str
    path: str  # OpenAPI template, e.g. /api/ops/{name}
    summary: str
    tag: str
    responses: Mapping[int, Any]
    errors: tuple[int, ...] = ()
    request: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    description: str = ""
    #: Open routes (health checks) need no API key even when keys are configured.
    public: bool = False
    #: Path parameter → where its example values come from (see :func:`_examples`).
    examples: Mapping[str, str] = field(default_factory=dict)
    #: The body of its errors, and of each frame of its event stream (``/v1`` has OpenAI's).
    error_model: type[BaseModel] = s.Error
    stream_model: type[BaseModel] = s.StreamEvent


OPERATIONS: tuple[Operation, ...] = (
    Operation("POST", "/api/chat", "Answer one message or a conversation", "chat",
              {200: (s.ChatResponse, SSE)}, (*_BODY_ERRORS, *_LLM_ERRORS), request=s.ChatRequest,
              description='With `"stream": true` (or `Accept: text/event-stream`) the answer is an event stream: '
                          "`start`, one `content` per text delta, then `done` (or `error`)."),
    Operation("GET", "/api/ops", "Registered ops with their OpenAI tool schema", "ops", {200: s.OpsList}),
    Operation("POST", "/api/ops/{name}", "Run an op", "ops", {200: (s.OpResult, SSE)},
              (*_BODY_ERRORS, 404, 422, *_LLM_ERRORS), request=s.OpRunRequest, examples={"name": "ops"},
              description="With `Accept: text/event-stream` an event stream ending in `done` with the result."),
    Operation("GET", "/api/flows", "The flows of FLOWBRIDGE_FLOWS", "ops", {200: s.FlowsList}),
    Operation("POST", "/api/flows", "Run a flow expression once", "ops", {200: s.FlowResult},
              (*_BODY_ERRORS, 422, *_LLM_ERRORS), request=s.AdhocFlowRequest),
    Operation("POST", "/api/flows/{name}", "Run a configured flow", "ops", {200: (s.FlowResult, SSE)},
              (*_BODY_ERRORS, 404, 422, *_LLM_ERRORS), request=s.FlowRunRequest, examples={"name": "flows"},
              description="A `stream: true` flow answers an event stream unless `Accept` is only "
                          "application/json; the inputs may also be posted at top level."),
    Operation("POST", "/api/task/run", "Start a FlowGram workflow", "tasks", {200: s.TaskRunResponse},
              (*_BODY_ERRORS, 503, 504), request=s.TaskRunRequest, query=s.TaskRunQuery,
              description="`?wait=S` blocks up to S seconds and adds the status and outputs."),
    Operation("GET", "/api/task/report", "FlowGram's report of a task", "tasks", {200: s.TaskReport},
              (400, 404), query=s.TaskQuery),
    Operation("GET", "/api/task/result", "A task's outputs", "tasks", {200: s.TaskOutputs, 202: s.TaskPending},
              (400, 404, 409, 504), query=s.TaskResultQuery,
              description="200 once succeeded, 202 while running (`?wait=S` long-polls), 409 if failed or canceled."),
    Operation("PUT", "/api/task/cancel", "Cancel a task", "tasks", {200: s.TaskCancelResponse},
              _BODY_ERRORS, request=s.TaskCancelRequest,
              description="The task stops at its next node or loop iteration."),
    Operation("POST", "/api/task/validate", "Check a workflow and its inputs without running it", "tasks",
              {200: s.TaskValidateResponse}, _BODY_ERRORS, request=s.TaskValidateRequest),
    Operation("GET", "/api/tasks", "Recent tasks, newest first", "tasks", {200: s.TasksList}, (400,),
              query=s.TasksQuery),
    Operation("GET", "/api/task/events", "Event stream of a task", "tasks", {200: SSE}, (400, 404),
              query=s.TaskQuery,
              description="`start`, a `progress` per node status change, then `done` with the outputs or `error`."),
    Operation("GET", "/functions", "The manifest of invokable functions", "functions", {200: s.FunctionsList},
              description="Browsers preferring HTML get the Functions page instead."),
    Operation("GET", "/functions/{name}", "One function's manifest entry", "functions", {200: s.FunctionInfo},
              (404,), examples={"name": "functions"}),
    Operation("POST", "/invoke/{name}", "Run a function", "functions", {200: (s.InvokeResult, SSE)},
              (*_BODY_ERRORS, 404, 422, *_LLM_ERRORS), request=s.InvokeRequest, examples={"name": "functions"},
              description="A streaming function answers an event stream. Forms (multipart/form-data) are "
                          "accepted too: one field or upload per input."),
    Operation("POST", "/v1/chat/completions", "OpenAI's chat completion: the upstream model, a flow or a workflow",
              "openai", {200: (s.OpenAIChatCompletion, SSE)}, (*_BODY_ERRORS, 404, 409, 422, *_LLM_ERRORS),
              request=s.OpenAIChatRequest, error_model=s.OpenAIError, stream_model=s.OpenAIChatChunk,
              description="For OpenAI clients (base URL `/v1`). `model` is one of `GET /v1/models`: the upstream's, "
                          "`flow/<name>` or `workflow/<name>`. `stream: true` answers `chat.completion.chunk` "
                          "frames ending in `data: [DONE]`; a flow's or workflow's progress comes as chunks with "
                          "`reasoning_content` and a `progress` field. Errors are OpenAI's shape."),
    Operation("GET", "/v1/models", "OpenAI's model list, with the input each model takes", "openai",
              {200: s.OpenAIModelList}, error_model=s.OpenAIError),
    Operation("GET", "/v1/models/{model}", "One model of the list (a flow's or workflow's id holds a slash)",
              "openai", {200: s.OpenAIModel}, (404,), error_model=s.OpenAIError, examples={"model": "models"}),
    Operation("POST", "/v1/embeddings", "OpenAI's embeddings, by the upstream", "openai", {200: s.OpenAIEmbeddingList},
              (*_BODY_ERRORS, 404, *_LLM_ERRORS), request=s.OpenAIEmbeddingRequest, error_model=s.OpenAIError),
    Operation("GET", "/healthz", "The process is alive", "health", {200: s.Health}, public=True),
    Operation("GET", "/readyz", "Each configured dependency answers", "health", {200: s.Ready}, (503,),
              public=True),
)


def openapi_path(rule: str) -> str:
    """``/api/ops/<name>`` → ``/api/ops/{name}`` (converters dropped)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def flask_path(path: str) -> str:
    """``/api/ops/{name}`` → ``/api/ops/<name>``."""
    return re.sub(r"\{([^{}]+)\}", r"<\1>", path)


class _Components:
    """Collects model schemas under ``components.schemas``."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, model: type[BaseModel], mode: Literal["validation", "serialization"]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
        for name, sub in schema.pop("$defs", {}).items():
            self.schemas.setdefault(name, sub)
        name = model.__name__
        self.schemas.setdefault(name, schema)
        return {"$ref": f"#/components/schemas/{name}"}


def _examples(app: Flask) -> dict[str, list[str]]:
    """Names that exist, offered as examples of the path parameters."""
    from ops import C

    from .functions import get_registry

    with app.app_context():
        return {"ops": sorted(cls().short_name for cls in C.ops.values()), "flows": sorted(C.flows),
                "functions": [spec.name for spec in get_registry()],
                "models": [app.extensions["flowbridge"]["settings"].model]}


def _content(item: Any, components: _Components, stream_model: type[BaseModel] = s.StreamEvent) -> dict[str, Any]:
    items = item if isinstance(item, tuple) else (item,)
    content: dict[str, Any] = {}
    for one in items:
        if one == SSE:
            # Each frame (as parsed: {"event", "data", ...}) carries one JSON StreamEvent in ``data``.
            event = components.ref(stream_model, "serialization")
            content[SSE] = {"schema": {
                "type": "object", "required": ["data"], "description": "one Server-Sent Events frame",
                "properties": {"data": {"type": "string", "contentMediaType": "application/json",
                                        "contentSchema": event}}}}
        else:
            content["application/json"] = {"schema": components.ref(one, "serialization")}
    return content


def _parameters(op: Operation, examples: Mapping[str, list[str]]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in re.findall(r"\{([^{}]+)\}", op.path):
        schema: dict[str, Any] = {"type": "string", "minLength": 1}
        param: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": schema}
        source = op.examples.get(name)
        if source and examples.get(source):
            param["examples"] = {value: {"value": value} for value in examples[source][:5]}
        params.append(param)
    if op.query is not None:
        query = op.query.model_json_schema()
        required = set(query.get("required", ()))
        for name, prop in query["properties"].items():
            prop = {k: v for k, v in prop.items() if k not in ("title", "description")}
            # A query value is never JSON null: document the non-null branch of an optional field.
            branches = [b for b in prop.pop("anyOf", ()) if b.get("type") != "null"]
            if branches:
                prop = {**(branches[0] if len(branches) == 1 else {"anyOf": branches}), **prop}
                if prop.get("default", ...) is None:
                    del prop["default"]
            param = {"name": name, "in": "query", "required": name in required, "schema": prop}
            if "description" in query["properties"][name]:
                param["description"] = query["properties"][name]["description"]
            params.append(param)
    return params


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``'s JSON API."""
    components = _Components()
    examples = _examples(app)
    secured = auth.enabled(app)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        responses: dict[str, Any] = {}
        for status, item in sorted(op.responses.items()):
            responses[str(status)] = {"description": "OK" if status == 200 else "accepted, still running",
                                      "content": _content(item, components, op.stream_model)}
        # any request may have a URL too long to read (the worker answers it before routing, in JSON)
        errors = set(op.errors) | {414} | ({401} if secured and not op.public else set())
        error = {"application/json": {"schema": components.ref(op.error_model, "serialization")}}
        for status in sorted(errors):
            responses[str(status)] = {"description": ERROR_STATUSES[status], "content": error}
            if status in (429, 503):
                responses[str(status)]["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
        operation: dict[str, Any] = {
            "operationId": f"{op.method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', op.path).strip('_')}",
            "summary": op.summary,
            "tags": [op.tag],
            "responses": responses,
        }
        if op.description:
            operation["description"] = op.description
        params = _parameters(op, examples)
        if params:
            operation["parameters"] = params
        if op.request is not None:
            operation["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": components.ref(op.request, "validation")}}}
        if op.public and secured:
            operation["security"] = []
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "flowbridge", "version": str(app.config.get("VERSION", "0.1.0")),
                 "description": 'Errors are always `{"error": {"type", "message"}}`. Event streams are '
                                'Server-Sent Events: `data: {"type": "start"|"progress"|"content"|"done"|"error", '
                                '"data": ...}`. The OpenAI API under `/v1` keeps to OpenAI\'s shapes instead: '
                                'errors `{"error": {"message", "type", "param", "code"}}`, streams of '
                                '`chat.completion.chunk` ending in `data: [DONE]`.'},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "one of FLOWBRIDGE_API_KEYS"}},
        },
        "tags": [{"name": t} for t in ("chat", "openai", "ops", "tasks", "functions", "health")],
    }
    if secured:
        spec["security"] = [{"bearer": []}]
    return spec
