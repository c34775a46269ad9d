"""``AsyncHelper``: timeouts, bounded gathering, and running coroutines from sync code."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from ._gather import bounded_gather, discard, owned
from ._loops import run_sync

__all__ = ["AsyncHelper"]

T = TypeVar("T")


class AsyncHelper:
    """Small async utilities; every method is a staticmethod."""

    @staticmethod
    async def run_with_timeout(aw: Awaitable[T], timeout: float | None) -> T:
        """Await ``aw``, giving up after ``timeout`` seconds.

        On timeout the awaitable is cancelled (a coroutine sees
        :class:`asyncio.CancelledError` where it waits) and its cancellation
        is awaited before the error is raised::

            try:
                text = await AsyncHelper.run_with_timeout(client.chat_async("hi"), timeout=5.0)
            except asyncio.TimeoutError:
                ...

        :param aw: a coroutine, task, future or other awaitable.
        :param timeout: seconds, >= 0; ``None`` waits without limit.
        :raises asyncio.TimeoutError: if ``aw`` did not finish in time.
        :raises ValueError: if ``timeout`` is negative (``aw`` is then discarded).
        """
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0
        ):
            discard(aw)
            raise ValueError(f"timeout must be a number of seconds >= 0 or None, got {timeout!r}")
        return await asyncio.wait_for(aw, timeout)

    @staticmethod
    async def gather_with_limit(
        aws: Iterable[Awaitable[Any]], limit: int, return_exceptions: bool = False
    ) -> list[Any]:
        """Await ``aws`` with at most ``limit`` of them running at once; results in input order.

        A coroutine is started only when a slot is free. This is what bounds
        upstream concurrency: ``LLMClient.chat_async(...)`` submits nothing to
        the client's pool until it is awaited, so
        ``gather_with_limit([client.chat_async(p) for p in prompts], limit=3)``
        never has more than three requests in flight. Tasks and futures passed
        in are already scheduled; the limit only decides when they are awaited.

        The helper owns what it is given. With ``return_exceptions=False`` the
        first exception propagates after every running awaitable is cancelled
        (and its cancellation awaited), un-started coroutines are closed and
        un-awaited futures cancelled. With ``True`` each exception is returned
        in its item's slot and nothing is cancelled.

        :param aws: coroutines, tasks, futures or other awaitables.
        :param limit: most awaitables running at once, an integer >= 1.
        :param return_exceptions: return exceptions in place instead of raising.
        :raises ValueError: if ``limit`` is not an integer >= 1.
        :raises TypeError: if an item is not awaitable.
        """
        items = list(aws)
        problem: Exception | None = None
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            problem = ValueError(f"limit must be an integer >= 1, got {limit!r}")
        else:
            bad = next((item for item in items if not inspect.isawaitable(item)), None)
            if bad is not None:
                problem = TypeError(f"gather_with_limit expects awaitables, got {type(bad).__name__}")
        if problem is not None:
            for item in items:
                discard(item)
            raise problem
        return await bounded_gather(owned(items), limit, return_exceptions)

    @staticmethod
    def run_async_in_sync(coro: Awaitable[T]) -> T:
        """Run a coroutine to completion from sync code and return its result.

        No event loop is created per call. From a thread with no running loop
        the coroutine runs on that thread's persistent loop. From inside a
        running loop (Jupyter, or a sync function called by async code) it runs
        on a persistent helper thread's loop while the caller blocks, so there
        is no deadlock and no "This event loop is already running". The
        caller's context variables are visible to the coroutine either way.

        Tasks the coroutine leaves running are cancelled when it returns on the
        thread's own loop, as with :func:`asyncio.run`.

        :param coro: the coroutine (or other awaitable) to run.
        :returns: what the coroutine returns.
        :raises: whatever the coroutine raises, unchanged.
        """
        return run_sync(coro)
