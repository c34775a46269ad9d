"""Calling a registered function: a JSON result, or the events of a stream.

How errors raised by a function answer:

* :class:`InputError` → 400 ``invalid_request`` naming ``inputs.<field>``;
* any other ``ValueError`` (input the function cannot work with) → 422 ``function_failed``;
* LLM errors → the API's usual 502/503/504; anything else → 500 ``internal_error``.

A streaming function runs up to its first event before the response starts, so
these are HTTP errors when raised before the first ``yield``, and an ``error``
event with the same ``error_code`` when raised later.

Under a request deadline (``FLOWBRIDGE_REQUEST_TIMEOUT``) a plain function runs
on a small pool of its own while the request thread waits, so the request can
answer 504 when the deadline passes. Python cannot stop a thread: the function
itself runs on to its end, and its result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from async_utils import AsyncHelper
from llm_client import LLMError

from ..guards.deadlines import remaining
from ..errors import APIError
from .registry import FunctionKind, FunctionSpec, InputError

__all__ = ["call", "open_stream"]

Event = dict[str, Any]

_END = object()


def _translated(spec: FunctionSpec, exc: ValueError) -> APIError:
    if isinstance(exc, InputError):
        return APIError(f"invalid inputs for {spec.name}: {exc}")
    return APIError(f"{spec.name} failed: {exc}", status=422, type="function_failed")


@contextlib.contextmanager
def _errors_of(spec: FunctionSpec) -> Iterator[None]:
    try:
        yield
    except LLMError:
        raise
    except ValueError as exc:
        raise _translated(spec, exc) from exc


def call(spec: FunctionSpec, arguments: dict[str, Any]) -> Any:
    """Run a plain or coroutine function and return its result."""
    with _errors_of(spec):
        if spec.kind is FunctionKind.COROUTINE:
            return AsyncHelper.run_async_in_sync(spec.func(**arguments))
        if remaining() is None:
            return spec.func(**arguments)
        return AsyncHelper.run_async_in_sync(_on_pool(spec.func, arguments))


#: Threads for plain functions called under a deadline; created on first use, in the worker.
_POOL_SIZE = 32
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


async def _on_pool(func: Callable[..., Any], arguments: dict[str, Any]) -> Any:
    """``func(**arguments)`` on the pool, in a copy of this context (request, app, request ID)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_POOL_SIZE, thread_name_prefix="flowbridge-invoke")
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(_pool, lambda: context.run(func, **arguments))


def _forget_pool() -> None:
    """A forked child has none of its parent's threads: it starts its own pool."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def open_stream(spec: FunctionSpec, arguments: dict[str, Any]) -> Iterator[Event] | AsyncIterator[Event]:
    """Start a generator function and run it to its first event; the events, first one included.

    Raising before the first event raises here (see the module's docstring).
    Closing what is returned closes the function's generator, so its
    ``finally`` runs.
    """
    if spec.kind is FunctionKind.ASYNC_GENERATOR:
        agen = spec.func(**arguments)
        with _errors_of(spec):
            first = AsyncHelper.run_async_in_sync(_first(agen))
        return _empty() if first is _END else _rest_async(spec, first, agen)
    gen = spec.func(**arguments)
    with _errors_of(spec):
        first = next(gen, _END)
    return _empty() if first is _END else _rest_sync(spec, first, gen)


def _empty() -> Iterator[Event]:
    return iter(())


async def _first(agen: AsyncIterator[Event]) -> Any:
    try:
        return await agen.__anext__()
    except StopAsyncIteration:
        return _END


def _rest_sync(spec: FunctionSpec, first: Event, gen: Iterator[Event]) -> Iterator[Event]:
    try:
        with _errors_of(spec):
            yield first
            yield from gen
    finally:
        gen.close()  # type: ignore[attr-defined]


async def _rest_async(spec: FunctionSpec, first: Event, agen: AsyncIterator[Event]) -> AsyncIterator[Event]:
    async with contextlib.aclosing(agen):  # type: ignore[type-var]
        with _errors_of(spec):
            yield first
            async for event in agen:
                yield event
