"""The flowbridge web app. ``create_app()`` is the only way to build it.

The names below are imported on first use, so that ``flowbridge`` commands
that never build the app (``chat``, ``batch``, ``--help``) start without
loading Flask and every part of the app.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .config import ConfigError
    from .errors import APIError
    from .extensions import get_llm_client

__all__ = ["APIError", "ConfigError", "create_app", "get_llm_client"]

#: Public name -> the module that defines it.
_HOMES = {"APIError": ".errors", "ConfigError": ".config", "create_app": ".app", "get_llm_client": ".extensions"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
