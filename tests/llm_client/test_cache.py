"""The response cache (LLM_CACHE) and coalescing of LLMClient.chat_completion, against the fake upstream."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_client import ChatCompletion, LLMClient, LLMConfigError, LLMStatusError
from tests.fake_upstream import FakeUpstream

SECRET = "sk-cache-secret-987654321"
CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "what is two plus two"}]


def make(upstream: FakeUpstream, cache: str = "memory", **env: str) -> LLMClient:
    return LLMClient(upstream.base_url, api_key=SECRET, model="m1", max_retries=0,
                     env={"LLM_CACHE": cache, **env})


def chats(upstream: FakeUpstream) -> int:
    return upstream.stats()["by_path"].get(CHAT, 0)


def run_together(n: int, fn: Callable[[int], ChatCompletion]) -> list[ChatCompletion | BaseException]:
    """``fn(i)`` in ``n`` threads released at once; each result or exception, in thread order."""
    barrier = threading.Barrier(n)
    results: list[ChatCompletion | BaseException | None] = [None] * n

    def work(i: int) -> None:
        barrier.wait(10)
        try:
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - collected for the assertions
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    return results  # type: ignore[return-value]


# -- memory -------------------------------------------------------------------------------


def test_a_repeated_deterministic_request_is_a_hit(upstream: FakeUpstream) -> None:
    with make(upstream) as client:
        first = client.chat_completion(MESSAGES, temperature=0, max_tokens=20)
        second = client.chat_completion(MESSAGES, temperature=0.0, max_tokens=20)
        assert client.chat("what is two plus two", temperature=0, max_tokens=20) == first.text
    assert (first.cache, second.cache) == ("miss", "hit")
    assert first == second  # text, model, finish_reason and usage; `cache` does not compare
    assert (second.text, second.model, second.finish_reason) == ("echo: what is two plus two", "fake-model", "stop")
    assert second.usage == first.usage and second.usage["total_tokens"] > 0
    assert chats(upstream) == 1


def test_other_parameters_miss_and_nonzero_temperature_or_streams_are_never_cached(upstream: FakeUpstream) -> None:
    with make(upstream) as client:
        client.chat_completion(MESSAGES, temperature=0, max_tokens=20)
        assert client.chat_completion(MESSAGES, temperature=0, max_tokens=21).cache == "miss"
        assert client.chat_completion([{"role": "system", "content": "be brief"}, *MESSAGES],
                                      temperature=0, max_tokens=20).cache == "miss"
        assert chats(upstream) == 3
        for _ in range(2):
            assert client.chat_completion(MESSAGES, temperature=0.7, max_tokens=20).cache is None
            assert "".join(client.chat_stream(MESSAGES, temperature=0, max_tokens=20)) == "echo: what is two plus two"
        assert chats(upstream) == 7
    assert chats(upstream) == 7


def test_another_model_or_api_key_is_another_entry(upstream: FakeUpstream, tmp_path: Path) -> None:
    env = {"LLM_CACHE": f"sqlite:{tmp_path / 'cache.db'}"}
    with LLMClient(upstream.base_url, api_key=SECRET, model="m1", max_retries=0, env=env) as client:
        assert client.chat_completion(MESSAGES, 0).cache == "miss"
    with LLMClient(upstream.base_url, api_key=SECRET, model="m2", max_retries=0, env=env) as client:
        assert client.chat_completion(MESSAGES, 0).cache == "miss"
    with LLMClient(upstream.base_url, api_key="sk-another-key-000", model="m1", max_retries=0, env=env) as client:
        assert client.chat_completion(MESSAGES, 0).cache == "miss"
    with LLMClient(upstream.base_url, api_key=SECRET, model="m1", max_retries=0, env=env) as client:
        assert client.chat_completion(MESSAGES, 0).cache == "hit"
    assert chats(upstream) == 3


def test_entries_expire_after_the_ttl(upstream: FakeUpstream) -> None:
    with make(upstream, LLM_CACHE_TTL="1.0") as client:  # long enough for the second call to come before it
        assert client.chat_completion(MESSAGES, temperature=0).cache == "miss"
        assert client.chat_completion(MESSAGES, temperature=0).cache == "hit"
        deadline = time.monotonic() + 10
        while (how := client.chat_completion(MESSAGES, temperature=0).cache) == "hit":
            assert time.monotonic() < deadline, "the entry never expired"
            time.sleep(0.05)
        assert how == "miss"
    assert chats(upstream) == 2


def test_errors_are_not_cached(upstream: FakeUpstream) -> None:
    upstream.push_faults({"status": 400, "body": {"error": {"message": "bad field"}}})
    with make(upstream) as client:
        with pytest.raises(LLMStatusError):
            client.chat_completion(MESSAGES, temperature=0)
        assert client.chat_completion(MESSAGES, temperature=0).cache == "miss"
        assert client.chat_completion(MESSAGES, temperature=0).cache == "hit"
    assert chats(upstream) == 2


def test_ten_identical_calls_in_flight_share_one_upstream_call(upstream: FakeUpstream) -> None:
    upstream.configure(delay=0.3)
    with make(upstream, LLM_ASYNC_WORKERS="10") as client:
        results = run_together(10, lambda i: client.chat_completion(MESSAGES, temperature=0))
    assert all(isinstance(r, ChatCompletion) and r.text == "echo: what is two plus two" for r in results)
    hows = sorted(r.cache for r in results)  # type: ignore[union-attr]
    assert hows.count("miss") == 1 and set(hows) <= {"miss", "coalesced", "hit"} and "coalesced" in hows
    assert chats(upstream) == 1


def test_async_calls_coalesce_through_the_sync_path(upstream: FakeUpstream) -> None:
    upstream.configure(delay=0.3)

    async def burst(client: LLMClient) -> list[ChatCompletion]:
        return await asyncio.gather(*(client.chat_completion_async(MESSAGES, 0, 30) for _ in range(8)))

    with make(upstream, LLM_ASYNC_WORKERS="8") as client:
        results = asyncio.run(burst(client))
    assert {r.text for r in results} == {"echo: what is two plus two"}
    assert chats(upstream) == 1


def test_a_failed_leader_lets_the_followers_call_themselves(upstream: FakeUpstream) -> None:
    upstream.configure(delay=0.3)
    upstream.push_faults({"status": 500})  # the first request to arrive: the leader's
    with make(upstream) as client:
        results = run_together(6, lambda i: client.chat_completion(MESSAGES, temperature=0))
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], LLMStatusError) and errors[0].status_code == 500
        assert {r.text for r in results if isinstance(r, ChatCompletion)} == {"echo: what is two plus two"}
        assert chats(upstream) == 6  # the failure was not shared: each follower made its own call
        assert client.chat_completion(MESSAGES, temperature=0).cache == "hit"
    assert chats(upstream) == 6


# -- sqlite ----------------------------------------------------------------------------------


def test_sqlite_is_shared_between_clients_and_stores_no_prompt_or_key(upstream: FakeUpstream, tmp_path: Path) -> None:
    db = tmp_path / "cache.db"
    with make(upstream, f"sqlite:{db}") as first:
        assert first.chat_completion(MESSAGES, temperature=0).cache == "miss"
    with make(upstream, "sqlite", LLM_CACHE_PATH=str(db)) as second:  # plain "sqlite" uses LLM_CACHE_PATH
        hit = second.chat_completion(MESSAGES, temperature=0)
    assert (hit.cache, hit.text) == ("hit", "echo: what is two plus two")
    assert chats(upstream) == 1
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert SECRET.encode() not in stored and b"two plus two" not in stored.replace(b"echo: what is two plus two", b"")


def test_sqlite_coalesces_across_caches_like_workers(upstream: FakeUpstream, tmp_path: Path) -> None:
    """Two clients with their own in-process flights (as two gunicorn workers) share one call via the claim row."""
    upstream.configure(delay=0.5)
    spec = f"sqlite:{tmp_path / 'cache.db'}"
    with make(upstream, spec) as a, make(upstream, spec) as b:
        results = run_together(10, lambda i: (a, b)[i % 2].chat_completion(MESSAGES, 0))
        assert {r.text for r in results} == {"echo: what is two plus two"}  # type: ignore[union-attr]
        assert chats(upstream) == 1
        assert a.chat_completion(MESSAGES, 0).cache == b.chat_completion(MESSAGES, 0).cache == "hit"


def test_sqlite_failed_claim_is_released_and_waiters_call_themselves(upstream: FakeUpstream, tmp_path: Path) -> None:
    upstream.configure(delay=0.4)
    upstream.push_faults({"status": 503})
    spec = f"sqlite:{tmp_path / 'cache.db'}"
    failed: list[BaseException] = []

    def lead() -> None:
        try:
            a.chat_completion(MESSAGES, 0)
        except LLMStatusError as exc:
            failed.append(exc)

    with make(upstream, spec) as a, make(upstream, spec) as b:
        leader = threading.Thread(target=lead)
        leader.start()
        assert upstream.wait_for(lambda s: s["in_flight"] == 1)  # a holds the claim now
        answer = b.chat_completion(MESSAGES, 0)  # waits on a's claim, then calls itself
        leader.join(10)
        assert not leader.is_alive()
    assert len(failed) == 1
    assert (answer.cache, answer.text) == ("miss", "echo: what is two plus two")
    assert chats(upstream) == 2
    with sqlite3.connect(tmp_path / "cache.db") as db:
        assert db.execute("SELECT COUNT(*) FROM llm_responses WHERE value IS NULL").fetchone()[0] == 0


def _claim_row(path: Path, pid: int, lease_end: float) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE llm_responses SET value = NULL, expires_at = ?, pid = ?, token = 'other'",
                   (lease_end, pid))


def test_sqlite_claim_of_a_dead_process_or_an_old_lease_is_taken_over(upstream: FakeUpstream, tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    with make(upstream, f"sqlite:{path}", LLM_CACHE_TTL="600") as client:
        client.chat_completion(MESSAGES, 0)  # creates the row, then we turn it into a foreign claim
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
        _claim_row(path, int(dead.stdout), time.time() + 600)
        assert client.chat_completion(MESSAGES, 0).cache == "miss"  # claimer is dead: not waited for
        _claim_row(path, 1, time.time() - 1)  # pid 1 lives, but its lease ran out
        assert client.chat_completion(MESSAGES, 0).cache == "miss"
        assert client.chat_completion(MESSAGES, 0).cache == "hit"
    assert chats(upstream) == 3


# -- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "named"), [
    ({"LLM_CACHE": "redis"}, "LLM_CACHE"),
    ({"LLM_CACHE": "sqlite:"}, "LLM_CACHE"),
    ({"LLM_CACHE": "memory", "LLM_CACHE_TTL": "0"}, "LLM_CACHE_TTL"),
    ({"LLM_CACHE": "memory", "LLM_CACHE_TTL": "soon"}, "LLM_CACHE_TTL"),
    ({"LLM_CACHE": "memory", "LLM_CACHE_SIZE": "0"}, "LLM_CACHE_SIZE"),
])
def test_bad_cache_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(LLMConfigError, match=named):
        LLMClient("http://127.0.0.1:9/v1", env=env)


def test_an_unopenable_sqlite_file_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LLMConfigError, match="LLM_CACHE"):
        LLMClient("http://127.0.0.1:9/v1", env={"LLM_CACHE": f"sqlite:{blocker}/sub/cache.db"})


def test_cache_is_off_by_default(upstream: FakeUpstream) -> None:
    with LLMClient(upstream.base_url, max_retries=0, env={}) as client:
        assert client.chat_completion(MESSAGES, 0).cache is None
        assert client.chat_completion(MESSAGES, 0).cache is None
    assert chats(upstream) == 2
