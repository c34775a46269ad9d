"""Error handlers: every API error is JSON ``{"error": {"type": ..., "message": ...}}``.

Pages get a small HTML error page instead; the choice is made by path
(``/api/*`` and ``/invoke/*`` are API routes) and the ``Accept`` header.
"""

from __future__ import annotations

import asyncio
import logging
import math

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from llm_client import (
    LLMConnectionError,
    LLMError,
    LLMQueueFullError,
    LLMRateLimitError,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
)
from workflow import StoreUnavailableError

logger = logging.getLogger(__name__)

#: Seconds a client is told to wait when the LLM pool is saturated.
RETRY_AFTER_SECONDS = 1
#: The longest upstream ``Retry-After`` passed on to our clients (a rate limit of a day still says "later").
MAX_RETRY_AFTER_SECONDS = 300


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
    if request.path.startswith(("/api/", "/invoke/", "/functions", "/v1/", "/mcp")):
        return False
    return wants_html()


def wants_html() -> bool:
    """True when the client prefers HTML to JSON (a browser); curl and programs get JSON."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html" and "text/html" in request.headers.get("Accept", "")


#: How the message of an upstream's 400/422 begins (the upstream's own message follows).
UPSTREAM_REJECTED = "the upstream LLM server refused the request: "
#: How errors of the LLM client (and the bridge's timeout) and of the records database answer: first match wins.
_CLASSES: tuple[tuple[type[BaseException], int, str], ...] = (
    (StoreUnavailableError, 503, "store_unavailable"),
    (LLMQueueFullError, 503, "overloaded"),
    (LLMTimeoutError, 504, "upstream_timeout"),
    (asyncio.TimeoutError, 504, "upstream_timeout"),
    (LLMRateLimitError, 429, "rate_limited"),
    (LLMStatusError, 502, "upstream_error"),
    (LLMConnectionError, 502, "upstream_unreachable"),
    (LLMResponseError, 502, "upstream_bad_response"),
    (LLMError, 502, "upstream_error"),
)


def classify(exc: BaseException) -> tuple[int, str, str]:
    """``(HTTP status, error type, message)`` for an exception, as the API reports it.

    Used by the error handlers and by event streams, whose ``error`` events carry
    the same type as ``error_code``. Anything unexpected is a 500 whose message
    points to the server log, so internals never reach the client.
    """
    if isinstance(exc, LLMStatusError) and exc.status_code in (400, 422):
        # the upstream found the request itself invalid (too long a prompt, a malformed message...): the
        # client's to fix, not a server error to retry
        detail = str(exc).split(f"answered {exc.status_code}: ", 1)[-1]
        return 400, "upstream_rejected", f"{UPSTREAM_REJECTED}{detail}"
    for cls, status, type_ in _CLASSES:
        if isinstance(exc, cls):
            if isinstance(exc, asyncio.TimeoutError) and not isinstance(exc, LLMError):
                return status, type_, "the LLM call took longer than LLM_ASYNC_TIMEOUT"
            return status, type_, str(exc)
    if isinstance(exc, APIError):
        return exc.status, exc.type, exc.message
    return 500, "internal_error", "internal server error; see the server log"


def retry_after(exc: BaseException) -> int:
    """Whole seconds for ``Retry-After``: what a rate-limiting upstream asked for (capped at
    :data:`MAX_RETRY_AFTER_SECONDS`, at least 1), else :data:`RETRY_AFTER_SECONDS`."""
    seconds = getattr(exc, "retry_after", None) if isinstance(exc, LLMRateLimitError) else None
    if seconds is None:
        return RETRY_AFTER_SECONDS
    return max(1, min(MAX_RETRY_AFTER_SECONDS, math.ceil(seconds)))


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api_error(exc: APIError) -> Response:
        return error_response(exc.status, exc.type, exc.message)

    @app.errorhandler(LLMError)
    @app.errorhandler(asyncio.TimeoutError)
    @app.errorhandler(StoreUnavailableError)  # the database restarts: 503, try again shortly
    def _llm_error(exc: Exception) -> Response:
        status, type_, message = classify(exc)
        headers = {"Retry-After": str(retry_after(exc))} if status in (429, 503) else None
        return error_response(status, type_, message, headers)

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
