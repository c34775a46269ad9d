"""Pydantic models of the JSON API's request and response bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import APIError


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    """``POST /api/chat``: one ``message``, or a whole conversation in ``messages``."""

    model_config = ConfigDict(extra="forbid")

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
    response: str
    model: str
    usage: dict[str, int] = {}


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
