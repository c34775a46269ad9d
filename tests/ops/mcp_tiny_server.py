"""A tiny MCP server for the ``McpToolOp`` tests, written with the ``mcp`` SDK's ``MCPServer``.

``python mcp_tiny_server.py`` serves stdio; ``python mcp_tiny_server.py --http PORT`` serves
streamable HTTP at ``http://127.0.0.1:PORT/mcp``.
"""

from __future__ import annotations

import sys
import time

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("tiny")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def shout(text: str, times: int = 1) -> str:
    """The text in capitals, repeated."""
    return " ".join([text.upper()] * times)


@server.tool()
def fail(reason: str) -> str:
    """Always fails, with the reason."""
    raise ToolError(f"failing on purpose: {reason}")


@server.tool()
def stall(seconds: float) -> str:
    """Blocks the server for that long (the caller's timeout is what ends the call)."""
    time.sleep(seconds)
    return "done"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
