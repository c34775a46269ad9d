"""The start gate: how many of a worker's requests may be computing at once.

A worker's request threads share one GIL. A request spends most of its life
waiting (on its upstream, its client, the task store), but it starts with a
burst of pure Python: parsing, routing, validating the body, preparing the
upstream call. When a thousand streams start together, five hundred threads per
worker want the GIL at the same moment, and CPython hands it to whichever wakes
first: the worker's main loop, which accepts every connection, waited most of a
second for each turn, and so did every health check (bench/capacity.py).

The gate lets ``FLOWBRIDGE_START_SLOTS`` requests compute at once; the others
wait their turn in arrival order, asleep, out of the GIL's way. A request holds
its *permit* until it first waits, whichever comes first of:

- its response starts (``start_response``): the view is done;
- it sends a call to its upstream, or waits for an identical call in flight
  (the LLM client's wait observer, :mod:`llm_client.observe`);
- it waits for a work slot, a task, or its client's request body (:func:`waiting`);
- it ends;
- ``FLOWBRIDGE_START_LEASE`` seconds pass: a request that waits on something
  nobody reports stops holding the others back after that long.

Health and status requests never pass through the gate (the worker looks at the
request line first). Requests compute one at a time per GIL anyway, so the gate
costs no throughput; it orders the work so that the requests that started first
finish their start first, and the main loop and health checks meet a handful of
threads at the GIL, not hundreds.

The permit travels in a :class:`contextvars.ContextVar`, so an LLM call made for
the request on another thread (the async bridge copies the caller's context)
releases it too. Outside the gunicorn worker there is no gate, and
:func:`waiting` does nothing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from contextvars import ContextVar

__all__ = ["Permit", "StartGate", "admitted", "install", "installed", "waiting"]


class _Waiter:
    """A request waiting at the gate: the lock it sleeps on, and whether it was woken since."""

    __slots__ = ("lock", "woken")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.woken = False


class StartGate:
    """At most ``slots`` permits out at once, each for at most ``lease`` seconds; waiters served in order.

    Only the first waiter in line sleeps with a timeout (until the oldest permit's lease ends); the
    others sleep until it is their turn to be first, so a long line costs no wake-ups.
    """

    def __init__(self, slots: int, lease: float) -> None:
        if slots < 1:
            raise ValueError(f"a start gate needs at least 1 slot, got {slots}")
        if not lease > 0:
            raise ValueError(f"a start gate's lease must be positive, got {lease}")
        self.slots = slots
        self.lease = lease
        self._lock = threading.Lock()
        self._out: dict[Permit, float] = {}  # permit -> when its lease ends
        self._line: deque[_Waiter] = deque()

    @property
    def holding(self) -> int:
        """Permits out, leases not yet ended."""
        with self._lock:
            self._expire(time.monotonic())
            return len(self._out)

    @property
    def waiting(self) -> int:
        """Requests waiting for a permit."""
        return len(self._line)

    def enter(self) -> Permit:
        """A permit: at once when one is free and nobody is waiting, else in turn."""
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            if not self._line and len(self._out) < self.slots:
                return self._grant(now)
            me = _Waiter()
            self._line.append(me)
            timeout = self._until_free(now) if self._line[0] is me else None
        while True:
            if timeout is None:
                me.lock.acquire()
            else:
                me.lock.acquire(timeout=timeout)
            with self._lock:
                me.woken = False
                now = time.monotonic()
                self._expire(now)
                if self._line[0] is not me:
                    timeout = None
                    continue
                if len(self._out) < self.slots:
                    self._line.popleft()
                    permit = self._grant(now)
                    self._wake_first()  # the next in line now watches the leases (or takes a free slot)
                    return permit
                timeout = self._until_free(now)

    def _grant(self, now: float) -> Permit:
        permit = Permit(self)
        self._out[permit] = now + self.lease
        return permit

    def _expire(self, now: float) -> None:
        if self._out and min(self._out.values()) <= now:
            for permit in [p for p, until in self._out.items() if until <= now]:
                del self._out[permit]

    def _until_free(self, now: float) -> float:
        return max(0.0005, min(self._out.values()) - now) if self._out else 0.0

    def _wake_first(self) -> None:
        if self._line:
            first = self._line[0]
            if not first.woken:
                first.woken = True
                first.lock.release()

    def _give_back(self, permit: Permit) -> None:
        with self._lock:
            if self._out.pop(permit, None) is not None:
                self._wake_first()


class Permit:
    """One request's place in the gate; :meth:`release` is idempotent and safe from any thread."""

    __slots__ = ("_gate",)

    def __init__(self, gate: StartGate) -> None:
        self._gate: StartGate | None = gate

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate._give_back(self)


_permit: ContextVar[Permit | None] = ContextVar("flowbridge_start_permit", default=None)
_installed: StartGate | None = None


def install(gate: StartGate | None) -> None:
    """Make ``gate`` this process's (the worker's), so ``/metrics`` can show who waits at it."""
    global _installed
    _installed = gate


def installed() -> StartGate | None:
    """This process's gate, None outside a gunicorn worker or with the gate off."""
    return _installed


class admitted:
    """``with admitted(gate):`` the request runs holding a permit of ``gate`` (None: no gate), which
    :func:`waiting` gives back early and leaving the block gives back at the latest."""

    __slots__ = ("_gate", "_permit", "_token")

    def __init__(self, gate: StartGate | None) -> None:
        self._gate = gate

    def __enter__(self) -> None:
        self._permit = self._gate.enter() if self._gate is not None else None
        self._token = _permit.set(self._permit)

    def __exit__(self, *exc: object) -> None:
        _permit.reset(self._token)
        if self._permit is not None:
            self._permit.release()


def waiting() -> None:
    """The current request is about to wait: give its permit back so another may start.

    Does nothing outside a request that holds one (so anything may call it: the LLM client's wait
    observer, the capacity queue, a long poll).
    """
    permit = _permit.get()
    if permit is not None:
        permit.release()
