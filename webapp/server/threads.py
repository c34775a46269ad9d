"""The worker's request threads: a pool whose caller never waits for a thread to start.

gthread hands each request to a ``concurrent.futures.ThreadPoolExecutor``. That
pool starts a thread inside ``submit`` when none is idle, and ``Thread.start``
returns only once the new thread has run: on the worker's main loop, which
accepts every connection (health checks' too). When a thousand streams start at
once, the loop made hundreds of such starts, each waiting its turn for the GIL
behind every running request, and a health check waited seconds in the listen
queue behind them. Starting all threads at boot avoided that but spread requests
over a thousand threads, each opening its own upstream connection (/api/chat
lost ~17% of its requests/s).

:class:`RequestThreads` does both jobs differently:

- **threads are started by a helper thread** (the "starter"), never by the caller
  of :meth:`~RequestThreads.submit`; work that finds no idle thread waits in a
  FIFO backlog, and each new thread begins with the oldest item there;
- **the thread idle for the shortest time takes the next request** (a stack, not
  a queue), so a steady load keeps reusing the same warm threads and their
  upstream connections;
- :meth:`~RequestThreads.submit_first` puts work at the front of the backlog
  (the worker's health and status checks).

It is a ``concurrent.futures.Executor``: ``submit`` returns a ``Future``, and
``shutdown`` lets idle threads end.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections import deque
from collections.abc import Callable
from concurrent import futures
from queue import SimpleQueue
from typing import Any

__all__ = ["RequestThreads"]

_Work = tuple[futures.Future, Callable[..., Any], tuple, dict]
#: what an idle thread is handed to end instead of work
_STOP = None


class _Idle:
    """One idle thread's mailbox: the work it is given, and the lock it waits on until then."""

    __slots__ = ("wake", "work")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.work: _Work | None = _STOP


class RequestThreads(futures.Executor):
    """At most ``max_threads`` threads, started off the caller's thread, reused last-idle-first."""

    def __init__(self, max_threads: int, name: str = "request") -> None:
        if max_threads < 1:
            raise ValueError(f"max_threads must be at least 1, got {max_threads}")
        self.max_threads = max_threads
        self._name = name
        self._lock = threading.Lock()
        self._idle: list[_Idle] = []  # a stack: the last to go idle is the first to work again
        self._backlog: deque[_Work] = deque()
        self._threads = 0  # started, or asked of the starter
        self._shutdown = False
        self._numbers = itertools.count(1)
        self._to_start: SimpleQueue[bool] = SimpleQueue()
        self._started: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
        self._starter = threading.Thread(target=self._start_threads, name=f"{name}-starter", daemon=True)
        self._starter.start()
        # Like ThreadPoolExecutor's: at interpreter exit, idle threads are told to end before Python joins
        # the non-daemon ones (a worker that leaves its loop without shutting the pool down still exits).
        threading._register_atexit(self.shutdown, wait=False)  # type: ignore[attr-defined]

    @property
    def threads(self) -> int:
        """Threads running or being started."""
        return self._threads

    @property
    def idle(self) -> int:
        """Threads waiting for work."""
        return len(self._idle)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future:
        return self._submit((futures.Future(), fn, args, kwargs), first=False)

    def submit_first(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future:
        """:meth:`submit`, but ahead of all the work already waiting for a thread."""
        return self._submit((futures.Future(), fn, args, kwargs), first=True)

    def _submit(self, work: _Work, first: bool) -> futures.Future:
        start = False
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._idle:
                idle = self._idle.pop()
                idle.work = work
                idle.wake.release()
                return work[0]
            self._backlog.appendleft(work) if first else self._backlog.append(work)
            if self._threads < self.max_threads:
                self._threads += 1
                start = True
        if start:
            self._to_start.put(True)
        return work[0]

    def _start_threads(self) -> None:
        while self._to_start.get():
            thread = threading.Thread(target=self._serve, name=f"{self._name}-{next(self._numbers)}")
            try:
                thread.start()
                self._started.add(thread)
            except RuntimeError:  # "can't start new thread": the work waits for a thread that exists
                with self._lock:
                    self._threads -= 1

    def _serve(self) -> None:
        idle = _Idle()
        while True:
            with self._lock:
                work = self._backlog.popleft() if self._backlog else None
                if work is None:
                    if self._shutdown:
                        self._threads -= 1
                        return
                    self._idle.append(idle)
            if work is None:
                idle.wake.acquire()  # until handed work, or told to stop
                work, idle.work = idle.work, _STOP
                if work is _STOP:
                    with self._lock:
                        self._threads -= 1
                    return
            _run(work)
            del work  # drop the request's references while idle

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; idle threads end now, busy ones after the work they have (and the backlog's)."""
        with self._lock:
            self._shutdown = True
            dropped = list(self._backlog) if cancel_futures else []
            if cancel_futures:
                self._backlog.clear()
            idle, self._idle = self._idle, []
        for item in dropped:
            item[0].cancel()
        for each in idle:
            each.work = _STOP
            each.wake.release()
        self._to_start.put(False)
        if wait:
            for thread in list(self._started):
                if thread is not threading.current_thread():
                    thread.join()


def _run(work: _Work) -> None:
    future, fn, args, kwargs = work
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args, **kwargs)
    except BaseException as exc:  # the future carries it, as ThreadPoolExecutor's do
        future.set_exception(exc)
    else:
        future.set_result(result)
