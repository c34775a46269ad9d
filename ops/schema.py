"""Conversation and stream schemas, as flowllm 0.2 defines them: ``Role``, ``Message``,
``ChunkEnum`` and ``FlowStreamChunk``.

``Message`` is one chat message in OpenAI's shape (``simple_dump()`` is what a
chat completion request carries); an assistant message holds the model's
``tool_calls`` as :class:`~ops.tool_call.ToolCall` objects, a tool message the
``tool_call_id`` it answers. ``Message(**openai_message)`` reads a message
dict, including its ``tool_calls``.

``FlowStreamChunk`` is one piece of a streamed run. Its ``chunk_type`` is a
:class:`ChunkEnum`: flowllm's six kinds (think, answer, tool, usage, error,
done) and the three event names flowbridge's SSE streams also use (start,
content, progress). :attr:`FlowStreamChunk.event_type` says which SSE event a
chunk becomes.

Differences from flowllm, on purpose: an assistant message whose ``content``
is ``null`` (OpenAI sends that with tool calls) reads as ``""`` instead of
failing validation; a chunk's default type is ``content`` (flowbridge's event
name for answer text) rather than ``answer`` — both become the same SSE event.
"""

from __future__ import annotations

import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .tool_call import ToolCall

__all__ = ["ChunkEnum", "ContentBlock", "FlowStreamChunk", "Message", "Role", "Trajectory"]


class Role(str, Enum):
    """Who wrote a message."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class ChunkEnum(str, Enum):
    """The kind of a stream chunk: flowllm's six, and flowbridge's SSE event names."""

    THINK = "think"
    ANSWER = "answer"
    TOOL = "tool"
    USAGE = "usage"
    ERROR = "error"
    DONE = "done"
    # flowbridge's own event names (SSE ``start`` / ``content`` / ``progress``)
    START = "start"
    CONTENT = "content"
    PROGRESS = "progress"


#: The SSE event each chunk type becomes; think and usage chunks are not events of their own.
_EVENT_OF: dict[ChunkEnum, str | None] = {
    ChunkEnum.START: "start",
    ChunkEnum.CONTENT: "content",
    ChunkEnum.ANSWER: "content",
    ChunkEnum.PROGRESS: "progress",
    ChunkEnum.TOOL: "progress",
    ChunkEnum.ERROR: "error",
    ChunkEnum.DONE: "done",
    ChunkEnum.THINK: None,
    ChunkEnum.USAGE: None,
}


class FlowStreamChunk(BaseModel):
    """One piece of a streamed run (flowllm's fields and defaults, except the default type)."""

    flow_id: str = ""
    chunk_type: ChunkEnum = ChunkEnum.CONTENT
    chunk: str | dict | list = ""
    done: bool = False
    metadata: dict = Field(default_factory=dict)

    @property
    def event_type(self) -> str | None:
        """The SSE event this chunk is sent as: ``answer`` → ``content``, ``tool`` → ``progress``;
        ``None`` for ``think`` and ``usage`` (the model's reasoning and token counts, not output)."""
        return _EVENT_OF[self.chunk_type]


class ContentBlock(BaseModel):
    """One part of a multi-part message, e.g. ``{"type": "image_url", "image_url": {"url": ...}}``.

    The value under the key named by ``type`` is kept as ``content``; other keys are kept as extras.
    """

    model_config = ConfigDict(extra="allow")

    type: str = ""
    content: str | dict | list = ""

    @model_validator(mode="before")
    @classmethod
    def _content_from_type_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("type"), str) and data["type"] in data:
            key = data["type"]
            data = {**data, "content": data[key]}
            if key not in ("type", "content"):
                del data[key]
        return data

    def simple_dump(self) -> dict[str, Any]:
        """The OpenAI form: ``{"type": t, t: content, **extras}``."""
        return {"type": self.type, self.type: self.content, **(self.model_extra or {})}

    @property
    def text(self) -> str:
        """The block's text when it is a text block, else ``""``."""
        return self.content if self.type == "text" and isinstance(self.content, str) else ""


def _now() -> str:
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")


class Message(BaseModel):
    """A chat message: role, content (text or blocks), reasoning, tool calls or the call it answers."""

    name: str | None = None
    role: Role = Role.USER
    content: str | list[ContentBlock] = ""
    reasoning_content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str = ""
    time_created: str = Field(default_factory=_now)
    metadata: dict = Field(default_factory=dict)

    @field_validator("content", "reasoning_content", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("tool_calls", mode="before")
    @classmethod
    def _null_is_no_calls(cls, value: Any) -> Any:
        return [] if value is None else value

    def dump_content(self) -> str | list[dict[str, Any]]:
        """The content as OpenAI expects it: the text, or the blocks' dumps."""
        if isinstance(self.content, str):
            return self.content
        return [block.simple_dump() for block in self.content]

    @property
    def text(self) -> str:
        """The message's text: the content, or its text blocks joined."""
        if isinstance(self.content, str):
            return self.content
        return "".join(block.text for block in self.content)

    def simple_dump(self, add_reasoning: bool = True) -> dict[str, Any]:
        """The OpenAI message dict: role and content, plus reasoning, tool calls and
        ``tool_call_id`` when present (reasoning always, unless ``add_reasoning`` is False)."""
        dump: dict[str, Any] = {"role": self.role.value, "content": self.dump_content()}
        if add_reasoning:
            dump["reasoning_content"] = self.reasoning_content
        if self.tool_calls:
            dump["tool_calls"] = [call.simple_output_dump() for call in self.tool_calls]
        if self.tool_call_id:
            dump["tool_call_id"] = self.tool_call_id
        return dump


class Trajectory(BaseModel):
    """A conversation with a score, e.g. one run of an agent."""

    task_id: str = ""
    messages: list[Message] = Field(default_factory=list)
    score: float = 0.0
    metadata: dict = Field(default_factory=dict)
