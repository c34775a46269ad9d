"""Calling a registered function: a JSON result, or the events of a stream.

How errors raised by a function answer:

* :class:`InputError` → 400 ``invalid_request`` naming ``inputs.<field>``;
* any other ``ValueError`` (input the function cannot work with) → 422 ``function_failed``;
* LLM errors → the API's usual 502/503/504; anything else → 500 ``internal_error``.

A streaming function runs up to its first event before the response starts, so
these are HTTP errors when raised before the first ``yield``, and an ``error``
event with the same ``error_code`` when raised later.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from async_utils import AsyncHelper
from llm_client import LLMError

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
        return spec.func(**arguments)


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
