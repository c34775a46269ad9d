"""The model's tool calls: read from a chat completion, or put together from a stream's deltas.

A tool call is returned in OpenAI's shape, whatever the server sent::

    {"index": 0, "id": "call_1", "type": "function", "function": {"name": "search", "arguments": "{\\"q\\": \\"x\\"}"}}

``arguments`` is the model's text, kept as it came: it may not be JSON, and the tool may
not be one that was offered. Judging the call is the caller's business (``ops`` marks such
calls invalid and tells the model); the client never fails because a model wrote a bad call.
Arguments a server sends as an object are written as JSON text; a call without an ``id`` gets
``call_<index>``, so that a tool message can still answer it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .exceptions import LLMResponseError


def message_tool_calls(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The tool calls of a completion's ``choices[0].message`` (``[]`` when it has none).

    :raises LLMResponseError: when ``tool_calls`` is not a list of objects.
    """
    calls = message.get("tool_calls")
    if calls is None:
        return []
    if not isinstance(calls, list) or not all(isinstance(c, Mapping) for c in calls):
        raise LLMResponseError("chat completion's message.tool_calls is not a list of objects",
                               body=str(message)[:500])
    return [_normalised(i, call) for i, call in enumerate(calls)]


def _normalised(position: int, call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") if isinstance(call.get("function"), Mapping) else {}
    index = call.get("index")
    index = index if isinstance(index, int) and not isinstance(index, bool) else position
    return {
        "index": index,
        "id": _text(call.get("id")) or f"call_{index}",
        "type": "function",
        "function": {"name": _text(function.get("name")), "arguments": _arguments(function.get("arguments"))},
    }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _arguments(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


class ToolCallAssembler:
    """Puts a stream's tool-call deltas together, by ``index``.

    OpenAI sends a call's ``id``, ``type`` and ``function.name`` in its first delta and the
    ``arguments`` in pieces after it; every piece is appended. An ``id`` or ``name`` that a
    server repeats in each delta is kept once (a piece equal to what is there already is not
    appended). A delta without an ``index`` continues the last call, unless it brings a new
    ``id``, which starts a new one.
    """

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}
        self._last: int | None = None

    def add(self, deltas: Any) -> None:
        """Take the ``delta.tool_calls`` of one chunk (anything but a list of objects is ignored)."""
        if not isinstance(deltas, list):
            return
        for delta in deltas:
            if isinstance(delta, Mapping):
                self._add_one(delta)

    def _add_one(self, delta: Mapping[str, Any]) -> None:
        index = delta.get("index")
        new_id = _text(delta.get("id"))
        if not isinstance(index, int) or isinstance(index, bool):
            last = self._calls.get(self._last) if self._last is not None else None
            starts_new = last is None or (new_id and last["id"] and new_id != last["id"])
            index = (max(self._calls) + 1 if self._calls else 0) if starts_new else self._last
        call = self._calls.setdefault(index, {"index": index, "id": "", "type": "function",
                                              "function": {"name": "", "arguments": ""}})
        self._last = index
        function = delta.get("function") if isinstance(delta.get("function"), Mapping) else {}
        call["id"] = _joined(call["id"], new_id)
        call["function"]["name"] = _joined(call["function"]["name"], _text(function.get("name")))
        call["function"]["arguments"] += _arguments(function.get("arguments"))

    @property
    def calls(self) -> list[dict[str, Any]]:
        """The calls so far, in index order (complete once the stream has ended)."""
        out = []
        for index in sorted(self._calls):
            call = self._calls[index]
            out.append({**call, "id": call["id"] or f"call_{index}", "function": dict(call["function"])})
        return out


def _joined(current: str, piece: str) -> str:
    return current if not piece or piece == current else current + piece
