"""HTTP for the clients: a ``requests.Session`` per thread, and the LLM client's POST with retries.

:class:`Transport` is the one place where exceptions of requests become
:class:`~llm_client.LLMError` for :class:`~llm_client.LLMClient`; the API key
is scrubbed from every error it raises.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from async_utils.per_thread import PerThread

from ._retry import parse_retry_after, retry_delay, should_retry_status
from ._settings import LLMSettings
from .exceptions import (
    LLMConnectionError,
    LLMError,
    LLMRateLimitError,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
    scrub,
)
from .observe import report_call

logger = logging.getLogger("llm_client")

#: Connections each thread's session of the LLM client keeps per host. One thread needs one
#: at a time, plus one while it holds an unfinished stream open.
_CONNECTIONS_PER_THREAD = 4


class ThreadSessions:
    """One ``requests.Session`` per thread: requests does not promise a Session is thread-safe.

    :meth:`close` closes every thread's session; afterwards :meth:`get` raises
    ``RuntimeError(closed_message)``. A forked child makes its own sessions.

    :param headers: sent with every request (e.g. ``Authorization``).
    :param pool_maxsize: connections each session keeps per host (requests' default when None).
    """

    def __init__(self, headers: Mapping[str, str] | None = None, *, pool_maxsize: int | None = None,
                 closed_message: str = "the client is closed") -> None:
        self._headers = dict(headers or {})
        self._pool_maxsize = pool_maxsize
        self._closed_message = closed_message
        self._sessions = PerThread(self._new_session, requests.Session.close)
        self.closed = False

    def get(self) -> requests.Session:
        """This thread's session, made on first use."""
        if self.closed:
            raise RuntimeError(self._closed_message)
        return self._sessions.get()

    def close(self) -> None:
        """Close every thread's session; idempotent. Responses being streamed keep working until closed."""
        self.closed = True
        self._sessions.close()

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        if self._pool_maxsize is not None:
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self._pool_maxsize, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        session.headers.update(self._headers)
        return session


class Transport:
    """Requests to one OpenAI-compatible server, as :class:`~llm_client.LLMClient` makes them."""

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        headers = {"Accept": "application/json"}
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        self.sessions = ThreadSessions(headers, pool_maxsize=_CONNECTIONS_PER_THREAD,
                                       closed_message="the LLM client is closed")

    def url(self, path: str) -> str:
        return self.settings.base_url + path

    def secret(self) -> str | None:
        key = self.settings.api_key
        return key.get_secret_value() if key is not None else None

    def get(self, path: str, timeout: float) -> requests.Response:
        """One GET, no retries; requests' exceptions pass through (for :meth:`LLMClient.ping`)."""
        return self.sessions.get().get(self.url(path), timeout=(timeout, timeout))

    def post(self, path: str, body: dict[str, Any], *, stream: bool = False) -> requests.Response:
        """POST ``body`` to ``path`` with retries; return a 2xx response.

        Retries connection failures, timeouts and retryable statuses (408, 409, 429,
        5xx) up to ``max_retries`` times, honouring ``Retry-After``.
        """
        settings = self.settings
        base = urlsplit(settings.base_url)
        where = f"POST {base.netloc}{base.path}{path}"
        attempts = settings.max_retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            started = time.perf_counter()
            try:
                response = self.sessions.get().post(
                    self.url(path), json=body, stream=stream, timeout=(settings.connect_timeout, settings.timeout)
                )
            except requests.Timeout as exc:
                report_call(path, time.perf_counter() - started, "timeout")
                error: LLMError = LLMTimeoutError(f"{where} timed out ({_kind(exc)})")
                if last:
                    raise error from exc
                retry_after = None
            except requests.RequestException as exc:
                report_call(path, time.perf_counter() - started, "connection_error")
                error = LLMConnectionError(f"{where} failed: {_kind(exc)}")
                if last:
                    raise error from exc
                retry_after = None
            else:
                report_call(path, time.perf_counter() - started,
                            "ok" if response.status_code < 400 else f"http_{response.status_code}")
                if response.status_code < 400:
                    return response
                status_error = self._status_error(where, response)
                if last or not should_retry_status(response.status_code):
                    raise status_error
                error, retry_after = status_error, status_error.retry_after
            delay = retry_delay(
                attempt,
                initial=settings.retry_initial_delay,
                retry_after=retry_after,
                retry_after_cap=settings.retry_after_cap,
            )
            logger.info("%s (attempt %d of %d); retrying in %.2fs", error, attempt + 1, attempts, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self.sessions.close()

    def _status_error(self, where: str, response: requests.Response) -> LLMStatusError:
        secret = self.secret()
        with response:
            text = scrub(response.text, secret)
        detail = _error_message(response, text, secret)
        cls = LLMRateLimitError if response.status_code == 429 else LLMStatusError
        return cls(
            f"{where} answered {response.status_code}: {detail}",
            status_code=response.status_code,
            body=text,
            retry_after=parse_retry_after(response.headers),
        )


def read_json(response: requests.Response) -> dict[str, Any]:
    """The response's JSON object body (the response is closed).

    :raises LLMResponseError: when it is not JSON, or not an object.
    """
    with response:
        try:
            data = response.json()
        except ValueError:
            raise LLMResponseError("response body is not JSON", body=response.text[:500]) from None
    if not isinstance(data, dict):
        raise LLMResponseError("response body is not a JSON object", body=str(data)[:500])
    return data


def _error_message(response: requests.Response, text: str, secret: str | None) -> str:
    try:
        data = response.json()
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return scrub(str(error["message"]), secret)[:300]
        if isinstance(error, str):
            return scrub(error, secret)[:300]
    except ValueError:
        pass
    return (text.strip() or response.reason or "no body")[:300]


def _kind(exc: BaseException) -> str:
    """A short description of a requests exception without URLs or headers."""
    text = str(exc)
    for marker in ("Read timed out", "Connection refused", "Connection reset", "Connect timeout",
                   "Max retries exceeded", "RemoteDisconnected", "Name or service not known",
                   "timed out"):
        if marker in text:
            return f"{type(exc).__name__}: {marker}"
    return type(exc).__name__
