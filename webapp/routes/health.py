"""Health checks: ``/healthz`` (the process is alive) and ``/readyz`` (the upstream answers)."""

from __future__ import annotations

import os

from flask import Blueprint, Response, current_app, jsonify

from ..errors import error_response
from ..extensions import describe_upstream, get_llm_client

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Always cheap: never touches the LLM pool or the upstream."""
    return jsonify({"status": "ok", "pid": os.getpid()})


@bp.get("/readyz")
def readyz() -> Response:
    """200 when the upstream answers ``GET /models``, else 503."""
    upstream = describe_upstream(current_app)
    if get_llm_client().ping(timeout=current_app.config["READY_TIMEOUT"]):
        return jsonify({"status": "ready", **upstream})
    return error_response(
        503, "upstream_unavailable", f"the LLM server at {upstream['base_url']} does not answer",
        {"Retry-After": "5"},
    )
