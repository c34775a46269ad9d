"""The bounded gather behind :meth:`AsyncHelper.gather_with_limit` and the batch processor."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Generator, Iterable
from typing import Any

__all__ = ["bounded_gather", "discard", "owned"]


def discard(aw: object) -> None:
    """Drop an awaitable that will never be awaited.

    Coroutines are closed (no "coroutine ... was never awaited" warning) and
    futures cancelled; other awaitables hold nothing to release.
    """
    if inspect.iscoroutine(aw):
        aw.close()
    elif isinstance(aw, asyncio.Future):
        aw.cancel()


def owned(aws: Iterable[Awaitable[Any]]) -> Generator[Awaitable[Any], None, None]:
    """Yield ``aws`` one by one; when closed early, discard the ones not yet taken."""
    iterator = iter(aws)
    try:
        yield from iterator
    finally:
        for aw in iterator:
            discard(aw)


def _outcome(future: asyncio.Future[Any]) -> tuple[Any, BaseException | None]:
    try:
        return future.result(), None
    except asyncio.CancelledError as exc:
        return None, exc
    except Exception as exc:
        return None, exc


async def bounded_gather(
    source: Generator[Awaitable[Any], None, None],
    limit: int,
    return_exceptions: bool,
    on_done: Callable[[], None] | None = None,
) -> list[Any]:
    """Await what ``source`` yields, at most ``limit`` at a time; results in source order.

    An awaitable is taken from ``source`` (and wrapped in a task, which starts
    a coroutine) only when a slot is free, so ``limit`` bounds how many run.
    With ``return_exceptions`` false the first failure (lowest position among
    those finishing together) is raised after the running ones are cancelled
    and awaited and ``source`` is closed, which discards the rest.

    :param source: the awaitables; closed when this returns or raises.
    :param limit: most awaitables running at once, >= 1.
    :param return_exceptions: store each failure in its slot instead of raising.
    :param on_done: called after each outcome is stored.
    """
    results: list[Any] = []
    pending: dict[asyncio.Future[Any], int] = {}
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < limit:
                try:
                    aw = next(source)
                except StopIteration:
                    exhausted = True
                    break
                pending[asyncio.ensure_future(aw)] = len(results)
                results.append(None)
            if not pending:
                return results
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in sorted(done, key=pending.__getitem__):
                value, error = _outcome(future)
                if error is not None and not return_exceptions:
                    raise error
                results[pending.pop(future)] = value if error is None else error
                if on_done is not None:
                    on_done()
    finally:
        source.close()
        if pending:
            for future in pending:
                future.cancel()
            await asyncio.wait(pending)
            for future in pending:
                _outcome(future)  # marks exceptions as retrieved: no "never retrieved" log
