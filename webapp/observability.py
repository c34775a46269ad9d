"""Request IDs, structured logs and Prometheus metrics (being built for issue 7)."""

from __future__ import annotations

from typing import Any

from flask import Flask


def init_app(app: Flask) -> None:
    """Install request IDs, logging and ``/metrics`` on ``app`` (nothing yet)."""


def gunicorn_on_starting(server: Any) -> None:
    """Called by gunicorn.conf.py's ``on_starting`` in the master, before workers fork."""


def gunicorn_child_exit(server: Any, worker: Any) -> None:
    """Called by gunicorn.conf.py's ``child_exit`` in the master when a worker exits."""
