"""Deadlines of the work done in a context: :func:`set_deadline`, read by :func:`current_deadline`.

A web app sets one per request; :func:`async_utils._loops.run_sync` cancels a coroutine
when it passes (:func:`within_deadline`), and the LLM client ends blocking calls by it.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["Deadline", "current_deadline", "set_deadline", "within_deadline"]

T = TypeVar("T")


class Deadline:
    """When :func:`run_sync` calls in a context must end; disarmed when its owner is done with it.

    Contexts are copied (tasks, ``call_soon_threadsafe``, the LLM client's pool), so a copy
    may outlive the request that set the deadline; disarming the shared object reaches every copy.
    """

    def __init__(self, at: float, error: Callable[[], BaseException]) -> None:
        self.at = at
        self.error = error
        self.armed = True
        self.disarmed_at: float | None = None

    def disarm(self) -> None:
        if self.armed:
            self.armed = False
            self.disarmed_at = time.monotonic()

    def binds(self) -> bool:
        """Whether work started under it must end by :attr:`at`: while it is armed, and after its
        owner ran past it; not once its owner let it go in time (a request that ended, or whose
        event stream started: work it leaves running, e.g. a background task, is not bound)."""
        return self.armed or (self.disarmed_at is not None and self.disarmed_at >= self.at)


_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("async_utils_deadline", default=None)


def set_deadline(at: float | None, error: Callable[[], BaseException] | None = None) -> None:
    """Make :func:`run_sync` calls in the current context end by ``at`` (a :func:`time.monotonic` value).

    When ``at`` passes, the coroutine is cancelled and ``error()`` is raised in
    its place (default :class:`TimeoutError`). ``None`` removes the deadline, also
    from copies of this context made meanwhile. A web app sets it per request
    (:mod:`async_utils` itself never does); an unset deadline costs nothing.
    """
    previous = _deadline.get()
    if previous is not None:
        previous.disarm()
    _deadline.set(None if at is None else Deadline(at, error or TimeoutError))


def current_deadline() -> Deadline | None:
    """The :func:`set_deadline` deadline of the current context while it is armed, else None.

    Code on other threads sees it too when it runs in a copy of the context
    (``contextvars.copy_context().run``, as the LLM client's pool does), so a blocking
    call can end by the request's deadline: by ``.at``, if it still ``.binds()`` then.
    """
    deadline = _deadline.get()
    return deadline if deadline is not None and deadline.armed else None


async def within_deadline(deadline: Deadline, aw: Awaitable[T]) -> T:
    task = asyncio.current_task()
    assert task is not None
    expired = False

    def expire() -> None:
        nonlocal expired
        if deadline.armed:
            expired = True
            task.cancel()

    handle = asyncio.get_running_loop().call_later(max(0.0, deadline.at - time.monotonic()), expire)
    try:
        return await aw
    except asyncio.CancelledError:
        if expired:
            raise deadline.error() from None
        raise
    except Exception as exc:
        if deadline.armed and time.monotonic() >= deadline.at:
            # It failed once its time was up, e.g. an LLM call cut at this very deadline just
            # before the timer above fired: the deadline is what ended it.
            raise deadline.error() from exc
        raise
    finally:
        handle.cancel()
