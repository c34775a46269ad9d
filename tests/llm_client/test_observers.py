"""llm_client.observe: wait observers hear of every wait for the upstream (each attempt, retries included, and
a cached call waiting for an identical one in flight), on the calling thread; a failing observer never fails
the call. Against the fake upstream over real HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from llm_client import LLMClient
from llm_client.observe import add_call_observer, add_wait_observer, remove_call_observer, remove_wait_observer
from tests.fake_upstream import FakeUpstream


@pytest.fixture
def waits() -> Iterator[list[str]]:
    heard: list[str] = []

    def observer() -> None:
        heard.append(threading.current_thread().name)

    add_wait_observer(observer)
    add_wait_observer(observer)  # twice is once
    try:
        yield heard
    finally:
        remove_wait_observer(observer)


def test_each_attempt_is_reported_before_it_is_sent_on_the_calling_thread(
        waits: list[str], upstream: FakeUpstream) -> None:
    upstream.push_faults({"kind": "reset"})
    outcomes: list[str] = []

    def record(path: str, seconds: float, outcome: str) -> None:
        outcomes.append(outcome)

    add_call_observer(record)
    try:
        with LLMClient(base_url=upstream.base_url, api_key="k", model="m", max_retries=1) as client:
            assert client.chat("hello")
    finally:
        remove_call_observer(record)
    assert waits == [threading.current_thread().name] * 2  # the reset attempt and the retry
    assert outcomes == ["connection_error", "ok"]


def test_a_cached_call_that_waits_for_an_identical_one_in_flight_reports_its_wait(
        waits: list[str], upstream: FakeUpstream) -> None:
    upstream.configure(delay=1.0)
    with LLMClient(base_url=upstream.base_url, api_key="k", model="m", cache="memory") as client, \
            ThreadPoolExecutor(2) as pool:
        leader = pool.submit(client.chat, "same question")
        assert upstream.wait_for(lambda s: s["in_flight"] == 1, timeout=30)
        follower = pool.submit(client.chat, "same question")
        assert leader.result(30) == follower.result(30)
    assert upstream.stats()["requests"] == 1
    assert len(waits) == 2  # the leader's send, the follower's wait for it


def test_an_observer_that_raises_is_logged_and_the_call_goes_on(
        upstream: FakeUpstream, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise RuntimeError("observer bug")

    add_wait_observer(broken)
    try:
        with LLMClient(base_url=upstream.base_url, api_key="k", model="m") as client:
            assert client.chat("hello")
    finally:
        remove_wait_observer(broken)
    assert "wait observer" in caplog.text and "observer bug" in caplog.text
    remove_wait_observer(broken)  # removing one that is gone is a no-op
