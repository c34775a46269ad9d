"""Coalesced requests (LLM_CACHE) wait without a pool thread: only the call that reaches the upstream takes one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llm_client import ChatCompletion, LLMClient
from tests.fake_upstream import FakeUpstream

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "what is two plus two"}]


def make(upstream: FakeUpstream, cache: str) -> LLMClient:
    """A client whose pool has ONE slot: one thread, no queue. A second call holding a slot is refused."""
    return LLMClient(upstream.base_url, model="m1", max_retries=0, max_workers=1, queue_size=0,
                     env={"LLM_CACHE": cache})


def chats(upstream: FakeUpstream) -> int:
    return upstream.stats()["by_path"].get(CHAT, 0)


async def burst(clients: list[LLMClient], n: int) -> list[ChatCompletion]:
    """``n`` identical temperature-0 calls at once, spread over ``clients`` (as over gunicorn workers)."""
    return await asyncio.gather(*(clients[i % len(clients)].chat_completion_async(MESSAGES, 0, 30)
                                  for i in range(n)))


def test_memory_waiters_hold_no_pool_slot(upstream: FakeUpstream) -> None:
    upstream.configure(delay=0.5)
    with make(upstream, "memory") as client:
        results = asyncio.run(burst([client], 20))
        assert {r.text for r in results} == {"echo: what is two plus two"}
        assert sorted(r.cache for r in results).count("miss") == 1
        assert chats(upstream) == 1
        assert client.pool_stats.running == client.pool_stats.queued == 0


def test_sqlite_waiters_in_two_processes_hold_no_pool_slot(upstream: FakeUpstream, tmp_path: Path) -> None:
    """Two clients sharing the file, like two workers: the second one's requests poll the claim row
    without taking its only slot."""
    upstream.configure(delay=0.5)
    spec = f"sqlite:{tmp_path / 'cache.db'}"
    with make(upstream, spec) as a, make(upstream, spec) as b:
        results = asyncio.run(burst([a, b], 20))
        assert {r.text for r in results} == {"echo: what is two plus two"}
        assert [r.cache for r in results].count("miss") == 1
        assert chats(upstream) == 1


def test_a_failed_leader_lets_async_waiters_call_themselves(upstream: FakeUpstream) -> None:
    upstream.configure(delay=0.3)
    upstream.push_faults({"status": 500})
    with LLMClient(upstream.base_url, model="m1", max_retries=0, max_workers=4,
                   env={"LLM_CACHE": "memory"}) as client:
        async def three() -> list[ChatCompletion | BaseException]:
            return await asyncio.gather(*(client.chat_completion_async(MESSAGES, 0, 30) for _ in range(3)),
                                        return_exceptions=True)

        results = asyncio.run(three())
    assert sum(isinstance(r, BaseException) for r in results) == 1  # the leader's own error, not shared
    assert {r.text for r in results if isinstance(r, ChatCompletion)} == {"echo: what is two plus two"}
    assert chats(upstream) == 3


@pytest.mark.parametrize("cache", ["memory", "sqlite"])
def test_a_cancelled_waiter_leaves_the_others_alone(upstream: FakeUpstream, tmp_path: Path, cache: str) -> None:
    upstream.configure(delay=0.5)
    spec = "memory" if cache == "memory" else f"sqlite:{tmp_path / 'cache.db'}"
    with make(upstream, spec) as client:
        async def run() -> list[ChatCompletion]:
            leader = asyncio.ensure_future(client.chat_completion_async(MESSAGES, 0, 30))
            quitter = asyncio.ensure_future(client.chat_completion_async(MESSAGES, 0, 30))
            stayer = asyncio.ensure_future(client.chat_completion_async(MESSAGES, 0, 30))
            await asyncio.sleep(0.05)
            quitter.cancel()
            return [await leader, await stayer]

        results = asyncio.run(run())
    assert [r.text for r in results] == ["echo: what is two plus two"] * 2
    assert chats(upstream) == 1
