"""Error handlers: every API error is JSON ``{"error": {"type": ..., "message": ...}}``.

Pages get a small HTML error page instead; the choice is made by path
(``/api/*`` and ``/invoke/*`` are API routes) and the ``Accept`` header.
"""

from __future__ import annotations

import asyncio
import logging

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from llm_client import (
    LLMConnectionError,
    LLMError,
    LLMQueueFullError,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
)

logger = logging.getLogger(__name__)

#: Seconds a client is told to wait when the LLM pool is saturated.
RETRY_AFTER_SECONDS = 1


class APIError(Exception):
    """An error a view raises to answer with a JSON error body.

    :param status: HTTP status code.
    :param type: a short machine-readable name, e.g. ``"invalid_request"``.
    """

    def __init__(self, message: str, *, status: int = 400, type: str = "invalid_request") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type


def error_response(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """The one shape of an error reply: JSON for API clients, HTML for browsers."""
    if _wants_html():
        response = Response(
            render_template("error.html", status=status, type=type_, message=message),
            status=status,
            mimetype="text/html",
        )
    else:
        response = jsonify({"error": {"type": type_, "message": message}})
        response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _wants_html() -> bool:
    if request.path.startswith(("/api/", "/invoke/", "/functions")):
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api_error(exc: APIError) -> Response:
        return error_response(exc.status, exc.type, exc.message)

    @app.errorhandler(LLMQueueFullError)
    def _queue_full(exc: LLMQueueFullError) -> Response:
        return error_response(503, "overloaded", str(exc), {"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.errorhandler(LLMTimeoutError)
    def _upstream_timeout(exc: LLMTimeoutError) -> Response:
        return error_response(504, "upstream_timeout", str(exc))

    @app.errorhandler(asyncio.TimeoutError)
    def _bridge_timeout(exc: asyncio.TimeoutError) -> Response:
        return error_response(504, "upstream_timeout", "the LLM call took longer than LLM_ASYNC_TIMEOUT")

    @app.errorhandler(LLMStatusError)
    def _upstream_status(exc: LLMStatusError) -> Response:
        return error_response(502, "upstream_error", str(exc))

    @app.errorhandler(LLMConnectionError)
    def _upstream_down(exc: LLMConnectionError) -> Response:
        return error_response(502, "upstream_unreachable", str(exc))

    @app.errorhandler(LLMResponseError)
    def _upstream_garbage(exc: LLMResponseError) -> Response:
        return error_response(502, "upstream_bad_response", str(exc))

    @app.errorhandler(LLMError)
    def _llm_error(exc: LLMError) -> Response:
        return error_response(502, "upstream_error", str(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        name = (exc.name or "error").lower().replace(" ", "_")
        headers = dict(exc.get_headers()) if exc.code == 405 else {}
        headers.pop("Content-Type", None)
        return error_response(exc.code or 500, name, exc.description or exc.name, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if app.testing and app.config.get("PROPAGATE_EXCEPTIONS"):
            raise exc
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal server error; see the server log")
