"""Helpers for LLM text, as flowllm 0.2 offers them: ``extract_content``, ``parse_message_by_keys``,
``format_messages``, ``merge_messages_content`` and ``token_count``.

``token_count`` is an estimate, not a tokenizer: it counts characters and
divides by four (rounded up), which is close to BPE tokenizers on English
text and is what flowllm's default ("base") counter does. It counts each
message's text (text blocks of a multi-part message; images and other blocks
count nothing) and reasoning, and each tool's name, description and
arguments. Use it to keep prompts within a budget, not to bill.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .schema import Message, Role
from .tool_call import ToolCall

__all__ = ["extract_content", "format_messages", "merge_messages_content", "parse_message_by_keys", "token_count"]


def _as_message(message: Message | Mapping[str, Any]) -> Message:
    if isinstance(message, Message):
        return message
    if isinstance(message, Mapping):
        return Message(**message)
    raise TypeError(f"expected a Message or a message dict, got {type(message).__name__}")


def extract_content(text: str, language_tag: str = "json", greedy: bool = False) -> Any:
    """The body of the first fenced block tagged ``language_tag`` (```` ```json ... ``` ````).

    Spaces between the backticks and the tag are allowed. Without such a
    block the whole text is used. With the tag ``json`` the body is parsed:
    the JSON value, or ``None`` when it is not JSON. Other tags give the body
    stripped of surrounding whitespace (the text itself when there is no block).

    :param greedy: end at the last closing fence instead of the first (for a
        block that itself contains fences).
    """
    body = ".*" if greedy else ".*?"
    found = re.search(rf"```\s*{re.escape(language_tag)}\s*({body})\s*```", text, re.DOTALL)
    content = found.group(1).strip() if found else text
    if language_tag != "json":
        return content
    try:
        return json.loads(content)
    except (json.JSONDecodeError, TypeError):
        return None


def parse_message_by_keys(content: str, keys: Sequence[str]) -> dict[str, str]:
    """Cut ``content`` at each key in turn: ``{key: the text after it, up to the next key}``.

    ``"prefixkey1middlekey2suffix"`` with ``["key1", "key2"]`` gives
    ``{"key1": "middle", "key2": "suffix"}``. Text before the first key is
    dropped. Only the first occurrence of a key counts, searched after the
    previous key. A key that is missing leaves the rest of the text to the
    key before it (the first key, when missing, is skipped and the next key
    is searched from the start; the last key, when missing, gets ``""``).
    """
    keys = list(keys)
    result: dict[str, str] = {}
    rest = content
    for position, key in enumerate(keys):
        previous = keys[position - 1] if position else None
        before, found, after = rest.strip().partition(key)
        if previous is None:
            if found:
                rest = after
            if len(keys) == 1:
                result[key] = after if found else ""
            continue
        if found:
            result[previous] = before
            rest = after
        else:
            result[previous] = rest
        if position == len(keys) - 1:
            result[key] = after if found else ""
    return result


def format_messages(messages: Iterable[Message | Mapping[str, Any]]) -> str:
    """One ``role: content`` line per message."""
    return "\n".join(f"{m.role.value}: {m.content if isinstance(m.content, str) else m.text}"
                     for m in map(_as_message, messages))


def merge_messages_content(messages: Iterable[Message | Mapping[str, Any]]) -> str:
    """A readable transcript: ``### step.N role=...`` sections for user, assistant (with
    reasoning and tool calls) and tool messages; system messages are left out."""
    sections: list[str] = []
    for step, message in enumerate(map(_as_message, messages)):
        head = f"### step.{step} role={message.role.value}"
        if message.role is Role.ASSISTANT:
            section = f"{head} content=\n{message.reasoning_content}\n\n{message.text}\n"
            for call in message.tool_calls:
                section += f" - tool call={call.name}\n   params={call.arguments}\n"
        elif message.role is Role.USER:
            section = f"{head} content=\n{message.text}\n"
        elif message.role is Role.TOOL:
            section = f"{head} tool call result=\n{message.text}\n"
        else:
            continue
        sections.append(section)
    return "\n".join(sections)


def token_count(
    messages: Iterable[Message | Mapping[str, Any]],
    tools: Iterable[ToolCall] | None = None,
    **_kwargs: Any,
) -> int:
    """An estimate of the tokens ``messages`` (and ``tools``) take: characters / 4, rounded up.

    See the module doc for what is counted. Extra keyword arguments are
    accepted, as flowllm's counters accept them, and ignored.
    """
    characters = 0
    for message in map(_as_message, messages):
        characters += len(message.text) + len(message.reasoning_content)
    for tool in tools or ():
        characters += len(tool.name) + len(tool.description) + len(tool.arguments)
    return math.ceil(characters / 4)
