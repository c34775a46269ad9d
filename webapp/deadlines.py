"""Per-request deadlines and backpressure (being built for issue 7)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Install the request deadline on ``app`` (nothing yet)."""
