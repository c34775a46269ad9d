"""The response cache (LLM_CACHE=sqlite) through real gunicorn with two workers: hits and coalescing."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer
from webapp import create_app

CHAT = "/v1/chat/completions"
# gunicorn's access log, one line per request with the worker's pid: "<1234> POST /api/chat 200"
_ACCESS_LINE = re.compile(r"^<(\d+)> POST /api/chat (\d{3})$")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    folder = tmp_path_factory.mktemp("cache_gunicorn")
    env = {
        "LLM_BASE_URL": _upstream_server.base_url,
        "LLM_MAX_RETRIES": "0",
        "LLM_CACHE": f"sqlite:{folder / 'llm_cache.db'}",
        "GUNICORN_CMD_ARGS": f"--access-logfile {folder / 'access.log'} --access-logformat '%(p)s %(m)s %(U)s %(s)s'",
    }
    with GunicornServer(env, workers=2, threads=4, log_path=folder / "gunicorn.log") as server:
        server.access_log = folder / "access.log"  # type: ignore[attr-defined]
        yield server


def chats(upstream: FakeUpstream) -> int:
    return upstream.stats()["by_path"].get(CHAT, 0)


def ask(served: GunicornServer, message: str, temperature: float = 0) -> tuple[int, dict[str, Any]]:
    """One POST /api/chat on a fresh connection (so the kernel may hand it to either worker)."""
    body = {"message": message, "temperature": temperature, "max_tokens": 32}
    with requests.post(f"{served.url}/api/chat", json=body, timeout=60, headers={"Connection": "close"}) as r:
        return r.status_code, r.json()


def chat_pids(served: GunicornServer, offset: int, expected: int) -> list[int]:
    """Pids of the workers that answered the chat requests logged after byte ``offset``."""
    path: Path = served.access_log  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while True:  # a worker writes the access line just after sending the response
        with path.open("rb") as f:
            f.seek(offset)
            lines = f.read().decode().splitlines()
        pids = [int(m.group(1)) for line in lines if (m := _ACCESS_LINE.match(line.strip()))]
        if len(pids) >= expected or time.monotonic() >= deadline:
            return pids
        time.sleep(0.05)


def test_a_burst_of_20_identical_requests_reaches_the_upstream_once(
    served: GunicornServer, upstream: FakeUpstream
) -> None:
    upstream.configure(delay=0.5)
    workers: set[int] = set()
    # The kernel hands a burst's connections to the workers unevenly (sometimes all to one):
    # repeat, bounded, until both workers took part in one burst.
    for burst in range(10):
        message = f"what is the answer, burst {burst}"
        offset = served.access_log.stat().st_size  # type: ignore[attr-defined]
        before = chats(upstream)
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda _: ask(served, message), range(20)))
        assert results == [(200, results[0][1])] * 20
        assert results[0][1]["response"] == f"echo: {message}"
        assert chats(upstream) - before == 1
        pids = chat_pids(served, offset, 20)
        assert len(pids) == 20
        workers = set(pids)
        if len(workers) >= 2:
            break
    assert len(workers) >= 2, "every request of every burst went to one worker"


def test_cache_hits_and_nondeterministic_requests(served: GunicornServer, upstream: FakeUpstream) -> None:
    first = ask(served, "cache me")
    assert first[0] == 200 and chats(upstream) == 1
    with ThreadPoolExecutor(8) as pool:  # fresh connections, at once: both workers answer from the shared file
        assert list(pool.map(lambda _: ask(served, "cache me"), range(8))) == [first] * 8
    assert chats(upstream) == 1
    status, body = ask(served, "cache me", temperature=0.7)
    assert (status, body["response"]) == (200, "echo: cache me") and chats(upstream) == 2
    ask(served, "cache me", temperature=0.7)
    assert chats(upstream) == 3  # temperature > 0 is never cached


def test_memory_cache_in_the_app(upstream: FakeUpstream) -> None:
    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0",
                      "LLM_CACHE": "memory", "FLOWBRIDGE_TASK_DB": "memory"})
    with app.test_client() as client:
        answers = [client.post("/api/chat", json={"message": "hi", "temperature": 0}) for _ in range(3)]
        assert [r.status_code for r in answers] == [200] * 3
        assert answers[0].get_json() == answers[2].get_json()
        assert [r.headers.get("X-Cache") for r in answers] == ["miss", "hit", "hit"]
        assert chats(upstream) == 1
        uncached = client.post("/api/chat", json={"message": "hi"})  # default temperature 0.7
        assert uncached.status_code == 200 and "X-Cache" not in uncached.headers
        assert chats(upstream) == 2


def test_20_identical_chats_against_the_default_deployment_share_one_upstream_call(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    """gunicorn.conf.py's defaults (workers, threads, pool, queue): only the bind address, LLM_BASE_URL
    and LLM_CACHE are set. Every request answers 200, and the upstream is called once: requests that
    wait for another's call (in their worker, or in the other through the SQLite claim) hold no LLM slot."""
    server = GunicornServer({"LLM_BASE_URL": upstream.base_url, "LLM_CACHE": f"sqlite:{tmp_path / 'cache.db'}"},
                            log_path=tmp_path / "gunicorn.log")
    for name in list(server.env):  # nothing but the defaults: no sizes, and none of the caller's settings
        if name.startswith(("LLM_", "OPENAI_", "FLOWBRIDGE_", "GUNICORN_", "WEB_CONCURRENCY")):
            del server.env[name]
    server.env.update({"FLOWBRIDGE_BIND": f"127.0.0.1:{server.port}", "LLM_BASE_URL": upstream.base_url,
                       "LLM_CACHE": f"sqlite:{tmp_path / 'cache.db'}"})
    upstream.configure(delay=2.0)
    running: list[float] = []
    with server:
        with ThreadPoolExecutor(21) as pool:
            burst = [pool.submit(ask, server, "one answer for all") for _ in range(20)]
            while not all(f.done() for f in burst) and len(running) < 400:  # bounded: ~20 s of scrapes
                running.append(pool_running(server))
                time.sleep(0.05)
            results = [f.result(timeout=60) for f in burst]
    assert [status for status, _ in results] == [200] * 20
    assert {body["response"] for _, body in results} == {"echo: one answer for all"}
    assert chats(upstream) == 1
    # Only the one upstream call ever ran on an LLM pool thread (summed over both workers).
    assert running and max(running) <= 1  # (0 while no worker had its client yet)


def pool_running(server: GunicornServer) -> float:
    """``flowbridge_llm_pool_running`` of /metrics: LLM calls on pool threads, all workers."""
    with requests.get(f"{server.url}/metrics", timeout=30) as response:
        values = [float(line.rsplit(" ", 1)[1]) for line in response.text.splitlines()
                  if line.startswith("flowbridge_llm_pool_running")]
    return sum(values)  # no gauge yet: no worker has made its LLM client, so nothing runs on a pool thread
