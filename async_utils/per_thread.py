"""One object per thread, made on first use: connections and sessions that must not be shared.

``requests.Session`` is not promised to be thread-safe, and a SQLite connection
should stay in the thread that made it; neither may cross a fork. A
:class:`PerThread` gives each thread its own, made by a factory the first time
that thread asks, and keeps the list so that :meth:`PerThread.close` can close
them all::

    connections = PerThread(lambda: sqlite3.connect(path, check_same_thread=False), sqlite3.Connection.close)
    connections.get().execute("SELECT 1")   # this thread's connection
    connections.close()                     # every thread's; the next get() makes a new one

A forked child never uses or closes its parent's objects: each thread of the
child makes new ones, and the parent's stay referenced for the child's life, so
that not even garbage collection closes them there (SQLite forbids using or
closing a connection in a child: it could, for one, remove the write-ahead log
the parent still uses).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["PerThread"]

T = TypeVar("T")

#: Every PerThread, so that a forked child can reset their locks.
_ALL: weakref.WeakSet[PerThread[object]] = weakref.WeakSet()
#: In a forked child: the parent's objects, kept so that they are never closed here.
_INHERITED: list[object] = []


class PerThread(Generic[T]):
    """Each thread's own ``T``, made by ``factory()`` on its first :meth:`get`.

    :param factory: makes one object; its exceptions pass through :meth:`get`.
    :param closer: closes one object (in :meth:`close`); its exceptions are not caught.
    """

    def __init__(self, factory: Callable[[], T], closer: Callable[[T], object]) -> None:
        self._factory = factory
        self._closer = closer
        self._local = threading.local()
        self._lock = threading.Lock()
        #: Objects made in this process since the last close(), to close.
        self._made: list[T] = []
        #: Bumped by close() and at fork: a thread's object from an older epoch is not used again.
        self._epoch = 0
        _ALL.add(self)  # type: ignore[arg-type]

    def get(self) -> T:
        """This thread's object, made now if it has none (or only one from before a close or fork)."""
        local = self._local
        if getattr(local, "epoch", None) == self._epoch:
            return local.obj  # type: ignore[no-any-return]
        obj = self._factory()
        with self._lock:
            self._made.append(obj)
            local.obj, local.epoch = obj, self._epoch
        return obj

    def close_mine(self) -> None:
        """Close the calling thread's object, if it has one: for a thread about to end."""
        local = self._local
        if getattr(local, "epoch", None) != self._epoch:
            return
        obj = local.obj
        del local.obj, local.epoch
        with self._lock:
            if not any(made is obj for made in self._made):
                return  # close() took it
            self._made = [made for made in self._made if made is not obj]
        self._closer(obj)

    def close(self) -> None:
        """Close every object this process made; idempotent. A later :meth:`get` makes a new one."""
        with self._lock:
            made, self._made = self._made, []
            self._epoch += 1
        for obj in made:
            self._closer(obj)

    def _forget_after_fork(self) -> None:
        # The parent's objects stay the parent's; its lock may have been held by a thread that is gone.
        _INHERITED.extend(self._made)
        self._lock = threading.Lock()
        self._made = []
        self._epoch += 1


def _after_fork_in_child() -> None:
    for per_thread in list(_ALL):
        per_thread._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
