"""The body of a chat completion request, checked before anything is sent.

Bad input raises ``ValueError`` (``TypeError`` for a prompt that is not text) naming the
argument and, inside a list, the index of what is wrong: a caller's mistake is never
sent upstream to come back as an unexplained 400.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

Message = Mapping[str, Any]

ROLES = ("system", "user", "assistant", "tool", "developer")
TOOL_CHOICES = ("none", "auto", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
#: Body keys the client sets itself; ``extra_body`` may not name them.
MANAGED_KEYS = frozenset({"model", "messages", "stream", "temperature", "max_tokens",
                          "tools", "tool_choice", "response_format"})


def prompt_messages(prompt: str, system_prompt: str | None) -> list[dict[str, str]]:
    """``[system?, user]`` for a one-prompt call."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": prompt})
    return messages


def chat_body(
    default_model: str,
    messages: Sequence[Message],
    temperature: float | None,
    max_tokens: int | None,
    model: str | None = None,
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: str | Mapping[str, Any] | None = None,
    response_format: Mapping[str, Any] | None = None,
    extra_body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of ``POST /chat/completions``; ``temperature``/``max_tokens`` None are not sent
    (the server's defaults apply), nor are ``tools``/``tool_choice``/``response_format`` when None.

    :raises ValueError: naming the first bad argument.
    """
    check_messages(messages)
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise ValueError(f"model must be a non-empty string, got {model!r}")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    if temperature is not None and (
        not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not 0 <= temperature <= 2
    ):
        raise ValueError(f"temperature must be a number between 0 and 2, got {temperature!r}")
    body: dict[str, Any] = {"model": default_model if model is None else model,
                            "messages": [dict(m) for m in messages]}
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if tools is not None:
        body["tools"] = check_tools(tools)
    if tool_choice is not None:
        body["tool_choice"] = check_tool_choice(tool_choice, body.get("tools"))
    if response_format is not None:
        body["response_format"] = check_response_format(response_format)
    if extra_body:
        if not isinstance(extra_body, Mapping):
            raise ValueError(f"extra_body must be an object, got {type(extra_body).__name__}")
        clash = sorted(MANAGED_KEYS & set(extra_body))
        if clash:
            raise ValueError(f"extra_body may not set {', '.join(clash)}: use the argument of that name")
        _check_json("extra_body", extra_body)
        body.update(extra_body)
    return body


def check_messages(messages: Sequence[Message]) -> None:
    """A non-empty list of OpenAI messages: a known role; text content (or a list of parts; or null
    in an assistant message with ``tool_calls``); ``tool_calls`` and ``tool_call_id`` well formed."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...}")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"messages[{i}] must be an object with 'role' and 'content'")
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {role!r}")
        content = message.get("content")
        calls = message.get("tool_calls")
        if calls is not None:
            if role != "assistant":
                raise ValueError(f"messages[{i}].tool_calls: only an assistant message carries tool calls")
            _check_message_calls(i, calls)
        if not (isinstance(content, str) or _is_parts(content) or (content is None and calls)):
            raise ValueError(f"messages[{i}].content must be a string"
                             + (" (or null, with tool_calls)" if role == "assistant" else ""))
        call_id = message.get("tool_call_id")
        if role == "tool" and call_id is not None and not isinstance(call_id, str):
            raise ValueError(f"messages[{i}].tool_call_id must be a string, got {call_id!r}")
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"messages[{i}].name must be a string, got {type(name).__name__}")
        reasoning = message.get("reasoning_content")
        if reasoning is not None and not isinstance(reasoning, str):
            raise ValueError(f"messages[{i}].reasoning_content must be a string")


def _is_parts(content: Any) -> bool:
    """A multi-part content: a list of ``{"type": ...}`` objects."""
    return isinstance(content, list) and all(isinstance(p, Mapping) and isinstance(p.get("type"), str)
                                             for p in content)


def _check_message_calls(i: int, calls: Any) -> None:
    if not isinstance(calls, list):
        raise ValueError(f"messages[{i}].tool_calls must be a list")
    for j, call in enumerate(calls):
        where = f"messages[{i}].tool_calls[{j}]"
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise ValueError(f"{where} must be {{'id', 'type': 'function', 'function': {{'name', 'arguments'}}}}")
        if not isinstance(call.get("id", ""), str) or not isinstance(function.get("arguments", ""), str):
            raise ValueError(f"{where}: id and function.arguments must be strings")


def check_tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI tool definitions ``{"type": "function", "function": {"name", "description"?, "parameters"?}}``."""
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise ValueError("tools must be a list of {'type': 'function', 'function': {...}}")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(tool, Mapping) or tool.get("type") != "function" or not isinstance(function, Mapping):
            raise ValueError(f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ..., ...}}}}")
        name = function.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"tools[{i}].function.name must be a non-empty string")
        if name in names:
            raise ValueError(f"tools[{i}]: two tools are named {name!r}")
        names.add(name)
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, Mapping):
            raise ValueError(f"tools[{i}].function.parameters must be a JSON schema object")
        _check_json(f"tools[{i}]", tool)
    return [dict(tool) for tool in tools]


def check_tool_choice(choice: str | Mapping[str, Any], tools: list[dict[str, Any]] | None) -> Any:
    """``"none"``, ``"auto"``, ``"required"`` or ``{"type": "function", "function": {"name": n}}``
    naming one of ``tools``."""
    if isinstance(choice, str):
        if choice not in TOOL_CHOICES:
            raise ValueError(f"tool_choice must be one of {', '.join(TOOL_CHOICES)} or "
                             f"{{'type': 'function', 'function': {{'name': ...}}}}, got {choice!r}")
        if choice == "required" and not tools:
            raise ValueError("tool_choice 'required' needs tools")
        return choice
    function = choice.get("function") if isinstance(choice, Mapping) else None
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(choice, Mapping) or choice.get("type") != "function" or not isinstance(name, str):
        raise ValueError("tool_choice must be 'none', 'auto', 'required' or "
                         "{'type': 'function', 'function': {'name': ...}}")
    offered = [tool["function"]["name"] for tool in tools or ()]
    if name not in offered:
        raise ValueError(f"tool_choice names {name!r}, which is not among the tools"
                         f" ({', '.join(offered) or 'none given'})")
    return {"type": "function", "function": {"name": name}}


def check_response_format(response_format: Mapping[str, Any]) -> dict[str, Any]:
    """``{"type": "text"}``, ``{"type": "json_object"}`` or
    ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}, "strict"?: bool}}``."""
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind not in RESPONSE_FORMATS:
        raise ValueError(f"response_format.type must be one of {', '.join(RESPONSE_FORMATS)}, got {kind!r}")
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str) or not spec["name"].strip():
            raise ValueError("response_format json_schema needs 'json_schema': {'name': ..., 'schema': {...}}")
        if not isinstance(spec.get("schema", {}), Mapping):
            raise ValueError("response_format.json_schema.schema must be a JSON schema object")
    _check_json("response_format", response_format)
    return dict(response_format)


def _check_json(label: str, value: Any) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{label} must be JSON-serialisable: {exc}") from None
