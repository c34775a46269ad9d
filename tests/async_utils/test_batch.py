"""``AsyncBatchProcessor``."""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
import warnings

import pytest

from async_utils import AsyncBatchProcessor

from .conftest import InFlight


class Boom(Exception):
    pass


def test_results_in_input_order(in_flight: InFlight) -> None:
    async def process(i: int) -> int:
        # Later items finish first.
        return await in_flight.work(i * 10, 0.001 * (20 - i))  # type: ignore[return-value]

    processor = AsyncBatchProcessor(process, batch_size=3, max_workers=4)
    assert asyncio.run(processor.process_batch(range(20))) == [i * 10 for i in range(20)]


@pytest.mark.parametrize(("batch_size", "max_workers"), [(10, 5), (2, 5), (1, 3), (50, 1)])
def test_max_workers_bounds_items_in_flight(batch_size: int, max_workers: int, in_flight: InFlight) -> None:
    processor = AsyncBatchProcessor(in_flight.work, batch_size=batch_size, max_workers=max_workers)
    assert asyncio.run(processor.process_batch(list(range(23)))) == list(range(23))
    # Chunks are no barrier: the workers stay busy even when batch_size < max_workers.
    assert in_flight.peak == max_workers
    assert in_flight.started == 23


def test_batch_size_bounds_coroutines_created_up_front() -> None:
    batch_size, max_workers = 4, 2
    live_counts: list[int] = []

    def live_item_coroutines() -> int:
        code = AsyncBatchProcessor._process.__code__
        return sum(
            1
            for obj in gc.get_objects()
            if inspect.iscoroutine(obj)
            and obj.cr_code is code
            and inspect.getcoroutinestate(obj) != inspect.CORO_CLOSED
        )

    async def process(i: int) -> int:
        live_counts.append(live_item_coroutines())
        await asyncio.sleep(0)
        return i

    processor = AsyncBatchProcessor(process, batch_size=batch_size, max_workers=max_workers)
    assert asyncio.run(processor.process_batch(range(40))) == list(range(40))
    assert len(live_counts) == 40
    assert max(live_counts) <= batch_size + max_workers


def test_progress_called_after_each_item(in_flight: InFlight) -> None:
    calls: list[tuple[int, int]] = []
    processor = AsyncBatchProcessor(
        in_flight.work, batch_size=4, max_workers=3, progress=lambda done, total: calls.append((done, total))
    )
    asyncio.run(processor.process_batch(["a", "b", "c", "d", "e", "f", "g"]))
    assert calls == [(n, 7) for n in range(1, 8)]


def test_sync_process_func_runs_off_the_loop_thread() -> None:
    loop_thread: list[int] = []
    lock = threading.Lock()
    state = {"now": 0, "peak": 0}
    release = threading.Event()

    def process(item: str) -> str:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            if state["now"] == 2:
                release.set()
        release.wait(5)  # blocks a worker thread, never the loop
        with lock:
            state["now"] -= 1
        assert threading.get_ident() not in loop_thread
        return item.upper()

    async def main() -> list[object]:
        loop_thread.append(threading.get_ident())
        return await AsyncBatchProcessor(process, batch_size=3, max_workers=2).process_batch("abcde")

    assert asyncio.run(main()) == ["A", "B", "C", "D", "E"]
    assert state["peak"] == 2


def test_sync_function_returning_a_coroutine_is_awaited() -> None:
    async def double(i: int) -> int:
        await asyncio.sleep(0)
        return 2 * i

    processor = AsyncBatchProcessor(lambda i: double(i), max_workers=2)
    assert asyncio.run(processor.process_batch([1, 2, 3])) == [2, 4, 6]


def test_async_callable_object() -> None:
    class Upper:
        async def __call__(self, item: str) -> str:
            await asyncio.sleep(0)
            return item.upper()

    assert asyncio.run(AsyncBatchProcessor(Upper()).process_batch(["x", "y"])) == ["X", "Y"]


def test_return_exceptions_keeps_every_item() -> None:
    calls: list[int] = []

    async def process(i: int) -> int:
        await asyncio.sleep(0.001)
        if i % 4 == 1:
            raise Boom(i)
        return i

    processor = AsyncBatchProcessor(process, batch_size=3, max_workers=2, progress=lambda d, t: calls.append(d))
    results = asyncio.run(processor.process_batch(range(10), return_exceptions=True))
    assert len(results) == 10
    assert [r.args[0] for r in results if isinstance(r, Boom)] == [1, 5, 9]
    assert [r for r in results if not isinstance(r, Boom)] == [0, 2, 3, 4, 6, 7, 8]
    assert calls == list(range(1, 11))


def test_first_failure_raises_and_cancels_the_rest() -> None:
    started: list[int] = []
    cancelled: list[int] = []

    async def process(i: int) -> int:
        started.append(i)
        if i == 2:
            await asyncio.sleep(0)
            raise Boom("item 2")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    processor = AsyncBatchProcessor(process, batch_size=2, max_workers=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(Boom, match="item 2"):
            asyncio.run(processor.process_batch(range(100)))
        gc.collect()
    assert started == [0, 1, 2]
    assert sorted(cancelled) == [0, 1]
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []


def test_generator_and_empty_input() -> None:
    processor = AsyncBatchProcessor(lambda x: x + 1, batch_size=2, max_workers=2)
    assert asyncio.run(processor.process_batch(i for i in range(5))) == [1, 2, 3, 4, 5]
    assert asyncio.run(processor.process_batch([])) == []


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": -2}, "batch_size"),
        ({"batch_size": 2.0}, "batch_size"),
        ({"max_workers": 0}, "max_workers"),
        ({"max_workers": True}, "max_workers"),
    ],
)
def test_invalid_sizes_raise_value_error_naming_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        AsyncBatchProcessor(lambda x: x, **kwargs)


def test_non_callables_are_rejected() -> None:
    with pytest.raises(TypeError, match="process_func"):
        AsyncBatchProcessor(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress"):
        AsyncBatchProcessor(lambda x: x, progress=5)  # type: ignore[arg-type]
