"""``AsyncBatchProcessor``: apply one function to many items with bounded concurrency."""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from typing import Any, Generic, TypeVar

from ._gather import bounded_gather

__all__ = ["AsyncBatchProcessor"]

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

#: ``progress(done, total)``
ProgressCallback = Callable[[int, int], object]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _is_async_callable(func: Callable[..., Any]) -> bool:
    # Objects with ``async def __call__`` count as async too.
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__)


class AsyncBatchProcessor(Generic[ItemT, ResultT]):
    """Runs ``process_func`` on every item, at most ``max_workers`` at a time.

    ::

        processor = AsyncBatchProcessor(process_func=client.chat_async, batch_size=10, max_workers=5)
        results = await processor.process_batch(prompts)

    ``process_func`` may be an ``async def`` function (awaited on the loop) or
    a plain function, which is run with :func:`asyncio.to_thread` so it never
    blocks the loop (those threads come from the loop's default executor,
    which caps them at ``min(32, cpu_count + 4)``). A plain function that
    returns an awaitable has that awaited too.

    :param process_func: called once per item, ``process_func(item)``.
    :param batch_size: how many item coroutines are created at a time. Items
        are turned into coroutines ``batch_size`` at a time, the next chunk
        only when the previous one has been taken up by the workers, so a
        million items never become a million coroutines up front. It bounds
        memory, not concurrency; there is no barrier between chunks.
    :param max_workers: most items in flight at once (``process_func`` calls
        started and not finished).
    :param progress: ``progress(done, total)``, a sync callable called on the
        loop after each item whose outcome is recorded (a success, or a
        failure kept because ``return_exceptions`` is true).
    :raises ValueError: if ``batch_size`` or ``max_workers`` is not an integer >= 1.
    :raises TypeError: if ``process_func`` or ``progress`` is not callable.
    """

    def __init__(
        self,
        process_func: Callable[[ItemT], Awaitable[ResultT]] | Callable[[ItemT], ResultT],
        batch_size: int = 10,
        max_workers: int = 5,
        progress: ProgressCallback | None = None,
    ) -> None:
        if not callable(process_func):
            raise TypeError(f"process_func must be callable, got {type(process_func).__name__}")
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be callable or None, got {type(progress).__name__}")
        #: the function applied to each item
        self.process_func = process_func
        #: item coroutines created at a time
        self.batch_size = _positive_int("batch_size", batch_size)
        #: most items in flight at once
        self.max_workers = _positive_int("max_workers", max_workers)
        #: ``progress(done, total)`` or None
        self.progress = progress
        self._is_async = _is_async_callable(process_func)

    async def process_batch(
        self, items: Iterable[ItemT], return_exceptions: bool = False
    ) -> list[ResultT | BaseException]:
        """Process every item and return the results in input order.

        :param items: the items; an iterable that is not a sequence is read
            into a list first (the items, not coroutines, so ``total`` is known).
        :param return_exceptions: if true, an item's exception is returned in
            its slot and processing goes on: one result per item, nothing
            dropped. If false, the first failure is raised after the items in
            flight are cancelled and the unstarted ones discarded.
        :returns: one entry per item, in the order of ``items``.
        """
        sequence: Sequence[ItemT] = items if isinstance(items, Sequence) else list(items)
        total = len(sequence)
        done = 0

        def item_done() -> None:
            nonlocal done
            done += 1
            if self.progress is not None:
                self.progress(done, total)

        return await bounded_gather(self._coroutines(sequence), self.max_workers, return_exceptions, item_done)

    def _coroutines(self, items: Sequence[ItemT]) -> Generator[Awaitable[ResultT], None, None]:
        for start in range(0, len(items), self.batch_size):
            chunk = deque(self._process(item) for item in items[start : start + self.batch_size])
            try:
                while chunk:
                    yield chunk.popleft()
            finally:
                # Closed early (a failure, or cancellation): these never started.
                for coro in chunk:
                    coro.close()

    async def _process(self, item: ItemT) -> ResultT:
        if self._is_async:
            return await self.process_func(item)  # type: ignore[misc]
        result = await asyncio.to_thread(self.process_func, item)
        if inspect.isawaitable(result):
            result = await result
        return result  # type: ignore[return-value]
