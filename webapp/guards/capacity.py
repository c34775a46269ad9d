"""Capacity of a worker: work slots, a bounded wait queue, and request threads kept for health checks.

gthread hands each request to one of ``--threads`` (``GUNICORN_THREADS``)
threads, and a request holds its thread for the whole of an LLM call or
stream. Threads are cheap (a thread waiting on a socket costs tens of KB and no
CPU), so gunicorn.conf.py gives each worker threads by the hundred and splits
them three ways:

- **reserved** (``FLOWBRIDGE_RESERVED_THREADS``): never taken by real work, so
  health and status checks (:data:`LIGHT_PATHS`, which never wait and are never
  refused) and the refusals themselves always find a thread at once;
- **queue** (``FLOWBRIDGE_QUEUE_DEPTH``): when every work slot is busy, up to
  this many requests wait, in arrival order, each at most
  ``FLOWBRIDGE_QUEUE_WAIT`` seconds, for a slot to free up;
- **work slots**: the rest (``GUNICORN_THREADS - reserved - queue``), requests
  actually running. A stream keeps its slot until it ends.

A request that finds the queue full, or waits ``FLOWBRIDGE_QUEUE_WAIT`` in
vain, is answered **503** ``overloaded`` with a ``Retry-After`` computed from
the queue: the time the requests ahead of it need, from the recent service time
of a slot (an exponential moving average) and how many are waiting, so clients
back off longer when the queue is long and requests are slow.

The request deadline (:mod:`webapp.guards.deadlines`) starts once a request
has its slot: time spent queuing is bounded by ``FLOWBRIDGE_QUEUE_WAIT``.

With nothing reserved and no queue (the defaults outside gunicorn, e.g. the
Flask test client), the guard is off. Beyond it the LLM pool itself refuses
calls when ``LLM_ASYNC_WORKERS + LLM_ASYNC_QUEUE_SIZE`` are taken (also 503),
which cannot happen with the default pool size (at least the request threads).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any

from flask import Flask, Response, current_app, g, request

from ..config import ConfigError, _number
from ..errors import error_response
from .gate import waiting

__all__ = ["LIGHT_PATHS", "Capacity", "Slot", "capacity_of", "init_app"]

#: Health and status routes: they never wait for a slot and are never refused.
LIGHT_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/info"})
#: The shortest and longest ``Retry-After`` a refusal suggests, in seconds.
RETRY_AFTER_MIN, RETRY_AFTER_MAX = 1, 300
#: Weight of the newest service time in the moving average.
_SMOOTHING = 0.2
_EXTENSION = "flowbridge_capacity"


class Capacity:
    """Work slots of this process and the requests waiting for one (FIFO, bounded in length and time).

    :param slots: requests that may run at once.
    :param depth: requests that may wait for a slot; one more is refused at once.
    :param max_wait: seconds a request waits before it is refused.
    """

    def __init__(self, slots: int, depth: int, max_wait: float) -> None:
        self.slots = slots
        self.depth = depth
        self.max_wait = max_wait
        self.busy = 0
        self._waiters: deque[_Waiter] = deque()
        self._lock = threading.Lock()
        self._service = 1.0  # seconds a slot is held, smoothed; a guess until the first request ends

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def take(self, timeout: float | None = None) -> Slot | None:
        """A slot now, or after waiting in the queue; None when the queue is full or the wait ran out."""
        with self._lock:
            if self.busy < self.slots and not self._waiters:
                self.busy += 1
                return Slot(self)
            if len(self._waiters) >= self.depth:
                return None
            waiter = _Waiter()
            self._waiters.append(waiter)
        waiting()  # in the queue: another request may start (and be refused, or queue) meanwhile
        waiter.granted.wait(self.max_wait if timeout is None else min(timeout, self.max_wait))
        with self._lock:  # a grant happens under the lock, so now it either happened or never will
            if waiter.granted.is_set():
                return Slot(self)
            self._waiters.remove(waiter)
            return None

    def retry_after(self, extra: int = 0) -> int:
        """Seconds until the queue ahead of a new request has likely drained, from the recent service time.

        :param extra: requests ahead of it that have not reached the queue yet (the worker's own backlog).
        """
        with self._lock:
            ahead = len(self._waiters) + extra + 1
            seconds = ahead * self._service / self.slots
        return max(RETRY_AFTER_MIN, min(RETRY_AFTER_MAX, math.ceil(seconds)))

    def _give_back(self, held: float) -> None:
        with self._lock:
            self._service += _SMOOTHING * (held - self._service)
            if self._waiters:  # hand the slot straight to the longest-waiting request
                self._waiters.popleft().granted.set()
            else:
                self.busy -= 1


class _Waiter:
    __slots__ = ("granted",)

    def __init__(self) -> None:
        self.granted = threading.Event()


class Slot:
    """One taken work slot; released once, when the request is torn down or its stream closed."""

    def __init__(self, capacity: Capacity) -> None:
        self._capacity: Capacity | None = capacity
        self._since = time.monotonic()

    def release(self) -> None:
        capacity, self._capacity = self._capacity, None
        if capacity is not None:
            capacity._give_back(time.monotonic() - self._since)


def capacity_of(app: Any) -> Capacity | None:
    """The capacity guard of ``app`` (None when it is off, or ``app`` is not a flowbridge app)."""
    extensions = getattr(app, "extensions", None)
    return extensions.get(_EXTENSION) if isinstance(extensions, dict) else None


def init_app(app: Flask) -> None:
    """Install the capacity guard on ``app`` (off when nothing is reserved and there is no queue).

    :raises ConfigError: naming the variable, when ``FLOWBRIDGE_RESERVED_THREADS`` or
        ``FLOWBRIDGE_QUEUE_DEPTH`` is not an integer >= 0, ``FLOWBRIDGE_QUEUE_WAIT`` not a
        positive number, or the two together leave no work slot of the request threads.
    """
    config = app.config
    reserved = _number("FLOWBRIDGE_RESERVED_THREADS", config.get("FLOWBRIDGE_RESERVED_THREADS", 0), int, minimum=0)
    depth = _number("FLOWBRIDGE_QUEUE_DEPTH", config.get("FLOWBRIDGE_QUEUE_DEPTH", 0), int, minimum=0)
    max_wait = _number("FLOWBRIDGE_QUEUE_WAIT", config.get("FLOWBRIDGE_QUEUE_WAIT", 10.0), float, minimum=0.001)
    threads = config["FLOWBRIDGE_REQUEST_THREADS"]
    if (reserved or depth) and reserved + depth >= threads:
        raise ConfigError(f"FLOWBRIDGE_RESERVED_THREADS + FLOWBRIDGE_QUEUE_DEPTH must be less than the request "
                          f"threads of a worker (GUNICORN_THREADS={threads}), got {reserved} + {depth}")
    config.update(FLOWBRIDGE_RESERVED_THREADS=reserved, FLOWBRIDGE_QUEUE_DEPTH=depth, FLOWBRIDGE_QUEUE_WAIT=max_wait)
    capacity = Capacity(threads - reserved - depth, depth, max_wait) if reserved or depth else None
    app.extensions[_EXTENSION] = capacity
    if capacity is not None:
        app.before_request(_take)
        app.after_request(_hand_to_stream)
        app.teardown_request(_release)


def _take() -> Response | None:
    capacity: Capacity = current_app.extensions[_EXTENSION]
    if request.path in LIGHT_PATHS or request.endpoint == "static":
        return None
    waiting = capacity.waiting
    slot = capacity.take()
    if slot is not None:
        g.capacity_slot = slot
        return None
    if waiting >= capacity.depth:
        why = (f"all {capacity.slots} work slots of this worker are busy and its queue is full "
               f"({capacity.depth} waiting, FLOWBRIDGE_QUEUE_DEPTH)")
    else:
        why = (f"all {capacity.slots} work slots of this worker stayed busy for "
               f"FLOWBRIDGE_QUEUE_WAIT={capacity.max_wait:g}s")
    seconds = capacity.retry_after()
    return error_response(503, "overloaded", f"{why}; retry in about {seconds}s", {"Retry-After": str(seconds)})


def _hand_to_stream(response: Response) -> Response:
    if response.is_streamed:
        slot: Slot | None = g.pop("capacity_slot", None)
        if slot is not None:
            # The slot is busy until the stream ends; the server closes the body then (PEP 3333),
            # also when the client went away. Teardown runs earlier, when the view returns.
            response.call_on_close(slot.release)
    return response


def _release(_exc: BaseException | None) -> None:
    slot: Slot | None = g.pop("capacity_slot", None)
    if slot is not None:  # a response built in memory: its slot is free as soon as it is sent
        slot.release()
