"""webapp.guards.gate: at most N permits out, served in arrival order, each for at most its lease, given
back early by ``waiting()`` from the request's own thread or any thread that carries its context (the
LLM client's pool does), and through a real LLM call by the client's wait observer."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from llm_client import LLMClient
from llm_client.observe import add_wait_observer, remove_wait_observer
from tests.fake_upstream import FakeUpstream
from webapp.guards.gate import StartGate, admitted, waiting

WAIT = 30.0  # seconds any step may take on a loaded machine before the test fails


def until(predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


def enter_in_thread(gate: StartGate, entered: list, name: object) -> threading.Thread:
    def run() -> None:
        permit = gate.enter()
        entered.append((name, permit))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_at_most_slots_permits_are_out_and_a_release_lets_the_next_in() -> None:
    gate = StartGate(2, lease=60)
    first, second = gate.enter(), gate.enter()
    assert gate.holding == 2
    entered: list = []
    thread = enter_in_thread(gate, entered, "third")
    assert until(lambda: gate.waiting == 1)
    assert entered == []  # still waiting: both permits are out, their leases far from over
    first.release()
    thread.join(WAIT)
    assert [name for name, _ in entered] == ["third"]
    assert gate.holding == 2 and gate.waiting == 0
    second.release()
    entered[0][1].release()
    assert gate.holding == 0


def test_waiters_are_served_in_arrival_order() -> None:
    gate = StartGate(1, lease=60)
    held = gate.enter()
    entered: list = []
    threads = []
    for i in range(6):
        threads.append(enter_in_thread(gate, entered, i))
        assert until(lambda i=i: gate.waiting == i + 1)  # each is in line before the next arrives
    for _ in range(6):
        count = len(entered)
        held.release()
        assert until(lambda count=count: len(entered) == count + 1)
        held = entered[-1][1]
    held.release()
    for thread in threads:
        thread.join(WAIT)
    assert [name for name, _ in entered] == list(range(6))


def test_a_permit_past_its_lease_no_longer_counts_and_its_late_release_grants_nothing() -> None:
    gate = StartGate(1, lease=0.2)
    stale = gate.enter()  # never released in time: its holder waits on something nobody reported
    entered: list = []
    enter_in_thread(gate, entered, "next").join(WAIT)
    assert [name for name, _ in entered] == ["next"]  # let in once the lease ended
    fresh = entered[0][1]
    blocked: list = []
    enter_in_thread(gate, blocked, "third")
    assert until(lambda: gate.waiting == 1)
    stale.release()  # too late: it frees nothing, "third" still waits for "next"'s permit or lease
    stale.release()  # and twice is harmless
    assert gate.waiting == 1 and blocked == []
    fresh.release()
    assert until(lambda: blocked != [])
    blocked[0][1].release()


def test_a_gate_needs_a_slot_and_a_positive_lease() -> None:
    with pytest.raises(ValueError, match="at least 1 slot"):
        StartGate(0, lease=1)
    with pytest.raises(ValueError, match="lease must be positive"):
        StartGate(1, lease=0)


def test_waiting_gives_the_requests_permit_back_and_is_a_no_op_elsewhere() -> None:
    waiting()  # no request, no permit: nothing happens
    gate = StartGate(1, lease=60)
    with admitted(gate):
        assert gate.holding == 1
        waiting()
        assert gate.holding == 0
        waiting()  # again: still nothing to give back
        other = gate.enter()  # the slot is free for another request
        other.release()
    assert gate.holding == 0
    with admitted(None):  # no gate (a health check, or the gate switched off)
        waiting()
    waiting()  # the request's permit is no longer in the context once it left


def test_the_permit_travels_with_the_context_to_another_thread() -> None:
    gate = StartGate(1, lease=60)
    with admitted(gate):
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(waiting,))
        thread.start()
        thread.join(WAIT)
        assert gate.holding == 0


@pytest.fixture
def observed() -> Iterator[None]:
    add_wait_observer(waiting)
    try:
        yield
    finally:
        remove_wait_observer(waiting)


@pytest.fixture
def slow_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        upstream.configure(delay=2.0)
        yield upstream


@pytest.mark.parametrize("call", ["chat", "chat_async", "stream"])
def test_a_real_llm_call_gives_the_permit_back_once_it_waits_for_the_upstream(
        observed: None, slow_upstream: FakeUpstream, call: str) -> None:
    gate = StartGate(1, lease=60)
    client = LLMClient(base_url=slow_upstream.base_url, api_key="k", model="fake-model", max_retries=0)
    released_while_in_flight: list[bool] = []

    def watch() -> None:  # once the call is at the upstream, the slot must be free
        at_upstream = slow_upstream.wait_for(lambda s: s["in_flight"] >= 1, timeout=WAIT)
        released_while_in_flight.append(at_upstream and gate.holding == 0)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with admitted(gate):
            if call == "chat":
                client.chat("hi")
            elif call == "chat_async":
                asyncio.run(client.chat_async("hi"))  # sent from the client's pool thread, in our context
            else:
                for _ in client.chat_stream("hi"):
                    pass
    finally:
        watcher.join(WAIT)
        client.close()
    assert released_while_in_flight == [True]


def test_metrics_show_the_requests_waiting_at_the_gate(upstream: FakeUpstream) -> None:
    from webapp import create_app
    from webapp.guards.gate import install

    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url})
    gate = StartGate(1, lease=60)
    held = gate.enter()
    entered: list = []
    install(gate)
    try:
        enter_in_thread(gate, entered, "waiter")
        assert until(lambda: gate.waiting == 1)
        text = app.test_client().get("/metrics").get_data(as_text=True)
        assert "\nflowbridge_start_gate_waiting 1.0\n" in text
        held.release()
        assert until(lambda: entered != [])
        entered[0][1].release()
        text = app.test_client().get("/metrics").get_data(as_text=True)
        assert "\nflowbridge_start_gate_waiting 0.0\n" in text
    finally:
        install(None)
