"""A hook to watch every upstream HTTP call the client makes.

``LLMClient`` reports each attempt (retries included) after it completes::

    from llm_client.observe import add_call_observer

    def record(path: str, seconds: float, outcome: str) -> None:
        print(path, round(seconds, 3), outcome)

    add_call_observer(record)

``path`` is the API path under the base URL (``/chat/completions``,
``/embeddings``), ``seconds`` the time until the response headers arrived (a
stream's body is read later), and ``outcome`` one of ``ok``, ``http_<status>``
(e.g. ``http_429``), ``timeout`` or ``connection_error``. Observers run on the
calling thread (often a pool thread) and must be quick; one that raises is
logged and never breaks the call. Observers are process-wide: this module knows
nothing of Flask or Prometheus, the web app registers its metrics observer here.

A *wait* observer, ``fn()``, is called on the calling thread (in its context)
whenever the caller is about to wait for the upstream: just before each attempt
is sent, and before a cached call waits for an identical one already in flight
(``add_wait_observer``). The web server lets another request start then.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["CallObserver", "WaitObserver", "add_call_observer", "add_wait_observer", "remove_call_observer",
           "remove_wait_observer", "report_call", "report_wait"]

logger = logging.getLogger(__name__)

#: ``fn(path, seconds, outcome)``, called once per upstream HTTP attempt.
CallObserver = Callable[[str, float, str], None]
#: ``fn()``, called when the calling thread is about to wait for the upstream.
WaitObserver = Callable[[], None]


class _Observers:
    """A set of observers, called in the order added; one that raises is logged and skipped."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._lock = threading.Lock()
        self._fns: tuple[Callable[..., None], ...] = ()  # replaced whole: iterated without the lock

    def add(self, fn: Callable[..., None]) -> None:
        with self._lock:
            if fn not in self._fns:
                self._fns = (*self._fns, fn)

    def remove(self, fn: Callable[..., None]) -> None:
        with self._lock:
            self._fns = tuple(o for o in self._fns if o != fn)

    def report(self, *args: object) -> None:
        for fn in self._fns:
            try:
                fn(*args)
            except Exception:  # an observer's bug must not fail the LLM call
                logger.exception("%s observer %r failed", self._kind, fn)


_calls = _Observers("call")
_waits = _Observers("wait")


def add_call_observer(fn: CallObserver) -> CallObserver:
    """Call ``fn(path, seconds, outcome)`` after every upstream attempt; adding it twice adds it once.

    :returns: ``fn``, so this works as a decorator.
    """
    _calls.add(fn)
    return fn


def remove_call_observer(fn: CallObserver) -> None:
    """Stop calling ``fn``; a no-op if it was not added."""
    _calls.remove(fn)


def report_call(path: str, seconds: float, outcome: str) -> None:
    """Tell every observer about one finished attempt (called by the client)."""
    _calls.report(path, seconds, outcome)


def add_wait_observer(fn: WaitObserver) -> WaitObserver:
    """Call ``fn()`` whenever a caller is about to wait for the upstream; adding it twice adds it once."""
    _waits.add(fn)
    return fn


def remove_wait_observer(fn: WaitObserver) -> None:
    """Stop calling ``fn`` before waits; a no-op if it was not added."""
    _waits.remove(fn)


def report_wait() -> None:
    """Tell every wait observer that the calling thread is about to wait for the upstream (the client calls it)."""
    _waits.report()
