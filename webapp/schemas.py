"""Pydantic models of the JSON API's request and response bodies.

The routes validate request bodies with these models (:func:`parse_body`) and
:mod:`webapp.openapi` builds ``/api/openapi.json`` from the same models, so the
documented shapes and the behaviour cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, model_validator

from .errors import APIError


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    """``POST /api/chat``: one ``message``, or a whole conversation in ``messages``."""

    # The "exactly one of" rule of the validator below, stated in the JSON schema too.
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"oneOf": [{"required": ["message"]}, {"required": ["messages"]}]}
    )

    message: str | None = Field(None, min_length=1)
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    system_prompt: str | None = None
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(256, ge=1, le=32768)
    stream: bool = False

    @model_validator(mode="after")
    def _one_of_message_or_messages(self) -> ChatRequest:
        if (self.message is None) == (self.messages is None):
            raise ValueError("give exactly one of 'message' or 'messages'")
        return self

    def conversation(self) -> list[dict[str, str]]:
        """The messages to send, with the system prompt first when given."""
        if self.messages is not None:
            messages = [m.model_dump() for m in self.messages]
        else:
            messages = [{"role": "user", "content": self.message or ""}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return messages


class ChatResponse(BaseModel):
    """``POST /api/chat``: the answer, the model that wrote it, its token counts and why it ended
    (``finish_reason``: ``"stop"``, or ``"length"`` when cut at ``max_tokens``; null if the upstream did not say)."""

    response: str
    model: str
    usage: dict[str, int] = {}
    finish_reason: str | None = None


class StreamEvent(BaseModel):
    """The JSON ``data`` of one event-stream frame: ``{"type", "data"}``; ``error`` adds ``error_code``."""

    model_config = ConfigDict(extra="allow")

    type: Literal["start", "progress", "content", "done", "error"]
    data: Any = None
    error_code: str | None = None


# -- errors ---------------------------------------------------------------------------------

class ErrorDetail(BaseModel):
    type: str = Field(description="a short machine-readable name, e.g. invalid_request, not_found, overloaded")
    message: str = Field(description="what went wrong; a 400 names the bad field")


class Error(BaseModel):
    """Every error: ``{"error": {"type", "message"}}``."""

    error: ErrorDetail


# -- ops and flows --------------------------------------------------------------------------

class OpRunRequest(BaseModel):
    """``POST /api/ops/<name>``: the op's inputs, checked against its tool schema."""

    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any]


class FlowRunRequest(BaseModel):
    """``POST /api/flows/<name>``: the flow's inputs (flowllm's clients may also post them at top level)."""

    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any] = {}


class AdhocFlowRequest(BaseModel):
    """``POST /api/flows``: a flow expression run once."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"flow_content": "ChatOp()", "inputs": {"query": "hi"}}]}
    )

    flow_content: str = Field(min_length=1,
                              description="e.g. ChatOp() >> SummarizeOp(); registered ops, >> and | only")
    inputs: dict[str, Any] = {}


class OpInfo(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str
    class_: str = Field(alias="class")
    description: str
    tool: dict[str, Any] | None = Field(description="the OpenAI tool schema, for tool ops")


class OpsList(BaseModel):
    ops: list[OpInfo]


class OpResult(BaseModel):
    answer: str | dict[str, Any] | list[Any]
    outputs: dict[str, Any]
    success: bool
    metadata: dict[str, Any]


class FlowInfo(BaseModel):
    name: str
    description: str
    stream: bool
    flow_content: str
    tool: dict[str, Any]


class FlowsList(BaseModel):
    flows: list[FlowInfo]


class FlowResult(BaseModel):
    answer: str | dict[str, Any] | list[Any]
    success: bool
    metadata: dict[str, Any]


# -- tasks (FlowGram workflows) -------------------------------------------------------------

TaskStatus = Literal["pending", "processing", "succeeded", "failed", "canceled"]


class TaskRunRequest(BaseModel):
    """``POST /api/task/run`` and ``POST /api/task/validate``: a FlowGram schema and its inputs."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    # ``schema`` would shadow BaseModel.schema(), hence the alias.
    workflow: str | dict[str, Any] = Field(alias="schema", description="the FlowGram workflow JSON (string or object)")
    inputs: dict[str, Any] | None = None


class TaskValidateRequest(TaskRunRequest):
    pass


class TaskRunResponse(BaseModel):
    """``{taskID}``; with ``?wait=`` also the status and (once terminated) the outputs."""

    taskID: str  # noqa: N815 - FlowGram's name
    status: TaskStatus | None = None
    outputs: dict[str, Any] | None = None


class TaskCancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    taskID: str = Field(min_length=1)  # noqa: N815


class TaskCancelResponse(BaseModel):
    success: bool


class TaskValidateResponse(BaseModel):
    valid: bool
    errors: list[str] = Field([], description="present when not valid")
    warnings: list[str] = Field([], description="present when there are some: the schema was normalised to "
                                "FlowGram's format, a node type has no executor (a run would fail)")


class TaskPending(BaseModel):
    """``GET /api/task/result`` while the task runs (HTTP 202)."""

    taskID: str  # noqa: N815
    status: TaskStatus


class TaskReport(RootModel[dict[str, Any]]):
    """FlowGram's ``IReport``: ``workflowStatus``, ``reports`` (node snapshots), ``messages``..."""


class TaskOutputs(RootModel[dict[str, Any]]):
    """A succeeded task's outputs."""


class TaskSummary(BaseModel):
    taskID: str  # noqa: N815
    status: TaskStatus
    title: str
    createdAt: float  # noqa: N815
    startedAt: float | None  # noqa: N815
    finishedAt: float | None  # noqa: N815
    error: str | None


class TasksList(BaseModel):
    tasks: list[TaskSummary]
    total: int
    limit: int
    offset: int


class TaskQuery(BaseModel):
    """Query of ``/api/task/report``, ``/api/task/result`` and ``/api/task/events``."""

    taskID: str = Field(min_length=1)  # noqa: N815


class WaitQuery(BaseModel):
    wait: float = Field(0, ge=0, le=60, description="block up to this many seconds for the task to end")


class TaskResultQuery(TaskQuery, WaitQuery):
    pass


class TaskRunQuery(WaitQuery):
    pass


class TasksQuery(BaseModel):
    status: TaskStatus | None = None
    limit: int = Field(50, ge=1, le=500)
    offset: int = Field(0, ge=0)


# -- functions ------------------------------------------------------------------------------

class FunctionParameter(BaseModel):
    """A parameter of a function, with its JSON-schema constraints (``minimum``, ``items``...) alongside."""

    model_config = ConfigDict(extra="allow")

    name: str
    type: str
    required: bool
    description: str


class FunctionInfo(BaseModel):
    name: str
    description: str
    parameters: list[FunctionParameter]
    streaming: bool
    returns: dict[str, Any]


class FunctionsList(BaseModel):
    functions: list[FunctionInfo]


class InvokeRequest(BaseModel):
    """``POST /invoke/<name>``: the function's inputs, checked against its manifest."""

    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any] = {}


class InvokeResult(BaseModel):
    result: Any


# -- the OpenAI-compatible API (/v1) --------------------------------------------------------

class OpenAIMessage(BaseModel):
    """One message of an OpenAI conversation (other OpenAI fields pass through to the upstream)."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class OpenAIStreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


class OpenAIChatRequest(BaseModel):
    """``POST /v1/chat/completions``: OpenAI's request. ``model`` is a model of ``GET /v1/models``; a flow or
    workflow model ignores the sampling fields. ``n`` may only be 1; other OpenAI fields are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1)
    messages: list[OpenAIMessage] = Field(min_length=1)
    stream: bool | None = None
    stream_options: OpenAIStreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(None, ge=1, le=1_000_000)
    n: int | None = Field(None, description="only 1 (one choice per request)")
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_choice(cls, data: Any) -> Any:
        n = data.get("n") if isinstance(data, dict) else None
        if n is not None and (type(n) is not int or n != 1):
            raise ValueError(f"n={n!r}: this server answers one choice per request; send n=1 or leave it out")
        return data


class OpenAIChoice(BaseModel):
    index: int
    message: dict[str, Any]
    finish_reason: str | None
    logprobs: None = None


class OpenAIChatCompletion(BaseModel):
    """``POST /v1/chat/completions`` not streamed: ``{"id", "object": "chat.completion", "choices", "usage"}``.
    Streamed, ``chat.completion.chunk`` objects follow one per ``data:`` line, then ``data: [DONE]``."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[OpenAIChoice]
    usage: dict[str, int]


class OpenAIChatChunk(BaseModel):
    """One frame of a streamed completion (the last frame is ``data: [DONE]``); ``progress``: a flow's or
    workflow's progress event, whose text is in the delta's ``reasoning_content``."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: dict[str, int] | None = None


class OpenAIModel(BaseModel):
    """A model: the upstream's, ``flow/<name>`` or ``workflow/<name>``; ``input`` says what a chat feeds it."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    description: str = ""
    input: str = ""


class OpenAIModelList(BaseModel):
    object: Literal["list"]
    data: list[OpenAIModel]


class OpenAIEmbeddingRequest(BaseModel):
    """``POST /v1/embeddings``: text (a string or a list of strings) to embed with the upstream."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class OpenAIEmbeddingList(BaseModel):
    object: Literal["list"]
    data: list[dict[str, Any]]
    model: str
    usage: dict[str, int]


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="OpenAI's error type, e.g. invalid_request_error, rate_limit_error, server_error")
    param: str | None = Field(description="the request field at fault, when one is")
    code: str | None = Field(description="flowbridge's error type, e.g. model_not_found, overloaded")


class OpenAIError(BaseModel):
    """Every error of ``/v1``: OpenAI's ``{"error": {"message", "type", "param", "code"}}``."""

    error: OpenAIErrorDetail


# -- health ---------------------------------------------------------------------------------

class Health(BaseModel):
    status: Literal["ok"]
    pid: int


class ReadyCheck(BaseModel):
    """One dependency of ``/readyz`` (``model_server``, ``llm_cache``, ``database``, ``broker``...)."""

    ok: bool
    required: bool = Field(description="when down, /readyz answers 503")
    latency_ms: float
    error: str | None = Field(None, description="why it is down")


class Ready(BaseModel):
    status: Literal["ready", "degraded"] = Field(description="degraded: an optional dependency is down")
    model: str
    base_url: str
    checks: dict[str, ReadyCheck]


def parse_body(model: type[BaseModel], data: object) -> BaseModel:
    """Validate a JSON body against ``model``; a 400 naming the field when it does not fit."""
    if not isinstance(data, dict):
        raise APIError("the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "body"
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if err["loc"] else message)
        raise APIError("invalid request: " + "; ".join(problems)) from None
