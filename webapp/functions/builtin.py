"""The built-in functions, the examples of seeds/004 made real; every app serves them.

* ``batch_process`` (sync generator): progress after each item, with its result;
* ``chat_stream`` (sync generator, read on the request thread: see :mod:`webapp.chat`): the LLM's
  answer as ``content`` deltas;
* ``process_text_file`` (sync generator): an uploaded text file line by line, progress every N lines;
* ``count_to`` (async generator): progress from 1 to n, for ``curl -N`` demos;
* ``word_count`` (plain function): JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from .. import sse
from ..chat import chat_events, check_capacity
from ..extensions import get_llm_client
from .registry import InputError, TextFile, register_function

__all__ = ["batch_process", "chat_stream", "count_to", "process_text_file", "word_count"]

Event = dict[str, Any]

#: Roles a chat message may have.
_ROLES = ("system", "user", "assistant")


@register_function(parameters=[
    {"name": "items", "maxItems": 10000},
    {"name": "delay", "minimum": 0, "maximum": 5},
])
def batch_process(items: list, delay: float = 0.1) -> Iterator[Event]:
    """Process items one by one, reporting progress and each item's result.

    Args:
        items: the items; a string gets its upper case, length and word count, a number its square
            and a list or object its size.
        delay: seconds to pause after each item (at most 5), so the progress can be watched.
    """
    total = len(items)
    yield sse.start({"total": total, "message": f"processing {total} items"})
    for i, item in enumerate(items, 1):
        yield sse.progress(i, total, f"processed item {i} of {total}", result=process_item(item), item=item)
        if delay and i < total:
            time.sleep(delay)
    yield sse.done({"total": total, "processed": total, "success": True, "message": "all items processed"})


def process_item(item: Any) -> dict[str, Any]:
    """What ``batch_process`` computes for one item."""
    if isinstance(item, str):
        return {"upper": item.upper(), "length": len(item), "words": len(item.split())}
    if isinstance(item, (int, float)) and not isinstance(item, bool):
        return {"value": item, "square": item * item}
    if isinstance(item, (list, dict)):
        return {"size": len(item)}
    return {"value": item}


@register_function(parameters=[
    {"name": "messages", "minItems": 1, "maxItems": 200},
    {"name": "message", "minLength": 1},
    {"name": "temperature", "minimum": 0, "maximum": 2},
    {"name": "max_tokens", "minimum": 1, "maximum": 32768},
])
def chat_stream(
    message: str | None = None,
    messages: list[dict] | None = None,
    temperature: float = 0.7,
    max_tokens: int = 256,
    system_prompt: str | None = None,
) -> Iterator[Event]:
    """Stream the LLM's answer: ``start`` with the model, ``content`` deltas, ``done`` with counts.

    Args:
        message: one user message (give this or messages).
        messages: a conversation, ``[{"role": "user", "content": "..."}]`` (give this or message).
        temperature: sampling temperature, 0 to 2.
        max_tokens: most tokens to generate.
        system_prompt: a system message put first.
    """
    conversation = _conversation(message, messages, system_prompt)
    client = get_llm_client()
    check_capacity(client)
    # closing: closing this generator closes chat_events now, and with it the upstream response.
    with contextlib.closing(chat_events(client, conversation, temperature, max_tokens)) as events:
        yield from events


def _conversation(message: str | None, messages: list[dict] | None, system_prompt: str | None) -> list[dict]:
    if (message is None) == (messages is None):
        raise InputError("message", "give exactly one of 'message' or 'messages'")
    if messages is None:
        conversation = [{"role": "user", "content": message}]
    else:
        conversation = []
        for i, entry in enumerate(messages):
            if set(entry) != {"role", "content"} or entry["role"] not in _ROLES \
                    or not isinstance(entry["content"], str):
                raise InputError(f"messages[{i}]", 'expected {"role": "system"|"user"|"assistant", '
                                                   '"content": "<text>"}')
            conversation.append({"role": entry["role"], "content": entry["content"]})
    if system_prompt:
        conversation.insert(0, {"role": "system", "content": system_prompt})
    return conversation


@register_function(parameters=[{"name": "every", "minimum": 1, "maximum": 1_000_000}])
def process_text_file(file: TextFile, every: int = 100) -> Iterator[Event]:
    """Process an uploaded text file line by line, reporting progress every N lines.

    Args:
        file: a UTF-8 text file (multipart upload), or its text as a string.
        every: report progress after every this many lines.
    """
    lines = file.splitlines()
    total = len(lines)
    yield sse.start({"total_lines": total, "every": every, "message": f"processing {total} lines"})
    words = characters = blank = longest = 0
    for i, line in enumerate(lines, 1):
        count = len(line.split())
        words += count
        characters += len(line)
        blank += count == 0
        longest = max(longest, len(line))
        if i % every == 0 or i == total:
            yield sse.progress(i, total, f"processed {i} of {total} lines", words=words, characters=characters)
    yield sse.done({"lines": total, "words": words, "characters": characters, "blank_lines": blank,
                    "longest_line": longest, "success": True})


@register_function(parameters=[
    {"name": "n", "minimum": 1, "maximum": 10000},
    {"name": "delay", "minimum": 0, "maximum": 1},
])
async def count_to(n: int = 100, delay: float = 0.02) -> AsyncIterator[Event]:
    """Count from 1 to n, one progress event per step, ending at 100%.

    Args:
        n: the number to count to (at most 10000).
        delay: seconds between steps (at most 1).
    """
    yield sse.start({"total": n, "message": f"counting to {n}"})
    for i in range(1, n + 1):
        yield sse.progress(i, n, f"{i}/{n}")
        if delay and i < n:
            await asyncio.sleep(delay)
    yield sse.done({"count": n, "success": True})


@register_function(parameters=[{"name": "text", "maxLength": 1_000_000}])
def word_count(text: str) -> dict:
    """Count the words, characters and lines of a text.

    Args:
        text: the text.

    Returns:
        ``{"words", "unique_words", "characters", "lines"}``.
    """
    words = text.split()
    return {"words": len(words), "unique_words": len({w.lower() for w in words}),
            "characters": len(text), "lines": len(text.splitlines())}
