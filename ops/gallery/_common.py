"""Helpers the gallery ops share: argument checks, the text input, LLM calls with usage."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..schema import Message, Role

if TYPE_CHECKING:
    from ..tool_op import BaseAsyncToolOp

__all__ = ["InputError", "as_messages", "check_max_tokens", "check_positive_int", "check_temperature", "complete",
           "input_text", "record_usage"]


class InputError(ValueError, AssertionError):
    """Input an op cannot work with: a ``ValueError`` to flowbridge (the API's 422), and the
    ``AssertionError`` flowllm's ops raise for it (from their ``assert`` statements), so flowllm code that
    catches that still does."""


def as_messages(op_name: str, messages: Any) -> list[Message]:
    """``messages`` (``Message`` objects or ``{role, content, ...}`` dicts) as ``Message`` objects.

    :raises InputError: naming the first item that is not a message.
    """
    if not isinstance(messages, list):
        raise InputError(f"{op_name}: 'messages' must be a list of {{role, content}}, got {type(messages).__name__}")
    roles = [role.value for role in Role]
    parsed = []
    for i, message in enumerate(messages):
        if isinstance(message, Message):
            parsed.append(message)
            continue
        if not isinstance(message, Mapping):
            raise InputError(f"{op_name}: messages[{i}] must be an object with 'role' and 'content' "
                             f"(or a Message), got {type(message).__name__}")
        if message.get("role") not in roles:
            raise InputError(f"{op_name}: messages[{i}].role must be one of {', '.join(roles)}, "
                             f"got {message.get('role')!r}")
        if not isinstance(message.get("content"), (str, list)):
            raise InputError(f"{op_name}: messages[{i}].content must be a string (or a list of content parts)")
        try:
            parsed.append(Message(**message))
        except ValueError as exc:
            raise InputError(f"{op_name}: messages[{i}] is not a valid message: {exc}") from None
    return parsed


def check_temperature(value: Any, name: str = "temperature") -> float:
    """``value`` when it is a number from 0 to 2 (what OpenAI-compatible servers accept).

    :raises ValueError: naming the parameter and the value.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 2:
        raise ValueError(f"{name} must be a number from 0 to 2, got {value!r}")
    return float(value)


def check_positive_int(value: Any, name: str) -> int:
    """``value`` when it is an integer > 0 (booleans are not integers here).

    :raises ValueError: naming the parameter and the value.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer > 0, got {value!r}")
    return value


def check_max_tokens(value: Any) -> int:
    return check_positive_int(value, "max_tokens")


def input_text(op: BaseAsyncToolOp, key: str = "text") -> str:
    """The op's ``text`` input, else the answer of the op that ran before it on this context.

    A blank input counts as absent. A previous answer that is JSON (a dict or
    list, e.g. from ``ExtractJsonOp``) is used as its JSON text; a failed run's
    answer (the error) is never used.

    :raises ValueError: ``"<Class> needs 'text' or a previous answer"`` when there is neither,
        or when the input is not a string.
    """
    value = op.input_dict.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{op.name}: {key!r} must be a string, got {type(value).__name__}")
    if value is not None and value.strip():
        return value
    response = op.context.response
    answer: Any = response.answer if response.success else ""
    if isinstance(answer, (dict, list)):
        answer = json.dumps(answer, ensure_ascii=False) if answer else ""
    if isinstance(answer, str) and answer.strip():
        return answer
    raise ValueError(f"{type(op).__name__} needs {key!r} or a previous answer")


def record_usage(metadata: dict[str, Any], model: str, usage: Mapping[str, int]) -> None:
    """Note the model and add ``usage`` to ``metadata["usage"]``: a flow's total over its LLM calls."""
    metadata["model"] = model
    total = dict(metadata.get("usage") or {})
    for key, count in usage.items():
        total[key] = total.get(key, 0) + count
    metadata["usage"] = total


async def complete(
    op: BaseAsyncToolOp, messages: Sequence[Mapping[str, str]], temperature: float, max_tokens: int
) -> str:
    """Ask the op's LLM; returns the answer stripped and records model and usage on the response."""
    completion = await op.llm.chat_completion_async(list(messages), temperature=temperature, max_tokens=max_tokens)
    record_usage(op.context.response.metadata, completion.model, completion.usage)
    return completion.text.strip()
