"""HTTP for the clients: a ``requests.Session`` per thread, and the LLM client's POST with retries.

This module is the one place where exceptions of requests and urllib3 become
:class:`~llm_client.LLMError` for :class:`~llm_client.LLMClient`: :class:`Transport`
for requests and whole bodies, :func:`stream_read_error` for a streamed body read
later. The API key is scrubbed from every error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from async_utils.per_thread import PerThread

from ._deadline import CallGuard, WatchedAdapter
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
from .observe import report_call, report_wait

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
    :param adapter: the ``HTTPAdapter`` class to mount (e.g. one that watches deadlines).
    """

    def __init__(self, headers: Mapping[str, str] | None = None, *, pool_maxsize: int | None = None,
                 closed_message: str = "the client is closed", adapter: type[HTTPAdapter] | None = None) -> None:
        self._headers = dict(headers or {})
        self._pool_maxsize = pool_maxsize
        self._adapter = adapter
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
        if self._pool_maxsize is not None or self._adapter is not None:
            adapter = (self._adapter or HTTPAdapter)(pool_connections=1, pool_maxsize=self._pool_maxsize or 10,
                                                     max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        session.headers.update(self._headers)
        return session


class Transport:
    """Requests to one OpenAI-compatible server, as :class:`~llm_client.LLMClient` makes them.

    Every call has a total deadline (:class:`~llm_client._deadline.CallGuard`): ``LLM_TOTAL_TIMEOUT``,
    or the deadline of the request it serves when that comes first. Retries do not restart it.
    """

    def __init__(self, settings: LLMSettings) -> None:
        self.settings = settings
        headers = {"Accept": "application/json"}
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        self.sessions = ThreadSessions(headers, pool_maxsize=_CONNECTIONS_PER_THREAD,
                                       closed_message="the LLM client is closed", adapter=WatchedAdapter)
        #: (auth, proxies/verify/cert) for base_url's host, from the environment: see :meth:`_send`
        self._environment: tuple[Any, dict[str, Any]] | None = None

    def url(self, path: str) -> str:
        return self.settings.base_url + path

    def secret(self) -> str | None:
        key = self.settings.api_key
        return key.get_secret_value() if key is not None else None

    def get(self, path: str, timeout: float) -> requests.Response:
        """One GET, no retries; requests' exceptions pass through (for :meth:`LLMClient.ping`)."""
        return self.sessions.get().get(self.url(path), timeout=(timeout, timeout))

    def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path`` with retries; the JSON object of the 2xx answer.

        :raises LLMResponseError: when the answer is not a JSON object.
        """
        guard = CallGuard(self.settings.total_timeout)
        try:
            return read_json(self._post(path, body, guard, stream=False))
        finally:
            guard.cancel()

    def open_stream(self, path: str, body: dict[str, Any]) -> tuple[requests.Response, CallGuard]:
        """POST ``body`` with retries and return the 2xx response unread, with the call's guard.

        The caller reads the body and must ``cancel()`` the guard when done (or re-arm it).
        """
        guard = CallGuard(self.settings.total_timeout)
        try:
            return self._post(path, body, guard, stream=True), guard
        except BaseException:
            guard.cancel()
            raise

    def _post(self, path: str, body: dict[str, Any], guard: CallGuard, *, stream: bool) -> requests.Response:
        """The attempts of one call; the body of a non-streamed answer is read here, under the guard.

        Retries connection failures, timeouts and retryable statuses (408, 409, 429,
        5xx) up to ``max_retries`` times, honouring ``Retry-After``, while the guard's
        time lasts; a wait that would outlast it is not made.
        """
        settings = self.settings
        base = urlsplit(settings.base_url)
        where = f"POST {base.netloc}{base.path}{path}"
        attempts = settings.max_retries + 1
        error: LLMError | None = None
        for attempt in range(attempts):
            last = attempt == attempts - 1
            left = guard.total_left()
            if guard.expired or left <= 0:
                raise _deadline_error(where, guard, error)
            started = time.perf_counter()
            try:
                with guard.sending():
                    response = self._send(path, body, (min(settings.connect_timeout, left),
                                                       min(settings.timeout, left)))
                    if response.status_code >= 300:  # a redirect is an error, like in the OpenAI SDK
                        status_error = self._status_error(where, response)
                    elif not stream:
                        response.content  # noqa: B018 - read the whole body now, under the guard
                if guard.expired:
                    raise requests.ConnectionError("cut at the deadline")
            except requests.RequestException as exc:
                if guard.expired or guard.total_left() <= 0:
                    report_call(path, time.perf_counter() - started, "timeout")
                    raise _deadline_error(where, guard, error) from exc
                if _is_timeout(exc):
                    report_call(path, time.perf_counter() - started, "timeout")
                    error = LLMTimeoutError(f"{where} timed out ({_kind(exc)}; LLM_TIMEOUT={settings.timeout:g}s, "
                                            f"LLM_CONNECT_TIMEOUT={settings.connect_timeout:g}s)")
                else:
                    report_call(path, time.perf_counter() - started, "connection_error")
                    error = LLMConnectionError(f"{where} failed: {_kind(exc)}")
                if last:
                    raise error from exc
                retry_after = None
            else:
                report_call(path, time.perf_counter() - started,
                            "ok" if response.status_code < 300 else f"http_{response.status_code}")
                if response.status_code < 300:
                    return response
                if last or not should_retry_status(response.status_code):
                    raise status_error
                error, retry_after = status_error, status_error.retry_after
            delay = retry_delay(
                attempt,
                initial=settings.retry_initial_delay,
                retry_after=retry_after,
                retry_after_cap=settings.retry_after_cap,
            )
            if delay >= guard.left():
                logger.info("%s (attempt %d of %d); no time left to retry (%s)", error, attempt + 1, attempts,
                            guard.why)
                raise error
            logger.info("%s (attempt %d of %d); retrying in %.2fs", error, attempt + 1, attempts, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self.sessions.close()

    def _send(self, path: str, body: dict[str, Any], timeout: tuple[float, float]) -> requests.Response:
        """``session.post(url, json=body, stream=True, allow_redirects=False)``, without redoing per call what
        depends only on the server: requests merges the environment's proxy and CA settings (reading
        ``os.environ``) and looks for a ``.netrc`` on every request; all our requests go to ``base_url``'s
        host, so that is resolved once per client (an upstream call's CPU fell by about a fifth)."""
        session = self.sessions.get()
        if self._environment is None:
            url = self.settings.base_url
            netrc = requests.utils.get_netrc_auth(url) if session.trust_env and not session.auth else None
            settings = session.merge_environment_settings(url, {}, None, None, None)
            settings.pop("stream", None)
            self._environment = (netrc or session.auth, settings)
        auth, settings = self._environment
        request = requests.PreparedRequest()
        request.prepare(method="POST", url=self.url(path), headers=session.headers, json=body, auth=auth,
                        cookies=session.cookies, hooks=session.hooks)
        report_wait()
        # allow_redirects=False: the key stays with base_url
        return session.send(request, stream=True, allow_redirects=False, timeout=timeout, **settings)

    def _status_error(self, where: str, response: requests.Response) -> LLMStatusError:
        secret = self.secret()
        with response:
            text = scrub(response.text, secret)
        detail = _error_message(response, text, secret)
        if response.is_redirect:
            detail = f"a redirect, which is not followed ({detail})"
        cls = LLMRateLimitError if response.status_code == 429 else LLMStatusError
        return cls(
            f"{where} answered {response.status_code}: {detail}",
            status_code=response.status_code,
            body=text,
            retry_after=parse_retry_after(response.headers),
        )


def _deadline_error(where: str, guard: CallGuard, last: LLMError | None) -> LLMTimeoutError:
    """The error of a call cut at its deadline; says what the last attempt got, if it failed."""
    before = f"; the last attempt: {last}" if last is not None else ""
    return LLMTimeoutError(f"{where} did not complete within {guard.why}{before}")


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


def stream_read_error(exc: BaseException, guard: CallGuard | None, stall: float | None, *,
                      started: bool) -> LLMError:
    """The error for ``exc``, met while reading a streamed body (requests', urllib3's or the socket's).

    Names the limit that ended the stream: the guard's (``LLM_TOTAL_TIMEOUT``, the request's
    deadline, or ``LLM_TIMEOUT`` between two events), or the socket's read timeout (``LLM_TIMEOUT``).

    :param started: whether an event had arrived (the stream stalled) or not (it never began).
    """
    if guard is not None and guard.expired:
        limit = guard.why
    elif _is_timeout(exc) and stall is not None:
        limit = f"LLM_TIMEOUT={stall:g}s"
    else:
        return LLMConnectionError(f"stream interrupted: {type(exc).__name__}")
    if started:
        return LLMTimeoutError(f"the upstream stream stalled: no event within {limit}")
    return LLMTimeoutError(f"the upstream stream sent no event within {limit}")


def _is_timeout(exc: BaseException) -> bool:
    """A connect or read timeout; requests wraps one met while reading a body in a ConnectionError."""
    return isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)) or any(
        isinstance(arg, urllib3.exceptions.TimeoutError) for arg in getattr(exc, "args", ()))


def _kind(exc: BaseException) -> str:
    """A short description of a requests exception without URLs or headers."""
    text = str(exc)
    for marker in ("Read timed out", "Connection refused", "Connection reset", "Connect timeout",
                   "Max retries exceeded", "RemoteDisconnected", "Name or service not known",
                   "timed out"):
        if marker in text:
            return f"{type(exc).__name__}: {marker}"
    return type(exc).__name__
