"""Helpers for using the synchronous LLM client from async code, and async views from Flask.

* :class:`AsyncConfig` reads the ``LLM_ASYNC_*`` variables (:class:`AsyncConfigError` on a bad one);
* :class:`AsyncHelper` has ``run_with_timeout``, ``gather_with_limit`` and ``run_async_in_sync``;
* :class:`AsyncBatchProcessor` applies a function to many items with bounded concurrency;
* :func:`async_route` runs ``async def`` Flask views on a persistent per-thread event loop;
* :func:`loops_created` counts the event loops created, to check none is made per call;
* :func:`thread_loop` is the calling thread's persistent loop (event streams drive async sources on it);
* :class:`PerThread` gives each thread its own object (a SQLite connection, an HTTP session), fork-safe.
"""

from __future__ import annotations

from ._loops import Deadline, current_deadline, loops_created, thread_loop
from .batch import AsyncBatchProcessor
from .config import AsyncConfig, AsyncConfigError
from .flask_bridge import async_route
from .helper import AsyncHelper
from .per_thread import PerThread

__all__ = [
    "AsyncBatchProcessor",
    "AsyncConfig",
    "AsyncConfigError",
    "AsyncHelper",
    "Deadline",
    "PerThread",
    "async_route",
    "current_deadline",
    "loops_created",
    "thread_loop",
]
