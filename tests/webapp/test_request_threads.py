"""The worker's request threads (webapp.server.threads.RequestThreads): no thread start on the caller's
thread, the last idle thread serves next, a bound on threads, work submitted first goes first, shutdown."""

from __future__ import annotations

import threading
import time
from concurrent import futures

import pytest

from webapp.server.threads import RequestThreads

WAIT = 30  # seconds any single step may take on a loaded machine (never reached when things work)


@pytest.fixture
def pool():
    threads = RequestThreads(4, name="test-request")
    yield threads
    threads.shutdown(wait=True, cancel_futures=True)


def _name() -> str:
    return threading.current_thread().name


def test_results_and_exceptions_travel_in_the_future(pool):
    assert pool.submit(lambda a, b=0: a + b, 2, b=3).result(WAIT) == 5
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(WAIT)


def test_the_caller_never_starts_a_thread(pool, monkeypatch):
    """Thread.start waits for the new thread to run; the worker's main loop must never pay that."""
    starters: list[str] = []
    real_start = threading.Thread.start

    def start(thread):
        starters.append(_name())
        return real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    release = threading.Event()
    running = [pool.submit(release.wait, WAIT) for _ in range(4)]
    pool.submit(_name)
    release.set()
    futures.wait(running, WAIT)
    assert 1 <= len(starters) <= 4
    assert set(starters) == {"test-request-starter"}  # the pool's own starter thread, made with the pool


def test_the_thread_idle_for_the_shortest_time_takes_the_next_request(pool):
    gate = threading.Barrier(4)
    first = [pool.submit(lambda: (gate.wait(WAIT), _name())[1]) for _ in range(4)]
    names = [f.result(WAIT) for f in first]
    assert len(set(names)) == 4
    # the four went idle in some order; the last to finish is the first to serve again, every time
    served = [pool.submit(_name).result(WAIT) for _ in range(20)]
    assert len(set(served)) == 1


def test_never_more_threads_than_the_bound_and_the_backlog_is_first_in_first_out(pool):
    release = threading.Event()
    busy = [pool.submit(release.wait, WAIT) for _ in range(4)]
    order: list[int] = []
    waiting = [pool.submit(order.append, i) for i in range(10)]
    assert pool.threads == 4
    release.set()
    futures.wait(busy + waiting, WAIT)
    assert order == list(range(10))
    assert pool.threads == 4


def test_work_submitted_first_goes_ahead_of_the_backlog(pool):
    release = threading.Event()
    busy = [pool.submit(release.wait, WAIT) for _ in range(4)]
    order: list[str] = []
    queued = [pool.submit(order.append, f"request {i}") for i in range(3)]
    health = pool.submit_first(order.append, "health check")
    release.set()
    futures.wait(busy + queued + [health], WAIT)
    assert order[0] == "health check"


def test_shutdown_ends_idle_threads_and_refuses_new_work():
    pool = RequestThreads(3, name="test-shutdown")
    gate = threading.Barrier(3)
    names = {f.result(WAIT) for f in [pool.submit(lambda: (gate.wait(WAIT), _name())[1]) for _ in range(3)]}
    pool.shutdown(wait=True)
    assert not [t for t in threading.enumerate() if t.name in names]
    assert pool.threads == 0
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(_name)


def test_shutdown_without_waiting_lets_busy_threads_finish_the_backlog():
    pool = RequestThreads(1, name="test-drain")
    release = threading.Event()
    busy = pool.submit(release.wait, WAIT)
    queued = pool.submit(lambda: "done")
    pool.shutdown(wait=False)
    release.set()
    assert busy.result(WAIT) is True and queued.result(WAIT) == "done"
    deadline = time.monotonic() + WAIT
    while pool.threads and time.monotonic() < deadline:  # poll: the thread ends once the backlog is empty
        time.sleep(0.01)
    assert pool.threads == 0


def test_cancel_futures_cancels_the_backlog():
    pool = RequestThreads(1, name="test-cancel")
    release = threading.Event()
    running = threading.Event()
    busy = pool.submit(lambda: (running.set(), release.wait(WAIT))[1])
    assert running.wait(WAIT)
    queued = pool.submit(lambda: "never")
    pool.shutdown(wait=False, cancel_futures=True)
    release.set()
    assert busy.result(WAIT) is True
    assert queued.cancelled()
    pool.shutdown(wait=True)


def test_a_bound_below_one_is_refused():
    with pytest.raises(ValueError, match="max_threads"):
        RequestThreads(0)
