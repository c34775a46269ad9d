"""External MCP servers, configured by name, and their tools as ``ToolCall`` schemas.

A server is configured once, by whoever runs the app (never by a request)::

    mcp_servers:
      files:   {command: ["python", "-m", "my_mcp_server"], env: {ROOT: /srv/data}}
      search:  {url: "https://mcp.example.com/mcp", headers: {Authorization: "Bearer {SEARCH_KEY}"}}

``command`` servers are spawned over stdio (the command is taken from this configuration only:
an op names the server, never a command); ``url`` servers are reached over streamable HTTP (or
the older SSE transport with ``type: sse``). Each URL is checked, when configured and again before
each connection, by the ``url_checker`` given to :func:`configure_mcp_servers`; the web app and
the ``flowbridge`` commands pass the outbound allow-list of workflows (``FLOWBRIDGE_ALLOWED_HOSTS``,
:func:`workflow.outbound.check_outbound_url`). Without a checker, URL servers are refused: ``ops``
sits below ``workflow`` and does not choose what may be reached. ``{NAME}`` in a header value is
replaced by the environment variable ``NAME`` (flowllm's form), so keys stay out of files.

One connection per use, as flowllm's ``FastMcpClient``: open, initialize, list or call, close.
Tool lists are cached per server until :func:`configure_mcp_servers` is called again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .tool_call import TYPE_ALIASES, ToolAttr, ToolCall

__all__ = ["MCP_SERVERS", "McpServerConfig", "McpServerError", "McpServers", "configure_mcp_servers",
           "parse_mcp_servers", "result_text", "tool_call_from_mcp"]

#: The environment variable ``configure_mcp_servers`` reads when given no servers.
ENV_VAR = "FLOWBRIDGE_MCP_SERVERS"
_JSON_TYPES = frozenset({"string", "array", "integer", "number", "boolean", "object"})
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


class McpServerError(ValueError):
    """An MCP server is unknown, misconfigured, refused, unreachable, or answered with an error."""


class McpServerConfig(BaseModel):
    """One server: ``url`` (HTTP) or ``command`` (stdio), not both."""

    model_config = ConfigDict(extra="forbid")

    url: str = ""
    #: the program and its arguments; a string is the program alone (flowllm's ``command`` + ``args``)
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    #: ``streamable_http`` (default for URLs) or ``sse``; flowllm's spellings are accepted
    type: str = ""
    #: seconds for one list or call, connection included
    timeout: float = Field(default=30.0, gt=0)

    @field_validator("command", mode="before")
    @classmethod
    def _one_word(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _url_or_command(self) -> McpServerConfig:
        if bool(self.url) == bool(self.command):
            raise ValueError("give either url or command")
        kind = self.type.lower().replace("-", "_")
        if kind not in ("", "streamable_http", "streamablehttp", "http", "sse", "stdio"):
            raise ValueError(f"type {self.type!r}: expected streamable_http or sse")
        return self

    @property
    def uses_sse(self) -> bool:
        return self.type.lower() == "sse" or (not self.type and self.url.rstrip("/").endswith("/sse"))


def parse_mcp_servers(value: Any, source: str = "mcp_servers") -> dict[str, McpServerConfig]:
    """Servers from a mapping, a JSON object text, or the path of a YAML/JSON file.

    The mapping may hold the servers at top level or under ``mcp_servers:`` (or flowllm's
    ``external_mcp:``). :raises McpServerError: naming the server and field that is wrong.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, (str, Path)):
        text = str(value).strip()
        if not text.startswith("{"):
            source = text
            try:
                text = Path(text).read_text(encoding="utf-8")
            except OSError as exc:
                raise McpServerError(f"cannot read MCP servers file {source}: {exc.strerror}") from None
        try:
            value = yaml.safe_load(text)  # YAML is a superset of JSON
        except yaml.YAMLError as exc:
            raise McpServerError(f"{source} is not valid YAML or JSON: {exc}") from None
    if not isinstance(value, Mapping):
        raise McpServerError(f"{source}: expected a mapping of server name → {{url: ...}} or {{command: [...]}}")
    for key in ("mcp_servers", "external_mcp"):
        if isinstance(value.get(key), Mapping):
            value = value[key]
    servers: dict[str, McpServerConfig] = {}
    for name, raw in value.items():
        try:
            servers[str(name)] = McpServerConfig.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'server'}: {e['msg']}" for e in exc.errors())
            raise McpServerError(f"{source}: MCP server {name!r}: {problems}") from None
    return servers


class McpServers:
    """The configured servers, their cached tool lists, and calls to them."""

    def __init__(self) -> None:
        self.servers: dict[str, McpServerConfig] = {}
        self.url_checker: Callable[[str], object] | None = None
        self._tools: dict[str, dict[str, ToolCall]] = {}

    def configure(self, servers: Any = None, *, url_checker: Callable[[str], object] | None = None) -> None:
        """Install ``servers`` (see :func:`parse_mcp_servers`; ``None``: ``FLOWBRIDGE_MCP_SERVERS``).

        :raises McpServerError: for a bad server, or a URL the checker refuses, before anything changes.
        """
        parsed = parse_mcp_servers(os.environ.get(ENV_VAR, "") if servers is None else servers,
                                   source=ENV_VAR if servers is None else "mcp_servers")
        for name, config in parsed.items():
            if config.url:
                _check_url(name, config.url, url_checker)
        self.servers, self.url_checker, self._tools = parsed, url_checker, {}

    def get(self, name: str) -> McpServerConfig:
        try:
            return self.servers[name]
        except KeyError:
            known = ", ".join(sorted(self.servers)) or "none configured"
            raise McpServerError(f"no MCP server named {name!r} (servers: {known})") from None

    def cached_tools(self, name: str) -> dict[str, ToolCall] | None:
        """The server's tools if already listed, else None (no connection made)."""
        return self._tools.get(name)

    @asynccontextmanager
    async def session(self, name: str) -> AsyncIterator[Any]:
        """An initialized ``mcp.ClientSession`` with the server ``name``."""
        from mcp import ClientSession

        config = self.get(name)
        async with _transport(name, config, self.url_checker) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session

    async def list_tools(self, name: str, refresh: bool = False) -> dict[str, ToolCall]:
        """The server's tools by name (cached)."""
        if refresh or name not in self._tools:
            config = self.get(name)

            async def fetch() -> list[Any]:
                async with self.session(name) as session:
                    return list((await session.list_tools()).tools)

            tools = await _bounded(name, "listing its tools", config.timeout, fetch())
            self._tools[name] = {tool.name: tool_call_from_mcp(tool) for tool in tools}
        return self._tools[name]

    async def call_tool(self, name: str, tool: str, arguments: Mapping[str, Any],
                        timeout: float | None = None) -> Any:
        """Call ``tool`` of server ``name``; the SDK's ``CallToolResult``."""
        config = self.get(name)

        async def call() -> Any:
            async with self.session(name) as session:
                return await session.call_tool(tool, dict(arguments))

        return await _bounded(name, f"calling {tool}", timeout or config.timeout, call())


async def _bounded(name: str, what: str, timeout: float, work: Any) -> Any:
    """``work`` within ``timeout``; transport failures become :class:`McpServerError` naming the server."""
    try:
        return await asyncio.wait_for(work, timeout)
    except McpServerError:
        raise
    except asyncio.TimeoutError:
        raise McpServerError(f"MCP server {name!r}: no answer within {timeout:g}s while {what}") from None
    except Exception as exc:  # the SDK wraps transport errors in exception groups
        raise McpServerError(f"MCP server {name!r} failed while {what}: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    """The first real error of an exception group, one line, URLs left out (they may carry keys)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = _URL.sub("<url>", " ".join(str(exc).split()))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_url(name: str, url: str, checker: Callable[[str], object] | None) -> None:
    if checker is None:
        raise McpServerError(f"MCP server {name!r}: URL servers need an outbound URL check; configure them "
                             "through the web app or flowbridge (FLOWBRIDGE_ALLOWED_HOSTS) or pass url_checker=")
    try:
        checker(url)
    except ValueError as exc:  # the message names the host, never the whole URL
        raise McpServerError(f"MCP server {name!r}: {exc}") from None


def _headers(config: McpServerConfig) -> dict[str, str]:
    def expand(match: re.Match[str]) -> str:
        return os.environ.get(match.group(1), match.group(0))

    return {key: _PLACEHOLDER.sub(expand, value) for key, value in config.headers.items()}


@asynccontextmanager
async def _transport(name: str, config: McpServerConfig,
                     checker: Callable[[str], object] | None) -> AsyncIterator[tuple[Any, Any]]:
    if config.command:
        from mcp import StdioServerParameters, stdio_client

        program, *args = config.command
        params = StdioServerParameters(command=program, args=[*args, *config.args], env=config.env or None,
                                       cwd=config.cwd)
        async with stdio_client(params) as streams:
            yield streams
        return
    _check_url(name, config.url, checker)
    if config.uses_sse:
        from mcp.client.sse import sse_client

        async with sse_client(config.url, headers=_headers(config), timeout=config.timeout) as streams:
            yield streams
        return
    import httpx2  # the SDK's HTTP client
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers=_headers(config), timeout=httpx2.Timeout(config.timeout)) as http, \
            streamable_http_client(config.url, http_client=http) as streams:
        yield streams[0], streams[1]


def tool_call_from_mcp(tool: Any) -> ToolCall:
    """An MCP ``Tool`` as a ``ToolCall`` (flowllm's ``ToolCall.from_mcp_tool``).

    Properties whose JSON schema our ``ToolAttr`` cannot hold exactly are approximated: a type
    list or ``anyOf`` takes its first non-null type; no type at all reads as ``string``.
    """
    schema = getattr(tool, "input_schema", None) or {}
    required = set(schema.get("required") or ())
    inputs: dict[str, ToolAttr] = {}
    for name, prop in (schema.get("properties") or {}).items():
        prop = prop if isinstance(prop, Mapping) else {}
        attr: dict[str, Any] = {"type": _json_type(prop), "description": str(prop.get("description") or ""),
                                "required": name in required}
        if isinstance(prop.get("enum"), list):
            attr["enum"] = prop["enum"]
        if attr["type"] == "array" and isinstance(prop.get("items"), Mapping):
            attr["items"] = dict(prop["items"])
        if "default" in prop:
            attr["default"] = prop["default"]
        inputs[name] = ToolAttr(**attr)
    return ToolCall(name=tool.name, description=tool.description or "", input_schema=inputs)


def _json_type(prop: Mapping[str, Any]) -> str:
    candidates: list[Any] = []
    kind = prop.get("type")
    candidates.extend(kind if isinstance(kind, list) else [kind])
    for branch in prop.get("anyOf") or prop.get("oneOf") or ():
        if isinstance(branch, Mapping):
            candidates.append(branch.get("type"))
    for candidate in candidates:
        if isinstance(candidate, str):
            candidate = TYPE_ALIASES.get(candidate, candidate)
            if candidate in _JSON_TYPES:
                return candidate
    return "string"


def result_text(result: Any) -> str:
    """The text of a ``CallToolResult``: its text blocks joined, else its structured content as JSON."""
    texts = [block.text for block in getattr(result, "content", ()) if getattr(block, "type", "") == "text"]
    if texts:
        return "\n".join(texts)
    structured = getattr(result, "structured_content", None)
    return "" if structured is None else json.dumps(structured, ensure_ascii=False, default=str)


#: The process-wide registry (as ``C``).
MCP_SERVERS = McpServers()


def configure_mcp_servers(servers: Any = None, *, url_checker: Callable[[str], object] | None = None) -> None:
    """:meth:`McpServers.configure` of :data:`MCP_SERVERS`."""
    MCP_SERVERS.configure(servers, url_checker=url_checker)
