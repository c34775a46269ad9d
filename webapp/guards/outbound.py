"""What ops may reach outside: ``McpToolOp``'s MCP servers, their URLs checked as workflows' are.

``ops`` sits below ``workflow`` and cannot import its allow-list check, so the app and the
``flowbridge`` commands install it here: every URL server of ``FLOWBRIDGE_MCP_SERVERS`` must pass
:func:`workflow.outbound.check_outbound_url` with ``FLOWBRIDGE_ALLOWED_HOSTS`` (the hosts the
``http`` and ``llm`` nodes may reach), when configured and again before each connection. Command
servers run only the commands written in that configuration.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

__all__ = ["install_mcp_servers"]


def install_mcp_servers(servers: Any, allowed_hosts: str | Iterable[str]) -> None:
    """Configure ``McpToolOp``'s servers with the outbound allow-list.

    :param servers: a mapping, a JSON object text or the path of a YAML/JSON file (see
        :func:`ops.mcp_client.parse_mcp_servers`); ``None``: ``FLOWBRIDGE_MCP_SERVERS`` of the environment.
    :param allowed_hosts: ``FLOWBRIDGE_ALLOWED_HOSTS`` (text or list).
    :raises McpServerError: naming a bad server, or a URL whose host is not allowed.
    """
    from ops import configure_mcp_servers
    from workflow import check_outbound_url, parse_allowed_hosts

    allowed = parse_allowed_hosts(allowed_hosts)
    configure_mcp_servers(servers if servers is not None else os.environ.get("FLOWBRIDGE_MCP_SERVERS", ""),
                          url_checker=lambda url: check_outbound_url(url, allowed))
