"""The exceptions raised by :mod:`llm_client`.

Every error the client raises derives from :class:`LLMError`; exceptions of
``requests`` and ``urllib3`` are translated in one place (``llm_client._http``:
``Transport`` and ``stream_read_error``) and never leak out::

    LLMError
    ├── LLMConfigError            (also ValueError) a bad setting or env variable
    ├── LLMConnectionError        the server could not be reached
    │   └── LLMTimeoutError       connect or read timeout, the call's total deadline, a stalled stream
    ├── LLMStatusError            the server answered 4xx/5xx (.status_code, .body)
    │   └── LLMRateLimitError     429
    ├── LLMResponseError          a 2xx answer we cannot parse (.body)
    └── LLMQueueFullError         the async bridge has no free slot

Messages never contain the API key: bodies are truncated and scrubbed of any
``Bearer`` token before they are stored on the exception.
"""

from __future__ import annotations

import re

__all__ = [
    "LLMConfigError",
    "LLMConnectionError",
    "LLMError",
    "LLMQueueFullError",
    "LLMRateLimitError",
    "LLMResponseError",
    "LLMStatusError",
    "LLMTimeoutError",
]

#: How much of an upstream body an exception keeps.
_MAX_BODY_CHARS = 2000
_BEARER = re.compile(r"(Bearer\s+)[^\s\"']+", re.IGNORECASE)
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}")


def scrub(text: str, secret: str | None = None) -> str:
    """Remove ``secret`` and anything that looks like a bearer token from ``text``."""
    if secret:
        text = text.replace(secret, "***")
    text = _BEARER.sub(r"\1***", text)
    return _KEY_LIKE.sub("sk-***", text)


class LLMError(Exception):
    """Base class of every error raised by the LLM client."""


class LLMConfigError(LLMError, ValueError):
    """A setting (keyword argument or environment variable) has a bad value."""


class LLMConnectionError(LLMError):
    """The upstream server could not be reached, or dropped the connection."""


class LLMTimeoutError(LLMConnectionError):
    """Connecting to, or reading from, the upstream server timed out; or the call ran past its
    total deadline (``LLM_TOTAL_TIMEOUT`` or the deadline of the request it serves); or a stream
    stalled. The message names the setting that ended it."""


class LLMStatusError(LLMError):
    """The upstream server answered with an HTTP error status.

    :param status_code: the HTTP status code.
    :param body: the (truncated, scrubbed) response body.
    :param retry_after: seconds the server asked us to wait, if it said so.
    """

    def __init__(
        self, message: str, *, status_code: int, body: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body[:_MAX_BODY_CHARS]
        self.retry_after = retry_after


class LLMRateLimitError(LLMStatusError):
    """The upstream server answered 429 Too Many Requests (after all retries); ``retry_after``
    holds the seconds its last ``Retry-After`` asked for (a number or an HTTP date), if any."""


class LLMResponseError(LLMError):
    """The upstream server answered 2xx with a body that is not what the API promises."""

    def __init__(self, message: str, *, body: str = "") -> None:
        super().__init__(message)
        self.body = body[:_MAX_BODY_CHARS]


class LLMQueueFullError(LLMError):
    """Every worker of the async bridge is busy and its queue is full.

    The web app turns this into ``503 Service Unavailable`` with ``Retry-After``.
    """
