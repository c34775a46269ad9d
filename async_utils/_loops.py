"""Persistent event loops: one per thread, plus helper loops for nested calls.

Sync code runs coroutines through :func:`run_sync`, which never creates a loop
per call (``asyncio.run`` would, and fails under a running loop):

* in a thread with no running loop, the coroutine runs on :func:`thread_loop`,
  that thread's persistent loop, created on first use;
* in a thread whose loop is already running (Jupyter, or a sync function
  called from a coroutine), it runs on a persistent helper loop in a daemon
  thread while the caller blocks. A call made from a helper loop goes to the
  next helper, so nesting cannot deadlock.

Every loop remembers the pid that created it. After a fork (gunicorn forks its
workers) the child gets new loops. The inherited ones are kept referenced and
never closed: their epoll instance and self-pipe are shared with the parent,
and ``close()`` would unregister the parent's descriptors from it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import inspect
import os
import threading
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from ._deadlines import Deadline, current_deadline, set_deadline, within_deadline

__all__ = ["Deadline", "current_deadline", "loops_created", "run_sync", "set_deadline", "thread_loop"]

T = TypeVar("T")

#: seconds to wait for a helper thread to stop at interpreter exit
_HELPER_JOIN_TIMEOUT = 1.0

_local = threading.local()
#: guards the counter and the helpers; an RLock because a helper is created under it
_lock = threading.RLock()
_created = 0
_helpers: dict[int, _HelperLoop] = {}
#: loops inherited across a fork; referenced so they are never closed (see above)
_orphans: list[Any] = []


def loops_created() -> int:
    """Return how many event loops this module has created in the process.

    Children of a fork start from their parent's count. Tests and benchmarks
    compare it before and after to prove no loop is created per call.
    """
    return _created


def _new_loop() -> asyncio.AbstractEventLoop:
    global _created
    loop = asyncio.new_event_loop()
    with _lock:
        _created += 1
    return loop


class _ThreadLoop:
    """Holds a thread's loop; closes it when the thread ends and drops its locals."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pid = os.getpid()

    def __del__(self) -> None:
        # Best-effort cleanup when the owning thread exits: an unclosed loop
        # would emit ResourceWarning when collected.
        try:
            loop = self.loop
            if self.pid == os.getpid() and not loop.is_closed() and not loop.is_running():
                loop.close()
        except Exception:  # interpreter shutdown may have torn down what close() needs
            pass


def thread_loop() -> asyncio.AbstractEventLoop:
    """Return this thread's persistent event loop, creating it if needed.

    A new loop replaces the old one if that was closed or was created before a
    fork (in another process). The loop is not made the thread's "current"
    loop; code running on it finds it with :func:`asyncio.get_running_loop`.
    """
    holder: _ThreadLoop | None = getattr(_local, "holder", None)
    if holder is not None:
        if holder.pid == os.getpid():
            if not holder.loop.is_closed():
                return holder.loop
        else:
            _orphans.append(holder)
    holder = _ThreadLoop(_new_loop())
    _local.holder = holder
    return holder.loop


def _run_on_thread_loop(aw: Awaitable[T]) -> T:
    loop = thread_loop()
    try:
        return loop.run_until_complete(aw)
    finally:
        _cancel_leftovers(loop)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel tasks a call left behind, as ``asyncio.run`` does before closing.

    Otherwise they would wake up during some later, unrelated call on the same
    loop, still holding the context (e.g. the Flask request) of their own call.
    """
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception in a task left running by a run_sync call",
                    "exception": task.exception(),
                    "task": task,
                }
            )


class _HelperLoop:
    """A loop running forever in a daemon thread, for calls made under a running loop."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.pid = os.getpid()
        self.loop = _new_loop()
        self.thread = threading.Thread(target=self._run, name=f"async-utils-helper-{depth}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        _local.helper_depth = self.depth
        self.loop.run_forever()

    def usable(self) -> bool:
        return self.pid == os.getpid() and self.thread.is_alive() and not self.loop.is_closed()

    def stop(self) -> None:
        if not self.usable():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(_HELPER_JOIN_TIMEOUT)
        if not self.loop.is_running():
            self.loop.close()


def _helper_for_this_thread() -> _HelperLoop:
    depth = getattr(_local, "helper_depth", -1) + 1
    with _lock:
        helper = _helpers.get(depth)
        if helper is not None and not helper.usable():
            if helper.pid != os.getpid():
                _orphans.append(helper)
            helper = None
        if helper is None:
            helper = _helpers[depth] = _HelperLoop(depth)
        return helper


def _run_on_helper(aw: Awaitable[T]) -> T:
    coro = aw if inspect.iscoroutine(aw) else _await(aw)
    helper = _helper_for_this_thread()
    # call_soon_threadsafe (inside run_coroutine_threadsafe) copies the
    # caller's context, so the task sees the caller's contextvars (Flask's
    # request and app context among them). The explicit copy makes it plain.
    context = contextvars.copy_context()
    future = context.run(asyncio.run_coroutine_threadsafe, coro, helper.loop)
    try:
        return future.result()
    finally:
        # Only matters if we were interrupted (e.g. KeyboardInterrupt): stop
        # the coroutine instead of leaving it running unobserved.
        future.cancel()


async def _await(aw: Awaitable[T]) -> T:
    return await aw


def run_sync(aw: Coroutine[Any, Any, T] | Awaitable[T]) -> T:
    """Run ``aw`` to completion from sync code; return its result or raise its error.

    With no loop running in this thread the coroutine runs on
    :func:`thread_loop`; otherwise on a helper thread's loop while this thread
    blocks. Tasks the coroutine leaves running are cancelled when it returns
    (on the helper path they keep running on the helper loop). Under a
    :func:`set_deadline` the coroutine is cancelled when the deadline passes.

    :raises TypeError: if ``aw`` is not awaitable.
    """
    if not inspect.isawaitable(aw):
        raise TypeError(f"expected a coroutine or other awaitable, got {type(aw).__name__}")
    deadline = current_deadline()
    if deadline is not None:
        aw = within_deadline(deadline, aw)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_on_thread_loop(aw)
    return _run_on_helper(aw)


def _stop_helpers() -> None:
    with _lock:
        helpers = list(_helpers.values())
        _helpers.clear()
    for helper in helpers:
        helper.stop()


def _after_fork_in_child() -> None:
    global _lock
    # Another thread of the parent may have held the lock at fork time.
    _lock = threading.RLock()


atexit.register(_stop_helpers)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
