"""``ChatCompletion``: what callers use of a non-streamed chat completion, and how it is read
from the server's answer and kept in the response cache."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._streaming import first_choice
from ._tools import message_tool_calls
from .exceptions import LLMResponseError


@dataclass(frozen=True)
class ChatCompletion:
    """The parts of a chat completion callers use."""

    text: str
    model: str
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    #: With ``LLM_CACHE`` on and temperature 0: ``"miss"`` (this call reached the upstream),
    #: ``"hit"`` (a stored answer) or ``"coalesced"`` (an identical call in flight answered it); else None.
    cache: str | None = field(default=None, compare=False)
    #: The model's tool calls, in OpenAI's shape (``{"index", "id", "type", "function": {"name",
    #: "arguments"}}``); ``arguments`` is the model's text, not checked (see ``llm_client._tools``).
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    #: The model's reasoning, from servers that send ``message.reasoning_content``; else ``""``.
    reasoning_content: str = ""

    @property
    def message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation for the next call: role, content
        (null when the model only called tools), and its ``tool_calls`` when it made any."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or (None if self.tool_calls else "")}
        if self.tool_calls:
            message["tool_calls"] = [{"id": c["id"], "type": c["type"], "function": dict(c["function"])}
                                     for c in self.tool_calls]
        return message


def parse_completion(data: dict[str, Any], requested_model: str) -> ChatCompletion:
    """Read a ``/chat/completions`` answer.

    :raises LLMResponseError: when it is not a chat completion.
    """
    choice = first_choice(data)
    message = choice.get("message")
    finish_reason = choice.get("finish_reason")
    content = message.get("content") if isinstance(message, dict) else None
    # "content": null is an empty answer when the choice says why it ended (a refusal, tool
    # calls, max_tokens reached at once); without a finish_reason it is no answer at all.
    if not isinstance(content, str) and not (content is None and isinstance(finish_reason, str)):
        raise LLMResponseError("chat completion has no choices[0].message.content", body=str(data)[:500])
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    reasoning = message.get("reasoning_content") if isinstance(message, dict) else None
    return ChatCompletion(
        text=content or "",
        model=str(data.get("model") or requested_model),
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        usage={k: v for k, v in usage.items() if isinstance(v, int)},
        tool_calls=message_tool_calls(message) if isinstance(message, dict) else [],
        reasoning_content=reasoning if isinstance(reasoning, str) else "",
    )


def cacheable(completion: ChatCompletion) -> dict[str, Any]:
    """What the response cache stores of a completion (JSON-ready)."""
    return {"text": completion.text, "model": completion.model, "finish_reason": completion.finish_reason,
            "usage": dict(completion.usage), "tool_calls": copy.deepcopy(completion.tool_calls),
            "reasoning_content": completion.reasoning_content}


def from_cache(fields: Mapping[str, Any], how: str) -> ChatCompletion:
    """A completion from stored ``fields`` (entries stored before tool calls existed lack them);
    mutable parts are copies, so callers sharing one stored answer do not share its objects."""
    return ChatCompletion(
        text=fields["text"], model=fields["model"], finish_reason=fields.get("finish_reason"),
        usage=dict(fields.get("usage") or {}), cache=how,
        tool_calls=copy.deepcopy(list(fields.get("tool_calls") or [])),
        reasoning_content=fields.get("reasoning_content") or "",
    )
