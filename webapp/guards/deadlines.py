"""Per-request deadlines and backpressure.

**Deadline** (``FLOWBRIDGE_REQUEST_TIMEOUT``, seconds). gunicorn's ``--timeout``
only restarts a worker whose main loop stops answering; gthread workers never
enforce it on a request. So every request gets its own deadline, set before
the view runs:

- the coroutine of an ``async def`` view (:func:`async_utils.async_route`), and
  any other coroutine the request runs through :func:`async_utils.AsyncHelper.run_async_in_sync`
  (coroutine functions under ``/invoke``, ops run by the pages), is cancelled when
  it passes, and the request answers **504** ``deadline_exceeded``. This covers
  ``POST /api/chat`` (not streamed), ``/api/ops/<name>`` and ``/api/flows...``;
- ``?wait=S`` of ``/api/task/run`` and ``/api/task/result`` is capped so the
  long poll returns (202 / ``status: processing``) just before the deadline;
- a plain ``/invoke`` function runs on a pool thread while the request waits,
  so the request answers 504 at the deadline; Python cannot stop a thread, so
  the function itself runs on to its end (:mod:`webapp.functions.invoke`).
  Other plain Python code in a view cannot be interrupted;
- event streams are exempt once their response starts: they may run as long as
  the client listens, and their heartbeats show they are alive. Everything
  before the first event (checking the input, opening the upstream stream) is
  still under the deadline.

When an LLM call is cut off by the deadline, the request is answered at once,
but a call already running on the LLM pool cannot be interrupted: its pool
thread (and slot) stays busy until the upstream answers or ``LLM_TIMEOUT``
(per attempt, ``LLM_MAX_RETRIES`` retries) ends it. ``LLM_ASYNC_TIMEOUT``
bounds the wait of one ``*_async`` call the same way and answers 504
``upstream_timeout``; set it below ``FLOWBRIDGE_REQUEST_TIMEOUT`` for that more
specific answer, and ``LLM_TIMEOUT`` to bound how long a slot stays taken.

**Reserved threads** (``FLOWBRIDGE_RESERVED_THREADS``). gthread hands each
request to one of ``--threads`` threads; when all are busy, new requests wait
in the worker's queue, behind LLM calls that may take seconds, and so would
``GET /healthz``. With ``N`` reserved, a request that would take one of the
last ``N`` free threads answers **503** ``overloaded`` with ``Retry-After`` at
once, so health and status checks (:data:`LIGHT_PATHS`, never refused) always
find a thread within a few milliseconds. Beyond it the LLM pool itself refuses
calls when ``LLM_ASYNC_WORKERS + LLM_ASYNC_QUEUE_SIZE`` are taken (also 503).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import Flask, Response, current_app, g, has_request_context, request
from werkzeug.datastructures import ImmutableMultiDict

from async_utils.flask_bridge import set_deadline

from ..config import ConfigError, _number
from ..errors import RETRY_AFTER_SECONDS, APIError, error_response

#: The longest ``?wait=`` a long-polling route accepts (the task routes refuse more).
MAX_WAIT_SECONDS = 60.0

__all__ = ["LIGHT_PATHS", "DeadlineExceeded", "init_app", "remaining"]

#: Health and status routes: never refused by the reserved-threads guard.
LIGHT_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/info"})
#: Routes whose ``?wait=`` long poll is capped by the deadline.
_WAIT_ENDPOINTS = frozenset({"tasks.run_task", "tasks.task_result"})
#: A capped ``?wait=`` ends this long before the deadline (at most), to answer in time.
_WAIT_MARGIN = 0.5
_EXTENSION = "flowbridge_deadlines"


class DeadlineExceeded(APIError):
    """The request ran past ``FLOWBRIDGE_REQUEST_TIMEOUT``: 504 ``deadline_exceeded``."""

    def __init__(self, what: str, timeout: float) -> None:
        super().__init__(f"{what} took longer than FLOWBRIDGE_REQUEST_TIMEOUT={timeout:g}s",
                         status=504, type="deadline_exceeded")


class _Threads:
    """Request threads of this process serving requests that are not health or status checks."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0
        self._lock = threading.Lock()

    def take(self) -> _Slot | None:
        with self._lock:
            if self.busy >= self.limit:
                return None
            self.busy += 1
        return _Slot(self)

    def give_back(self) -> None:
        with self._lock:
            self.busy -= 1


class _Slot:
    """One taken thread; released once, when the request is torn down or its stream closed."""

    def __init__(self, threads: _Threads) -> None:
        self._threads: _Threads | None = threads

    def release(self) -> None:
        threads, self._threads = self._threads, None
        if threads is not None:
            threads.give_back()


def remaining() -> float | None:
    """Seconds left before the current request's deadline (may be negative); None outside a request."""
    deadline = g.get("deadline_at") if has_request_context() else None
    return None if deadline is None else deadline - time.monotonic()


def init_app(app: Flask) -> None:
    """Install the request deadline and the reserved-threads guard on ``app``.

    :raises ConfigError: when ``FLOWBRIDGE_RESERVED_THREADS`` is not an integer >= 0
        smaller than the request threads of a worker.
    """
    config = app.config
    reserved = _number("FLOWBRIDGE_RESERVED_THREADS", config.get("FLOWBRIDGE_RESERVED_THREADS", 0), int, minimum=0)
    threads = config["FLOWBRIDGE_REQUEST_THREADS"]
    if reserved and reserved >= threads:
        raise ConfigError(f"FLOWBRIDGE_RESERVED_THREADS must be less than the request threads of a worker "
                          f"(GUNICORN_THREADS={threads}), got {reserved}")
    config["FLOWBRIDGE_RESERVED_THREADS"] = reserved
    app.extensions[_EXTENSION] = _Threads(threads - reserved) if reserved else None
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_teardown)


def _start() -> Response | None:
    threads: _Threads | None = current_app.extensions.get(_EXTENSION)
    if threads is not None and request.path not in LIGHT_PATHS and request.endpoint != "static":
        slot = threads.take()
        if slot is None:
            return error_response(
                503, "overloaded", f"all {threads.limit} request threads of this worker are busy; retry shortly",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        g.thread_slot = slot
    timeout = current_app.config["FLOWBRIDGE_REQUEST_TIMEOUT"]
    g.deadline_at = time.monotonic() + timeout
    what = f"{request.method} {request.path}"
    set_deadline(g.deadline_at, lambda: DeadlineExceeded(what, timeout))
    if request.endpoint in _WAIT_ENDPOINTS:
        _cap_wait(timeout)
    return None


def _cap_wait(timeout: float) -> None:
    """Lower ``?wait=`` so the long poll answers before the deadline; the view sees the capped value."""
    try:
        wait = float(request.args["wait"])
    except (KeyError, ValueError):
        return  # absent, or for the view to refuse
    if not 0 <= wait <= MAX_WAIT_SECONDS:
        return  # for the view to refuse
    left = remaining() or 0.0
    cap = max(0.0, left - min(_WAIT_MARGIN, timeout / 10))
    if wait > cap:
        args: dict[str, Any] = request.args.to_dict(flat=False)
        args["wait"] = [f"{cap:.3f}"]
        request.args = ImmutableMultiDict(args)  # type: ignore[misc]


def _finish(response: Response) -> Response:
    if response.is_streamed:
        set_deadline(None)  # event streams run as long as the client listens (see the module docstring)
        slot: _Slot | None = g.pop("thread_slot", None)
        if slot is not None:
            # The thread is busy until the stream ends; the server closes the body then (PEP 3333),
            # also when the client went away. Teardown runs earlier, when the view returns.
            response.call_on_close(slot.release)
    return response


def _teardown(_exc: BaseException | None) -> None:
    set_deadline(None)
    slot: _Slot | None = g.pop("thread_slot", None)
    if slot is not None:  # a response built in memory: its thread is free as soon as it is sent
        slot.release()
