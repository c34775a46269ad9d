"""``/mcp``: the MCP server of :mod:`ops.mcp_server` over MCP's streamable HTTP transport, in the app.

Why in the app, and how: the ``mcp`` SDK's transport is ASGI and the app is WSGI under gunicorn's
threaded workers. The SDK's :class:`StreamableHTTPSessionManager` in *stateless, JSON-response*
mode needs nothing that outlives a request: every POST gets a fresh transport and answers with
one JSON body (no event stream, no ``Mcp-Session-Id``). So each POST here runs one manager for
that request on the worker thread's event loop (:func:`async_utils.async_route`), feeding it the
request as an ASGI scope and collecting the response it sends. Everything the app does to its
JSON API applies unchanged: API keys (``FLOWBRIDGE_API_KEYS``: ``Authorization: Bearer <key>``,
401 without), the Host and cross-site checks, the work slots, the request deadline (504), the
body size limit and the access log. The same port serves both, behind the same proxy. The SDK's
own Host/Origin check is left off: the app's (:mod:`webapp.guards.origin`) already ran.

What stateless mode gives up: server-to-client requests (sampling, elicitation) and the GET
event stream, which our tools do not use; ``GET`` and ``DELETE /mcp`` answer 405, as the
specification allows a server without them to.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
from flask import Blueprint, Flask, Response, request

from async_utils import async_route

from ..guards.jsonbody import JSONInputError, loads_json
from ..guards.outbound import install_mcp_servers

__all__ = ["MCP_PATH", "bp", "init_app"]

#: Where the app serves MCP (the path MCP clients and SDK examples use by default).
MCP_PATH = "/mcp"

bp = Blueprint("mcp", __name__)

#: The request header naming the MCP protocol version a client speaks (after initialization).
PROTOCOL_VERSION_HEADER = "MCP-Protocol-Version"
#: Response headers the ASGI app sends that Flask/gunicorn set themselves.
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


def init_app(app: Flask) -> None:
    """Serve MCP at :data:`MCP_PATH`, and configure the external MCP servers ``McpToolOp`` may call.

    :raises McpServerError: naming a bad server of ``FLOWBRIDGE_MCP_SERVERS``, or a URL that
        ``FLOWBRIDGE_ALLOWED_HOSTS`` does not allow.
    """
    install_mcp_servers(app.config.get("FLOWBRIDGE_MCP_SERVERS"), app.config.get("FLOWBRIDGE_ALLOWED_HOSTS", ()))
    # A manager runs per request here: its start/stop lines at INFO would be two log lines per call.
    for name in ("mcp.server.streamable_http_manager", "mcp.server.streamable_http"):
        logging.getLogger(name).setLevel(logging.WARNING)
    app.register_blueprint(bp)


@bp.route(MCP_PATH, methods=["GET", "DELETE"])
def mcp_not_here() -> Response:
    """No session stream and no sessions to end in stateless mode: 405, as the transport spec allows."""
    response = _rpc_error(405, -32600, "this MCP server is stateless: send JSON-RPC messages with POST")
    response.headers["Allow"] = "POST"
    return response


@bp.post(MCP_PATH)
@async_route
async def mcp_post() -> Response:
    """One JSON-RPC message (or batch) → the SDK's answer."""
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    from ops.mcp_server import build_server

    body = request.get_data(cache=False)
    refused = _refusal(body)
    if refused is not None:
        return refused
    manager = StreamableHTTPSessionManager(app=build_server(), json_response=True, stateless=True)
    exchange = _Exchange(body)
    async with manager.run():
        await manager.handle_request(_scope(), exchange.receive, exchange.send)
    return exchange.response()


def _refusal(body: bytes) -> Response | None:
    """The answer to a message the SDK would refuse without saying what is wrong, else None.

    The SDK answers a wrong Content-Type in plain text, an unknown ``MCP-Protocol-Version`` with a
    message about ``params._meta``, a lone surrogate as a broken hex escape, and takes a request
    whose ``id`` is neither a string nor an integer for a notification (202, no answer ever); params
    of the wrong type get a bare "Invalid request parameters".
    Bodies are parsed with the limits of every other JSON body of the app.
    """
    from mcp_types.version import KNOWN_PROTOCOL_VERSIONS  # the SDK loads when MCP is first used

    if not request.is_json:
        return _rpc_error(415, -32600, "Invalid Request: send JSON-RPC messages with "
                                       "Content-Type: application/json")
    version = request.headers.get(PROTOCOL_VERSION_HEADER)
    if version is not None and version not in KNOWN_PROTOCOL_VERSIONS:
        return _rpc_error(400, -32600, f"Invalid Request: unsupported {PROTOCOL_VERSION_HEADER} "
                                       f"{version[:40]!r}; this server speaks {', '.join(KNOWN_PROTOCOL_VERSIONS)}")
    try:
        message = loads_json(body)
    except JSONInputError as exc:
        return _rpc_error(400, -32700, f"Parse error: {exc}")
    for item in message if isinstance(message, list) else [message]:
        ident = item["id"] if isinstance(item, dict) and "method" in item and "id" in item else 0
        if isinstance(ident, bool) or not isinstance(ident, (str, int)):
            return _rpc_error(400, -32600, "Invalid Request: a request's id must be a string or an integer, "
                                           f"got {json.dumps(ident)[:40]}")
    wrong = _wrong_params(message) if isinstance(message, dict) and "id" in message else None
    if wrong is not None:  # a request's own error: HTTP 200, as the SDK answers one
        return _rpc_error(200, -32602, f"Invalid params: {wrong}", message["id"])
    return None


def _wrong_params(message: dict[str, Any]) -> str | None:
    """What is wrong with the params of the methods clients call most, named (the SDK's answer names nothing)."""
    method, params = message.get("method"), message.get("params", {})
    if method == "tools/call" or (isinstance(method, str) and method.endswith("/list")):
        if not isinstance(params, dict):
            return None  # not a well-formed request at all: the SDK's 400 says so
        if method == "tools/call":
            if not isinstance(params.get("name"), str):
                return "params.name (the tool to call) must be a string"
            if not isinstance(params.get("arguments", {}), dict):
                return "params.arguments must be an object of the tool's arguments"
        elif not isinstance(params.get("cursor", ""), str):
            return "params.cursor must be a string (the nextCursor of the page before)"
    return None


def _rpc_error(status: int, code: int, message: str, ident: str | int | None = None) -> Response:
    body = {"jsonrpc": "2.0", "id": ident, "error": {"code": code, "message": message}}
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _scope() -> dict[str, Any]:
    """The ASGI scope of the current Flask request."""
    environ = request.environ
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()]
    server_port = int(environ.get("SERVER_PORT") or 0)
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": environ.get("SERVER_PROTOCOL", "HTTP/1.1").removeprefix("HTTP/"),
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.path.encode("latin-1", "replace"),
        "query_string": request.query_string,
        "root_path": "",
        "headers": headers,
        "client": (request.remote_addr or "", 0),
        "server": (environ.get("SERVER_NAME", ""), server_port),
    }


class _Exchange:
    """The ASGI ``receive``/``send`` pair of one request: the body in, the response collected."""

    def __init__(self, body: bytes) -> None:
        self._body: bytes | None = body
        self._done = anyio.Event()
        self.status = 500
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []

    async def receive(self) -> dict[str, Any]:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._done.wait()  # the client "disconnects" once the whole response is sent
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ())]
        elif message["type"] == "http.response.body":
            self.chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                self._done.set()

    def response(self) -> Response:
        response = Response(b"".join(self.chunks), status=self.status)
        response.headers.pop("Content-Type", None)
        for name, value in self.headers:
            if name.lower() not in _HOP_HEADERS:
                response.headers.add(name, value)
        response.headers["Cache-Control"] = "no-store"
        return response
