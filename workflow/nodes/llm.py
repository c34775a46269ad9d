"""FlowGram's llm node: one chat completion through an OpenAI-compatible server.

Inputs (FlowGram's): ``modelName``, ``temperature``, ``apiKey``, ``apiHost``, ``prompt``, optional
``systemPrompt``; ours: optional ``maxTokens`` (default 512). Output: ``result``, the answer text.

A node that names no ``apiHost`` or ``modelName`` uses the configured server and model
(``LLM_BASE_URL``, ``LLM_MODEL``); the configured server's own client carries its key, so such a node
needs no ``apiKey``. Whatever host it uses, the node's ``modelName`` is the model of the request.
The checks and messages follow FlowGram's ``LLMExecutor`` (runtime-js 1.0.9), except that a host is
never echoed in full: it may carry a key.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from llm_client import LLMConnectionError, LLMTimeoutError

from ..executor import ExecutionContext, NodeError, NodeResult
from ..javascript import js_string, js_truthy
from ..llm_clients import is_llm_server
from ..outbound import Target

#: FlowGram's order of the "missing required inputs" list.
LLM_REQUIRED = ("modelName", "temperature", "apiKey", "apiHost", "prompt")
#: A URL scheme as the WHATWG URL parser reads one (``new URL(apiHost).protocol``, without the colon).
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
#: What the WHATWG parser strips from both ends of a URL (C0 controls and space).
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
#: The longest scheme echoed in "Invalid API host protocol": a longer one could be a pasted key.
_SHOWN_SCHEME = 10
DEFAULT_MAX_TOKENS = 512


def llm_inputs(ctx: ExecutionContext) -> dict[str, Any]:
    """The llm node's inputs, with the configured server's host and model as defaults.

    :raises NodeError: FlowGram's ``LLM node missing required inputs: "a", "b"`` (in FlowGram's order),
        ``Invalid API host format - ...`` or ``Invalid API host protocol - ...``.
    """
    inputs = dict(ctx.inputs)
    settings = ctx.settings
    if not js_truthy(inputs.get("apiHost")) and settings.llm_base_url:
        inputs["apiHost"] = settings.llm_base_url
    if not js_truthy(inputs.get("modelName")) and settings.llm_model:
        inputs["modelName"] = settings.llm_model
    missing = [name for name in LLM_REQUIRED if _missing(inputs, name, settings.llm_base_url)]
    if missing:
        raise NodeError("LLM node missing required inputs: " + ", ".join(f'"{name}"' for name in missing))
    check_api_host(inputs["apiHost"])
    return inputs


def _missing(inputs: dict[str, Any], name: str, base_url: str) -> bool:
    """FlowGram's test: ``isNil(temperature)``, ``!value`` for the others. The configured server's
    client carries its own key, so a node sending there needs no ``apiKey``."""
    value = inputs.get(name)
    if name == "temperature":
        return value is None
    if name == "apiKey" and is_llm_server(inputs.get("apiHost"), base_url):
        return False
    return not js_truthy(value)


def check_api_host(api_host: Any) -> None:
    """FlowGram's ``checkApiHost``: a string that parses as a URL with the http or https protocol.

    Only the scheme is read here (where the request may go is :meth:`RuntimeSettings.check_url`'s
    business); the host is never echoed.
    """
    if not isinstance(api_host, str):
        shown = js_string(api_host) if isinstance(api_host, (bool, int, float)) else "(not shown)"
        raise NodeError(f"Invalid API host format - {shown}")
    # the WHATWG parser drops surrounding spaces and control characters, and tabs and newlines anywhere
    text = re.sub(r"[\t\n\r]", "", api_host.strip(_C0_AND_SPACE))
    scheme = _SCHEME.match(text)
    if scheme is None:
        raise NodeError("Invalid URL")  # FlowGram: new URL() throws TypeError "Invalid URL"
    protocol = scheme.group(1).lower()
    if protocol not in ("http", "https"):
        shown = f"{protocol}:" if len(protocol) <= _SHOWN_SCHEME else "(not shown)"
        raise NodeError(f"Invalid API host protocol - {shown}")


def _checked_api_host(ctx: ExecutionContext, url: str) -> Target:
    """Where the llm node's requests (and its ``apiKey``) go; :class:`NodeError` unless allowed."""
    try:
        return ctx.settings.check_url(url)
    except NodeError as exc:
        raise NodeError(f"Invalid API host: {exc}") from None


def _temperature(value: Any) -> float:
    """The request's temperature: a number from 0 to 2, what OpenAI-compatible servers take. FlowGram sends
    any value and lets the server refuse it; we refuse it before anything is sent, saying why."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise NodeError(f"LLM node: temperature must be a number, got {type(value).__name__}") from None
    if not 0 <= number <= 2:  # NaN too
        raise NodeError(f"LLM node: temperature must be between 0 and 2, got {js_string(value)}")
    return number


def _messages(inputs: dict[str, Any]) -> list[dict[str, str]]:
    """FlowGram's messages: the system prompt when it is truthy, then the prompt."""
    messages = []
    if js_truthy(inputs.get("systemPrompt")):
        messages.append({"role": "system", "content": str(inputs["systemPrompt"])})
    messages.append({"role": "user", "content": str(inputs["prompt"])})
    return messages


def _shown_host(target: Target) -> str:
    """The host of a network error, without user info, query or fragment (they may carry a key)."""
    port = "" if (target.scheme, target.port) in (("http", 80), ("https", 443)) else f":{target.port}"
    return f"{target.scheme}://{target.host}{port}{urlsplit(target.url).path}"


async def execute_llm(ctx: ExecutionContext) -> NodeResult:
    """Chat through the client for the node's host and key, with the node's model."""
    inputs = llm_inputs(ctx)
    api_host = str(inputs["apiHost"])
    target = _checked_api_host(ctx, api_host)
    api_key = str(inputs["apiKey"]) if js_truthy(inputs.get("apiKey")) else None
    client = ctx.llm_client(api_host, api_key)
    # the URL the client will really POST to (its own spelling of the base URL): the checked host, or nothing
    if _checked_api_host(ctx, f"{client.base_url}/chat/completions").origin != target.origin:
        raise NodeError("Invalid API host: the LLM client would send to another host than the one checked")
    try:
        result = await client.chat_completion_async(
            _messages(inputs), temperature=_temperature(inputs["temperature"]),
            max_tokens=int(inputs.get("maxTokens") or DEFAULT_MAX_TOKENS), model=str(inputs["modelName"]))
    except LLMConnectionError as exc:
        if isinstance(exc, LLMTimeoutError):
            raise
        raise NodeError(f'Network error: unreachable api "{_shown_host(target)}"') from exc
    return NodeResult({"result": result.text})
