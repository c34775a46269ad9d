"""``AsyncHelper.run_async_in_sync`` and the persistent loops behind it."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

import pytest

from async_utils import AsyncHelper, async_route, loops_created
from async_utils._loops import thread_loop

JOIN_TIMEOUT = 10.0

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


class Boom(Exception):
    pass


async def loop_and_thread() -> tuple[asyncio.AbstractEventLoop, str]:
    await asyncio.sleep(0)
    return asyncio.get_running_loop(), threading.current_thread().name


def in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a new plain thread and return its result (or raise its error)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # handed back to the test thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive(), "deadlock: the call did not return"
    if "error" in box:
        raise box["error"]
    return box["result"]


def test_plain_thread_reuses_one_loop() -> None:
    def body() -> tuple[Any, ...]:
        first, _ = AsyncHelper.run_async_in_sync(loop_and_thread())
        created = loops_created()
        second, name = AsyncHelper.run_async_in_sync(loop_and_thread())
        return first, second, created, loops_created(), name, thread_loop()

    first, second, created, created_after, name, own = in_thread(body)
    assert first is second is own
    assert created_after == created
    assert name != "MainThread"


def test_each_thread_has_its_own_loop() -> None:
    loops = [in_thread(lambda: AsyncHelper.run_async_in_sync(loop_and_thread())[0]) for _ in range(2)]
    main_loop = AsyncHelper.run_async_in_sync(loop_and_thread())[0]
    assert len({id(loops[0]), id(loops[1]), id(main_loop)}) == 3
    # A finished thread's loop is closed with it, not left to ResourceWarning.
    assert all(loop.is_closed() for loop in loops)
    assert not main_loop.is_closed()


def test_result_and_exception_pass_through_unchanged() -> None:
    error = Boom("exact object")

    async def fail() -> None:
        await asyncio.sleep(0)
        raise error

    assert AsyncHelper.run_async_in_sync(asyncio.sleep(0, 42)) == 42
    with pytest.raises(Boom) as info:
        AsyncHelper.run_async_in_sync(fail())
    assert info.value is error
    # The loop survives a failing call.
    assert AsyncHelper.run_async_in_sync(asyncio.sleep(0, "again")) == "again"


def test_tasks_left_running_are_cancelled() -> None:
    outcome: list[str] = []

    async def background() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    async def spawn() -> str:
        asyncio.ensure_future(background())
        await asyncio.sleep(0)
        return "returned"

    assert AsyncHelper.run_async_in_sync(spawn()) == "returned"
    assert outcome == ["cancelled"]
    assert not asyncio.all_tasks(thread_loop())


def test_from_inside_a_running_loop_uses_helper_thread() -> None:
    def sync_function() -> tuple[Any, ...]:
        # A sync function called by async code: its thread's loop is running.
        request_id.set("req-7")
        loop1, name = AsyncHelper.run_async_in_sync(loop_and_thread())
        after_first = loops_created()
        loop2, _ = AsyncHelper.run_async_in_sync(loop_and_thread())
        seen = AsyncHelper.run_async_in_sync(_read_request_id())
        return loop1, loop2, name, seen, loops_created() - after_first

    async def outer() -> tuple[Any, ...]:
        return asyncio.get_running_loop(), *sync_function()

    outer_loop, loop1, loop2, name, seen, created = in_thread(lambda: asyncio.run(outer()))
    assert loop1 is loop2
    assert loop1 is not outer_loop
    assert name.startswith("async-utils-helper")
    assert seen == "req-7"  # the caller's context reaches the coroutine
    assert created == 0  # the helper loop is persistent too


async def _read_request_id() -> str:
    await asyncio.sleep(0)
    return request_id.get()


def test_nested_calls_on_helper_loops_do_not_deadlock() -> None:
    async def innermost() -> str:
        await asyncio.sleep(0)
        return "deep"

    async def middle() -> str:
        return AsyncHelper.run_async_in_sync(innermost())

    async def outer() -> str:
        return AsyncHelper.run_async_in_sync(middle())

    assert in_thread(lambda: asyncio.run(outer())) == "deep"
    # Also from the thread's own loop rather than asyncio.run's.
    assert AsyncHelper.run_async_in_sync(outer()) == "deep"


def test_exceptions_cross_the_helper_thread_unchanged() -> None:
    error = Boom("from helper")

    async def fail() -> None:
        raise error

    async def outer() -> None:
        AsyncHelper.run_async_in_sync(fail())

    with pytest.raises(Boom) as info:
        in_thread(lambda: asyncio.run(outer()))
    assert info.value is error


def test_rejects_non_awaitable() -> None:
    with pytest.raises(TypeError, match="awaitable"):
        AsyncHelper.run_async_in_sync(42)  # type: ignore[arg-type]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_fresh_loops() -> None:
    parent_loop = AsyncHelper.run_async_in_sync(loop_and_thread())[0]

    @async_route
    async def view() -> str:
        await asyncio.sleep(0)
        return "ok"

    async def under_running_loop() -> str:
        return AsyncHelper.run_async_in_sync(asyncio.sleep(0, "helper"))

    # Make sure a helper loop exists in the parent too, so the child must replace it.
    assert AsyncHelper.run_async_in_sync(under_running_loop()) == "helper"

    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python >= 3.12 warns about forking with threads (the helper's); the
        # child below only runs code that is safe after fork.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.close(read_end)
            before = loops_created()
            child_loop = thread_loop()
            checks = [
                child_loop is not parent_loop,
                not child_loop.is_closed(),
                loops_created() == before + 1,
                AsyncHelper.run_async_in_sync(loop_and_thread())[0] is child_loop,
                view() == "ok",
                AsyncHelper.run_async_in_sync(under_running_loop()) == "helper",
                thread_loop() is child_loop,
            ]
            os.write(write_end, repr(checks).encode())
            code = 0 if all(checks) else 1
        except BaseException as exc:  # reported to the parent through the pipe
            os.write(write_end, repr(exc).encode())
            code = 2
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report
    # The parent's loop is untouched by the child.
    assert AsyncHelper.run_async_in_sync(loop_and_thread())[0] is parent_loop
    assert not parent_loop.is_closed()


def test_a_closed_thread_loop_is_replaced() -> None:
    def body() -> tuple[Any, ...]:
        first = thread_loop()
        first.close()
        before = loops_created()
        second = AsyncHelper.run_async_in_sync(loop_and_thread())[0]
        return first, second, loops_created() - before

    first, second, created = in_thread(body)
    assert second is not first
    assert created == 1
