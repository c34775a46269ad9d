"""Per-request deadlines; the capacity guard (work slots, wait queue) is installed with them.

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

When an LLM call is cut off by the deadline, the request is answered at once
and the call ends too: the client closes its upstream connection at the
earlier of ``LLM_TOTAL_TIMEOUT`` and this request's deadline (see
:func:`async_utils.current_deadline`), so its pool thread is free again.

**Capacity** (work slots, the bounded wait queue, threads reserved for health
checks) is :mod:`webapp.guards.capacity`, installed by :func:`init_app` before
the deadline: a request's deadline starts once it has a work slot.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, current_app, g, has_request_context, request
from werkzeug.datastructures import ImmutableMultiDict

from async_utils.flask_bridge import set_deadline

from ..errors import APIError
from . import capacity
from .capacity import LIGHT_PATHS

#: The longest ``?wait=`` a long-polling route accepts (the task routes refuse more).
MAX_WAIT_SECONDS = 60.0

__all__ = ["LIGHT_PATHS", "DeadlineExceeded", "init_app", "remaining"]

#: Routes whose ``?wait=`` long poll is capped by the deadline.
_WAIT_ENDPOINTS = frozenset({"tasks.run_task", "tasks.task_result"})
#: A capped ``?wait=`` ends this long before the deadline (at most), to answer in time.
_WAIT_MARGIN = 0.5


class DeadlineExceeded(APIError):
    """The request ran past ``FLOWBRIDGE_REQUEST_TIMEOUT``: 504 ``deadline_exceeded``."""

    def __init__(self, what: str, timeout: float) -> None:
        super().__init__(f"{what} took longer than FLOWBRIDGE_REQUEST_TIMEOUT={timeout:g}s",
                         status=504, type="deadline_exceeded")


def remaining() -> float | None:
    """Seconds left before the current request's deadline (may be negative); None outside a request."""
    deadline = g.get("deadline_at") if has_request_context() else None
    return None if deadline is None else deadline - time.monotonic()


def init_app(app: Flask) -> None:
    """Install the capacity guard (:mod:`webapp.guards.capacity`), then the request deadline, on ``app``.

    :raises ConfigError: on a bad capacity setting (see :func:`webapp.guards.capacity.init_app`).
    """
    capacity.init_app(app)
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_teardown)


def _start() -> None:
    timeout = current_app.config["FLOWBRIDGE_REQUEST_TIMEOUT"]
    g.deadline_at = time.monotonic() + timeout
    what = f"{request.method} {request.path}"
    set_deadline(g.deadline_at, lambda: DeadlineExceeded(what, timeout))
    if request.endpoint in _WAIT_ENDPOINTS:
        _cap_wait(timeout)


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
    return response


def _teardown(_exc: BaseException | None) -> None:
    set_deadline(None)
