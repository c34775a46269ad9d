"""The work slots and bounded wait queue of webapp.guards.capacity, on their own."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from webapp.guards.capacity import RETRY_AFTER_MAX, Capacity


def wait_until(predicate, what: str) -> None:  # type: ignore[no-untyped-def]
    event = threading.Event()
    for _ in range(500):
        if predicate():
            return
        event.wait(0.01)
    raise AssertionError(f"never: {what}")


def test_slots_then_a_fifo_queue_then_refusal() -> None:
    capacity = Capacity(slots=1, depth=2, max_wait=30)
    first = capacity.take()
    assert first is not None and capacity.busy == 1
    order: list[str] = []

    def wait(name: str) -> None:
        slot = capacity.take()
        assert slot is not None
        order.append(name)
        slot.release()

    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(wait, "a")
        wait_until(lambda: capacity.waiting == 1, "a waits")
        b = pool.submit(wait, "b")
        wait_until(lambda: capacity.waiting == 2, "b waits")
        assert capacity.take() is None  # the queue is full: refused at once
        first.release()  # handed to the longest-waiting request, which hands it on
        a.result(30)
        b.result(30)
    assert order == ["a", "b"]
    assert capacity.busy == 0 and capacity.waiting == 0


def test_a_wait_that_runs_out_leaves_the_queue() -> None:
    capacity = Capacity(slots=1, depth=1, max_wait=0.05)
    slot = capacity.take()
    assert slot is not None
    assert capacity.take() is None  # waited 0.05 s in vain
    assert capacity.waiting == 0 and capacity.busy == 1
    slot.release()
    slot.release()  # a second release is a no-op
    assert capacity.busy == 0


def test_retry_after_grows_with_the_queue_and_the_service_time() -> None:
    capacity = Capacity(slots=2, depth=10, max_wait=30)
    assert capacity.retry_after() == 1  # nothing known yet: the shortest
    for _ in range(50):  # slots held about 10 s each
        capacity.busy += 1
        capacity._give_back(10.0)
    short_queue = capacity.retry_after()
    assert 5 <= short_queue <= 6  # (0 waiting + 1) x ~10 s / 2 slots
    capacity.busy = 2  # every slot taken: the next requests wait
    waiters = [threading.Thread(target=capacity.take, kwargs={"timeout": 5}, daemon=True) for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    wait_until(lambda: capacity.waiting == 4, "requests wait")
    assert capacity.retry_after() == 25  # (4 waiting + 1) x 10 s / 2 slots
    for waiter in waiters:
        waiter.join(10)
    slow = Capacity(slots=1, depth=1, max_wait=30)
    slow.busy += 1
    slow._give_back(10_000.0)
    assert slow.retry_after() == RETRY_AFTER_MAX
