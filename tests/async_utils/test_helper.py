"""``AsyncHelper.run_with_timeout`` and ``AsyncHelper.gather_with_limit``."""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

from async_utils import AsyncHelper

from .conftest import InFlight


class Boom(Exception):
    pass


# -- run_with_timeout ------------------------------------------------------------


def test_run_with_timeout_returns_result() -> None:
    async def main() -> object:
        return await AsyncHelper.run_with_timeout(asyncio.sleep(0, "done"), timeout=5)

    assert asyncio.run(main()) == "done"


def test_run_with_timeout_cancels_and_raises_timeout_error() -> None:
    seen: list[str] = []

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()  # never set: only cancellation ends it
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def main() -> None:
        await AsyncHelper.run_with_timeout(stuck(), timeout=0.01)

    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(main())
    assert seen == ["cancelled"]


def test_run_with_timeout_none_waits_and_errors_pass_through() -> None:
    async def fail() -> None:
        await asyncio.sleep(0)
        raise Boom("x")

    async def main() -> object:
        with pytest.raises(Boom):
            await AsyncHelper.run_with_timeout(fail(), timeout=None)
        return await AsyncHelper.run_with_timeout(asyncio.sleep(0.001, 1), None)

    assert asyncio.run(main()) == 1


@pytest.mark.parametrize("timeout", [-1, float("nan"), "5"])
def test_run_with_timeout_rejects_bad_timeout_and_closes_coroutine(timeout: object) -> None:
    coro = asyncio.sleep(0)

    async def main() -> None:
        await AsyncHelper.run_with_timeout(coro, timeout)  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="timeout"):
        asyncio.run(main())
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


# -- gather_with_limit -------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 3, 7])
def test_gather_bounds_running_coroutines_and_keeps_order(limit: int, in_flight: InFlight) -> None:
    # Later items finish first, so order can only come from the positions.
    delays = [0.002 * (12 - i) for i in range(12)]

    async def main() -> list[object]:
        aws = [in_flight.work(i, d) for i, d in enumerate(delays)]
        return await AsyncHelper.gather_with_limit(aws, limit=limit)

    assert asyncio.run(main()) == list(range(12))
    assert in_flight.peak == limit
    assert in_flight.started == 12


def test_gather_starts_coroutines_only_when_a_slot_is_free() -> None:
    started: list[int] = []

    async def item(i: int, gate: asyncio.Event) -> int:
        started.append(i)
        await gate.wait()
        return i

    async def main() -> list[object]:
        gates = [asyncio.Event() for _ in range(4)]
        gather = asyncio.ensure_future(
            AsyncHelper.gather_with_limit([item(i, g) for i, g in enumerate(gates)], limit=2)
        )
        for _ in range(5):
            await asyncio.sleep(0)
        assert started == [0, 1]
        gates[1].set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert started == [0, 1, 2]
        for gate in gates:
            gate.set()
        return await gather

    assert asyncio.run(main()) == [0, 1, 2, 3]


def test_gather_bounds_calls_submitted_to_a_thread_pool() -> None:
    """Like ``LLMClient.chat_async``: a coroutine that submits to a pool only when awaited."""
    lock = threading.Lock()
    state = {"now": 0, "peak": 0, "calls": 0}

    def blocking_call(i: int) -> int:
        with lock:
            state["now"] += 1
            state["calls"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.005)
        with lock:
            state["now"] -= 1
        return i * i

    async def main(pool: ThreadPoolExecutor) -> list[object]:
        loop = asyncio.get_running_loop()

        async def chat_async(i: int) -> int:
            return await loop.run_in_executor(pool, blocking_call, i)

        tasks = [chat_async(i) for i in range(20)]
        assert state["calls"] == 0  # nothing submitted before awaiting
        return await AsyncHelper.gather_with_limit(tasks, limit=3)

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert asyncio.run(main(pool)) == [i * i for i in range(20)]
    assert state["peak"] <= 3
    assert state["calls"] == 20


def test_gather_first_exception_cancels_running_and_closes_unstarted() -> None:
    running_cancelled: list[int] = []

    async def slow(i: int) -> int:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            running_cancelled.append(i)
            raise
        return i

    async def fail() -> None:
        await asyncio.sleep(0)
        raise Boom("second item failed")

    unstarted = [slow(i) for i in range(3, 8)]

    async def main() -> None:
        aws = [slow(0), fail(), slow(2), *unstarted]
        await AsyncHelper.gather_with_limit(aws, limit=3)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(Boom, match="second item failed"):
            asyncio.run(main())
        assert sorted(running_cancelled) == [0, 2]
        assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in unstarted)
        unstarted.clear()  # drop the last references: a never-awaited one would warn now
        gc.collect()
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []


def test_gather_return_exceptions_keeps_every_slot(in_flight: InFlight) -> None:
    async def fail(i: int) -> None:
        await asyncio.sleep(0.001)
        raise Boom(i)

    async def main() -> list[object]:
        aws = [fail(i) if i % 3 == 0 else in_flight.work(i, 0.001) for i in range(10)]
        return await AsyncHelper.gather_with_limit(aws, limit=2, return_exceptions=True)

    results = asyncio.run(main())
    assert len(results) == 10
    for i, result in enumerate(results):
        if i % 3 == 0:
            assert isinstance(result, Boom) and result.args == (i,)
        else:
            assert result == i
    assert in_flight.cancelled == 0
    assert in_flight.peak <= 2


def test_gather_accepts_tasks_and_futures(in_flight: InFlight) -> None:
    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        loop.call_soon(future.set_result, "future")
        task = asyncio.ensure_future(in_flight.work("task"))
        return await AsyncHelper.gather_with_limit([in_flight.work("coro"), task, future], limit=1)

    assert asyncio.run(main()) == ["coro", "task", "future"]


def test_gather_empty_and_generator_input() -> None:
    async def main() -> tuple[list[object], list[object]]:
        empty = await AsyncHelper.gather_with_limit([], limit=1)
        generated = await AsyncHelper.gather_with_limit((asyncio.sleep(0, i) for i in range(3)), 2)
        return empty, generated

    assert asyncio.run(main()) == ([], [0, 1, 2])


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, None])
def test_gather_rejects_bad_limit_and_closes_coroutines(limit: object) -> None:
    coros = [asyncio.sleep(0) for _ in range(3)]

    async def main() -> None:
        await AsyncHelper.gather_with_limit(coros, limit=limit)  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="limit must be an integer >= 1"):
        asyncio.run(main())
    assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in coros)


def test_gather_rejects_non_awaitables() -> None:
    coro = asyncio.sleep(0)

    async def main() -> None:
        await AsyncHelper.gather_with_limit([coro, 42], limit=2)  # type: ignore[list-item]

    with pytest.raises(TypeError, match="int"):
        asyncio.run(main())
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def test_cancelling_gather_cancels_its_running_items(in_flight: InFlight) -> None:
    async def main() -> None:
        gather = asyncio.ensure_future(
            AsyncHelper.gather_with_limit([in_flight.work(i, 10) for i in range(5)], limit=2)
        )
        for _ in range(100):
            if in_flight.now == 2:
                break
            await asyncio.sleep(0)
        assert in_flight.now == 2
        gather.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gather

    asyncio.run(main())
    assert in_flight.cancelled == 2
    assert in_flight.started == 2
