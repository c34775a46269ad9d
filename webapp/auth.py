"""API keys: optional bearer-token authentication of the API (being built for issue 7)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Install the authentication checks on ``app`` (nothing yet)."""
