"""Scripted replies of the fake upstream (tests/fake_upstream.py): tool calls, reasoning, answers
made from a JSON schema, and the checks OpenAI makes of a conversation's tool calls."""

from __future__ import annotations

import collections
import json
import re
import threading
from collections.abc import Callable
from typing import Any

WORD_SPLIT = re.compile(r"(?<=\S)(?=\s)")  # "a b c" -> ["a", " b", " c"], like real token deltas


def text_of(content: Any) -> str:
    """The text of a message ``content``: a string or a list of ``{"type": "text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


class Scripts:
    """The fake upstream's scripted replies: lists of replies, each for the requests it matches."""

    def __init__(self, call_ids: Any) -> None:
        self._ids = call_ids
        self._lock = threading.Lock()
        self._scripts: list[tuple[str | Callable[[dict[str, Any]], bool] | None, collections.deque, bool]] = []

    def add(self, replies: list[str | dict[str, Any]], match: str | Callable[[dict[str, Any]], bool] | None = None,
            repeat: bool = False) -> None:
        """Answer the next requests that ``match`` with ``replies``, one each, in order.

        A reply is a text, or ``{"content": str | None, "tool_calls": [{"name", "arguments" (a dict, or
        text sent as it is, even if not JSON), "id"?}], "reasoning_content": str, "finish_reason": str}``
        (``finish_reason`` defaults to ``"tool_calls"`` with calls, else the ``finish_reason`` setting).
        ``match``: only requests whose first user message contains this text (or for which this
        function of the request body is true) take these replies, so concurrent conversations each
        get their own; None: any request. Scripts are tried in the order given; one that ran out is
        skipped, unless ``repeat`` (the last reply forever: a model that never stops calling tools).
        Requests no script answers get the fake's usual answer.
        """
        checked = [check_reply(reply) for reply in replies]
        if not checked:
            raise ValueError("script needs at least one reply")
        if match is not None and not (isinstance(match, str) or callable(match)):
            raise TypeError("match must be a text, a function of the request body, or None")
        with self._lock:
            self._scripts.append((match, collections.deque(checked), repeat))

    def next_reply(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """The reply for this request (tool calls given ids), or None when no script answers it."""
        with self._lock:
            for match, replies, repeat in self._scripts:
                if replies and _matches(match, payload):
                    reply = replies[0] if repeat and len(replies) == 1 else replies.popleft()
                    return with_call_ids(reply, self._ids)
        return None

    def clear(self) -> None:
        with self._lock:
            self._scripts.clear()


def _matches(match: str | Callable[[dict[str, Any]], bool] | None, payload: dict[str, Any]) -> bool:
    if match is None:
        return True
    if callable(match):
        return bool(match(payload))
    users = [m for m in payload.get("messages") or () if isinstance(m, dict) and m.get("role") == "user"]
    return bool(users) and match in text_of(users[0].get("content"))


def check_reply(reply: Any) -> dict[str, Any]:
    """A scripted reply as ``{"content", "tool_calls", "reasoning_content", "finish_reason"}``."""
    if isinstance(reply, str):
        reply = {"content": reply}
    if not isinstance(reply, dict) or set(reply) - {"content", "tool_calls", "reasoning_content", "finish_reason"}:
        raise ValueError(f"bad reply {reply!r}: a text, or an object with content, tool_calls, "
                         "reasoning_content, finish_reason")
    calls = reply.get("tool_calls") or []
    if not isinstance(calls, list) or not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls):
        raise ValueError(f"bad tool_calls {calls!r}: a list of {{'name', 'arguments', 'id'?}}")
    return {"content": reply.get("content") if reply.get("content") is not None or calls else "",
            "tool_calls": [dict(c) for c in calls], "reasoning_content": reply.get("reasoning_content") or "",
            "finish_reason": reply.get("finish_reason")}


def with_call_ids(reply: dict[str, Any], ids: Any) -> dict[str, Any]:
    """A copy of ``reply`` whose tool calls all have an ``id`` and text ``arguments``."""
    calls = []
    for call in reply["tool_calls"]:
        arguments = call.get("arguments", {})
        calls.append({"id": call.get("id") or f"call_fake_{next(ids)}", "name": call["name"],
                      "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)})
    return {**reply, "tool_calls": calls}


def openai_call(index: int, call: dict[str, Any]) -> dict[str, Any]:
    return {"index": index, "id": call["id"], "type": "function",
            "function": {"name": call["name"], "arguments": call["arguments"]}}


def finish_of(reply: dict[str, Any], default: str) -> str:
    """The reply's finish reason: given, else ``tool_calls`` with calls, else ``default``."""
    return reply["finish_reason"] or ("tool_calls" if reply["tool_calls"] else default)


def reply_deltas(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """The deltas OpenAI would stream for ``reply``; arguments arrive in pieces of up to 7 characters."""
    deltas: list[dict[str, Any]] = [{"reasoning_content": piece}
                                    for piece in WORD_SPLIT.split(reply["reasoning_content"]) if piece]
    if reply["content"]:
        deltas += [{"content": piece} for piece in WORD_SPLIT.split(reply["content"])]
    for i, call in enumerate(reply["tool_calls"]):
        deltas.append({"content": None, "tool_calls": [
            {"index": i, "id": call["id"], "type": "function", "function": {"name": call["name"], "arguments": ""}}]})
        args = call["arguments"]
        deltas += [{"tool_calls": [{"index": i, "function": {"arguments": args[k:k + 7]}}]}
                   for k in range(0, len(args), 7)]
    return deltas or [{"content": ""}]


def conversation_problem(messages: list[dict[str, Any]]) -> str:
    """What OpenAI would reject in a conversation's tool calls and results ("" if nothing): every
    call of an assistant message is answered by a tool message right after it, and only those."""
    open_ids: list[str] = []
    for i, message in enumerate(messages):
        role, calls = message.get("role"), message.get("tool_calls")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_ids:
                return f"messages[{i}]: role 'tool' must answer a tool call of the assistant message before it " \
                       f"(tool_call_id {call_id!r})"
            open_ids.remove(call_id)
            continue
        if open_ids:
            return (f"messages[{i}]: an assistant message with 'tool_calls' must be followed by tool messages "
                    f"responding to each 'tool_call_id'; unanswered: {', '.join(open_ids)}")
        if calls is not None:
            if role != "assistant" or not isinstance(calls, list):
                return f"messages[{i}]: only an assistant message has tool_calls, a list"
            for call in calls:
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(call.get("id"), str) \
                        or not isinstance(function.get("arguments"), str):
                    return f"messages[{i}].tool_calls: each needs an id and function.name/arguments (a string)"
                open_ids.append(call["id"])
        for key in ("reasoning_content", "name"):
            if message.get(key) is not None and not isinstance(message.get(key), str):
                return f"messages[{i}].{key} must be a string"
    if open_ids:
        return ("an assistant message with 'tool_calls' must be followed by tool messages responding to each "
                f"'tool_call_id'; unanswered: {', '.join(open_ids)}")
    return ""


def tools_problem(payload: dict[str, Any]) -> str:
    """What OpenAI would reject in ``tools``/``tool_choice``/``response_format`` ("" if nothing)."""
    tools = payload.get("tools")
    names = []
    if tools is not None:
        if not isinstance(tools, list):
            return "'tools' must be a list"
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(function, dict) or tool.get("type") != "function" or not function.get("name"):
                return f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}"
            names.append(function["name"])
    choice = payload.get("tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name not in names:
            return f"tool_choice names {name!r}, which is not among the tools"
    elif choice is not None and choice not in ("none", "auto", "required"):
        return f"tool_choice {choice!r} is not none, auto, required or a function"
    response_format = payload.get("response_format")
    if response_format is not None and (not isinstance(response_format, dict) or response_format.get("type")
                                        not in ("text", "json_object", "json_schema")):
        return "response_format.type must be text, json_object or json_schema"
    return ""


def example(schema: Any, text: str) -> Any:
    """A value that fits a JSON schema: its enum's first value, else one of its type (a string is ``text``)."""
    if not isinstance(schema, dict):
        return text
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {name: example(sub, text) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [example(schema.get("items"), text)]
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(kind, text)


def schema_reply(payload: dict[str, Any], ids: Any) -> dict[str, Any] | None:
    """The answer to a request that forces a tool call (``tool_choice`` ``required`` or a function: that
    tool, or the first, called with arguments made from its parameters) or asks for JSON
    (``response_format``: an object made from the schema, or ``{"echo": ...}``); None for any other."""
    users = [m for m in payload["messages"] if m.get("role") == "user"]
    last = text_of(users[-1].get("content")) if users else ""
    tools = [t["function"] for t in payload.get("tools") or ()]
    choice = payload.get("tool_choice")
    if tools and (choice == "required" or isinstance(choice, dict)):
        name = choice["function"]["name"] if isinstance(choice, dict) else tools[0]["name"]
        tool = next(t for t in tools if t["name"] == name)
        arguments = example(tool.get("parameters") or {"type": "object"}, last)
        return with_call_ids(check_reply({"tool_calls": [{"name": name, "arguments": arguments}]}), ids)
    response_format = payload.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return check_reply(json.dumps(example(schema or {"type": "object"}, last)))
    if response_format.get("type") == "json_object":
        return check_reply(json.dumps({"echo": last}))
    return None

