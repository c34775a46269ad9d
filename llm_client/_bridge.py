"""The thread-pool bridge behind the ``*_async`` methods.

One :class:`~concurrent.futures.ThreadPoolExecutor` per client, created on first
use (so under gunicorn its threads start in the worker, after the fork) and
recreated if the process forked since. At most ``workers + queue_size`` calls
may run or wait; one more fails at once with :class:`LLMQueueFullError` instead
of queueing without bound.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from .exceptions import LLMQueueFullError, LLMTimeoutError

T = TypeVar("T")

_END = object()


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of the bridge: its size and how many calls run or wait."""

    #: worker threads (``LLM_ASYNC_WORKERS``)
    size: int
    #: calls executing on a worker thread now
    running: int
    #: calls accepted but waiting for a free worker
    queued: int
    #: most calls that may run or wait at once (size + ``LLM_ASYNC_QUEUE_SIZE``)
    capacity: int
    #: seconds one call may take, or one item of a stream wait (``LLM_ASYNC_TIMEOUT``); None: no limit
    timeout: float | None = None


class AsyncBridge:
    """Runs sync callables on a bounded thread pool for async callers.

    :param workers: worker threads.
    :param queue_size: calls allowed to wait beyond ``workers``.
    :param timeout: seconds one call may take before ``asyncio.TimeoutError``; None = no limit.
    :param enabled: if False, ``run`` calls the function directly (blocking the loop).
    """

    def __init__(self, workers: int, queue_size: int, timeout: float | None, enabled: bool = True):
        self.workers = workers
        self.queue_size = queue_size
        self.timeout = timeout
        self.enabled = enabled
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._pending = 0  # running + queued
        self._running = 0
        self._closed = False

    # -- state -----------------------------------------------------------------

    @property
    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(
                size=self.workers,
                running=self._running,
                queued=self._pending - self._running,
                capacity=self.workers + self.queue_size,
                timeout=self.timeout,
            )

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The underlying executor (created on first use)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the LLM client is closed")
            return self._get_executor()

    def _get_executor(self) -> ThreadPoolExecutor:
        if self._executor is None or self._pid != os.getpid():
            # A forked child inherits the parent's executor object but none of
            # its threads: start afresh.
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="llm-bridge")
            self._pid = os.getpid()
            self._pending = self._running = 0
        return self._executor

    def _acquire(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the LLM client is closed; its thread pool no longer accepts calls")
            executor = self._get_executor()
            if self._pending >= self.workers + self.queue_size:
                raise LLMQueueFullError(
                    f"all {self.workers} LLM workers are busy and {self.queue_size} calls are "
                    "already queued; try again later"
                )
            self._pending += 1
            return executor

    def _release(self, _future: object = None) -> None:
        with self._lock:
            self._pending -= 1

    def _tracked(self, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
        with self._lock:
            self._running += 1
        try:
            return fn(*args, **kwargs)
        finally:
            with self._lock:
                self._running -= 1

    # -- running calls -----------------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the pool and await its result.

        :raises LLMQueueFullError: when ``workers + queue_size`` calls are pending.
        :raises asyncio.TimeoutError: when the call takes longer than ``timeout``.
        :raises RuntimeError: after :meth:`shutdown`.
        """
        if not self.enabled:
            if self._closed:
                raise RuntimeError("the LLM client is closed")
            return fn(*args, **kwargs)
        executor = self._acquire()
        try:
            # In the caller's context, so context variables (the web app's request ID) reach the call.
            future = executor.submit(contextvars.copy_context().run, self._tracked, fn, args, kwargs)
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        # On timeout wait_for cancels the wrapper, which cancels a call still
        # queued; one already running finishes in its thread, holding its slot.
        return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)

    async def iterate(self, make_iterator: Callable[[], Iterator[T]], close: Callable[[], None]) -> AsyncIterator[T]:
        """Drive a blocking iterator on one pool thread and yield its items.

        The iterator is created and consumed on a single worker, which holds one
        slot for the whole stream. Items cross to the loop through a small queue.
        When the consumer stops early, ``close()`` is called from the loop's
        thread to interrupt the blocked read. Each item must arrive within ``timeout``
        (``LLM_ASYNC_TIMEOUT``), else :class:`LLMTimeoutError`.
        """
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def pump() -> None:
            def put(item: Any) -> None:
                if not loop.is_closed():
                    loop.call_soon_threadsafe(items.put_nowait, item)

            try:
                for item in make_iterator():
                    if stop.is_set():
                        break
                    put(item)
            except BaseException as exc:  # handed to the consumer, re-raised there
                if not stop.is_set():
                    put(_Failure(exc))
                return
            put(_END)

        if not self.enabled:
            for item in make_iterator():
                yield item
            return
        executor = self._acquire()
        try:
            future = executor.submit(contextvars.copy_context().run, self._tracked, pump, (), {})
        except BaseException:
            self._release()
            raise
        future.add_done_callback(self._release)
        try:
            while True:
                try:
                    item = await asyncio.wait_for(items.get(), self.timeout)
                except asyncio.TimeoutError:
                    # Per item, not for the whole stream: name it as such, not as a call's time limit.
                    raise LLMTimeoutError(
                        f"the stream sent nothing for LLM_ASYNC_TIMEOUT={self.timeout:g}s") from None
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            if not future.done():
                stop.set()
                close()

    def shutdown(self, wait: bool = False) -> None:
        """Stop accepting calls and shut the pool down; idempotent."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=True)


@dataclass(frozen=True)
class _Failure:
    exc: BaseException


__all__ = ["AsyncBridge", "PoolStats"]
