"""Total deadlines of LLM calls: a watchdog cuts a call's connection when its time is up.

``requests`` has per-read timeouts only: an upstream that sends a byte every second
never trips one, and holds the calling (pool) thread for as long as it likes. So each
call of the LLM client gets a :class:`CallGuard` whose end is the earlier of

* ``LLM_TOTAL_TIMEOUT`` after the call started (retries and their waits included), and
* the deadline of the work the call serves, if any: :func:`async_utils.current_deadline`,
  which the web app sets per HTTP request and which reaches the pool threads because
  the pool runs each call in a copy of the caller's context. It holds as long as it
  ``binds()``: a request that ended in time (or whose event stream started) releases
  the calls it leaves running, e.g. of a background task, to ``LLM_TOTAL_TIMEOUT``.

One watchdog thread per process shuts the call's socket down when that end passes; the
blocked read fails at once and the transport raises :class:`LLMTimeoutError` naming the
limit. A stream is guarded like this until its first event; after that the guard is
re-armed after every event with the stall limit (``LLM_TIMEOUT``) instead.

The socket is found through the connection class of the transport's sessions
(:class:`WatchedAdapter`): a connection attaches itself to the guard of the call that
sends on it, in that thread.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from async_utils import current_deadline

__all__ = ["CallGuard", "WatchedAdapter"]

_current = threading.local()  # .guard: the guard of the call this thread is sending for


class CallGuard:
    """The end of one call, and the connection to cut when it passes.

    :param total: seconds the call may take (``LLM_TOTAL_TIMEOUT``).
    :param setting: how to name ``total`` in messages.
    """

    def __init__(self, total: float, setting: str = "LLM_TOTAL_TIMEOUT") -> None:
        now = time.monotonic()
        self._total = (now + total, f"{setting}={total:g}s")
        at, why = self._total
        outer = current_deadline()
        self._outer = outer if outer is not None and outer.at < at else None
        if self._outer is not None:
            at, why = self._outer.at, "the deadline of the request it serves"
        self.at = at
        self.why = why
        self.expired = False
        self._active = True
        self._connection: HTTPConnection | None = None
        self._lock = threading.Lock()
        self._next_check = at  # the earliest time the watchdog looks at this guard
        _watchdog().schedule(self, at)

    def left(self) -> float:
        """Seconds until the end (negative once it passed)."""
        return self.at - time.monotonic()

    def total_left(self) -> float:
        """Seconds until the call's own limit (``LLM_TOTAL_TIMEOUT``), which nothing lifts: a bound
        for socket timeouts. The request's deadline is left to the watchdog, as a request that
        ends in time releases the calls it leaves running."""
        return self._total[0] - time.monotonic()

    def rearm(self, seconds: float, why: str) -> None:
        """Move the end to ``seconds`` from now, for the reason ``why`` (a stream's stall limit)."""
        with self._lock:
            if not self._active:
                return
            self._outer = None
            self.at = time.monotonic() + seconds
            self.why = why
            sooner = self.at < self._next_check
            if sooner:
                self._next_check = self.at
        if sooner:  # a later end is found when the watchdog looks at the earlier one
            _watchdog().schedule(self, self.at)

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        """Connections used by this thread meanwhile attach to this guard."""
        previous = getattr(_current, "guard", None)
        _current.guard = self
        try:
            yield
        finally:
            _current.guard = previous

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connection = connection
        if self.expired:
            _cut(connection)

    def cancel(self) -> None:
        """The call is over: never cut anything; idempotent."""
        with self._lock:
            self._active = False
            self._connection = None

    def _due(self) -> float | None:
        """Called by the watchdog at or after a scheduled time: when to look again, or None."""
        with self._lock:
            if not self._active:
                return None
            if time.monotonic() < self.at:
                self._next_check = self.at  # re-armed since it was scheduled
                return self.at
            if self._outer is not None and not self._outer.binds():
                self._outer = None  # the request let the call go in time: the call's own limit is left
                self.at, self.why = self._total
                self._next_check = self.at
                return self.at
            self.expired = True
            self._active = False
            connection, self._connection = self._connection, None
        if connection is not None:
            _cut(connection)
        return None


def _cut(connection: HTTPConnection) -> None:
    """Shut ``connection``'s socket down, so a read blocked on it returns at once."""
    sock: Any = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):  # closed already
            sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread that calls each guard's ``_due`` when its time comes."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._heap: list[tuple[float, int, CallGuard]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        threading.Thread(target=self._run, name="llm-deadlines", daemon=True).start()

    def schedule(self, guard: CallGuard, at: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (at, next(self._order), guard))
            if self._heap[0][2] is guard:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                _, _, guard = heapq.heappop(self._heap)
            again = guard._due()
            if again is not None:
                self.schedule(guard, again)


_watchdog_lock = threading.Lock()
_the_watchdog: _Watchdog | None = None


def _watchdog() -> _Watchdog:
    """This process's watchdog; a forked child starts its own (threads do not survive a fork)."""
    global _the_watchdog
    dog = _the_watchdog
    if dog is not None and dog.pid == os.getpid():
        return dog
    with _watchdog_lock:
        if _the_watchdog is None or _the_watchdog.pid != os.getpid():
            _the_watchdog = _Watchdog()
        return _the_watchdog


def _after_fork_in_child() -> None:
    global _watchdog_lock
    _watchdog_lock = threading.Lock()  # another thread may have held it at fork time


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- connections that find their call's guard --------------------------------------------------

class _WatchedMixin:
    def request(self, *args: Any, **kwargs: Any) -> Any:
        guard: CallGuard | None = getattr(_current, "guard", None)
        if guard is not None:
            guard.attach(self)  # type: ignore[arg-type]
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_WatchedMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedMixin, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class WatchedAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections attach to the :class:`CallGuard` of the call sending on them."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
