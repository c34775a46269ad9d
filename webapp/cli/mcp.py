"""``flowbridge mcp``: serve the tool ops and tool flows as an MCP server on stdio.

An MCP client (Claude Desktop, an IDE, the ``mcp`` SDK's ``stdio_client``) starts this command and
speaks JSON-RPC on its stdin/stdout; logs go to stderr. The tools are those of ``GET /api/ops``
that have a tool schema, and the flows of ``FLOWBRIDGE_FLOWS`` that declare one
(:mod:`ops.mcp_server`). The same tools are served over HTTP by the web app at ``/mcp``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from .common import model_server

__all__ = ["add_mcp_parser", "run_mcp"]


def add_mcp_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "mcp", help="serve the tool ops and flows over MCP (stdio)",
        description="Serve every tool op and every flow with a tool schema as an MCP server on stdin/stdout, "
                    "for an MCP client that starts this command. Logs go to stderr. Ops use LLM_BASE_URL / "
                    "LLM_MODEL (without LLM_BASE_URL, the local model); McpToolOp's servers come from "
                    "FLOWBRIDGE_MCP_SERVERS, their URLs allowed by FLOWBRIDGE_ALLOWED_HOSTS. Over HTTP, the web "
                    "app serves the same tools at /mcp (flowbridge serve).",
        epilog='client configuration: {"command": "flowbridge", "args": ["mcp"]}')
    parser.set_defaults(handler=run_mcp)


def run_mcp(args: argparse.Namespace) -> int:
    import os

    import anyio

    from ops import OpApp

    from ..guards.outbound import install_mcp_servers

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with model_server(), OpApp():
        install_mcp_servers(None, os.environ.get("FLOWBRIDGE_ALLOWED_HOSTS", ""))
        anyio.run(_serve)
    return 0


async def _serve() -> None:
    from mcp.server.stdio import stdio_server

    from ops.mcp_server import build_server

    server = build_server()
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())
