"""Backpressure and body limits under real gunicorn (gthread): 503 + Retry-After at once when saturated,
``/healthz`` answering meanwhile, and 413 JSON for an oversize body on every kind of API route."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer
from tests.webapp.test_tasks_api import simple_schema

TWO_MIB = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    """2 workers x 4 threads, but only 2 LLM slots per worker and no queue: the pool is the limit."""
    folder = tmp_path_factory.mktemp("backpressure")
    env = {"LLM_BASE_URL": _upstream_server.base_url, "LLM_MAX_RETRIES": "0", "LLM_ASYNC_WORKERS": "2",
           "LLM_ASYNC_QUEUE_SIZE": "0", "FLOWBRIDGE_TASK_DB": str(folder / "tasks.db")}
    with GunicornServer(env, workers=2, threads=4, log_path=folder / "gunicorn.log") as server:
        yield server


def chat_burst(url: str, upstream: FakeUpstream, n: int) -> tuple[list[dict[str, Any]], list[int]]:
    """``n`` concurrent chats; while they run, health checks. Each result has its place in the
    order the answers came back (``seq``)."""
    order = itertools.count()

    def ask(i: int) -> dict[str, Any]:
        with requests.post(f"{url}/api/chat", json={"message": f"q{i}"}, timeout=30) as r:
            return {"status": r.status_code, "body": r.json(), "retry_after": r.headers.get("Retry-After"),
                    "seq": next(order)}

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(ask, i) for i in range(n)]
        assert upstream.wait_for(lambda s: s["in_flight"] >= 2, timeout=20)
        health = []
        for _ in range(4):
            with requests.get(f"{url}/healthz", timeout=30) as r:
                health.append(r.status_code)
        assert upstream.stats()["in_flight"] > 0  # the health checks came back while the LLM calls still ran
        results = [f.result() for f in futures]
    return results, health


def test_a_saturated_llm_pool_answers_503_at_once_and_health_still_answers(served: GunicornServer,
                                                                              upstream: FakeUpstream) -> None:
    upstream.configure(delay=3.0)  # every refusal and health check must come back within it, on a busy machine too
    results, health = chat_burst(served.url, upstream, 16)
    assert health == [200] * 4
    ok = [r for r in results if r["status"] == 200]
    refused = [r for r in results if r["status"] == 503]
    assert len(ok) + len(refused) == 16
    assert 2 <= len(ok) <= 4 * 2 and refused  # at most 2 slots per worker at a time; the rest refused
    for r in refused:
        assert r["retry_after"] == "1"
        assert r["body"]["error"]["type"] == "overloaded"
    # every refusal came back before the first answer (each takes the upstream's 3 s): none waited for a slot
    assert max(r["seq"] for r in refused) < min(r["seq"] for r in ok)
    assert upstream.stats()["max_concurrency"] <= 4  # 2 workers x 2 LLM slots
    # once the burst is over the pool takes calls again
    upstream.configure(delay=0.0)
    with requests.post(f"{served.url}/api/chat", json={"message": "after"}, timeout=30) as r:
        assert r.status_code == 200 and r.json()["response"] == "echo: after"


def test_reserved_threads_keep_health_checks_answering_when_every_thread_would_be_busy(
        tmp_path: Path, upstream: FakeUpstream) -> None:
    """A pool as large as the request threads (the default sizing): without a reserve, every thread could
    wait on the LLM and health checks would queue behind them. With 1 of 4 reserved, the 4th is refused."""
    env = {"LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0", "LLM_ASYNC_WORKERS": "8",
           "FLOWBRIDGE_RESERVED_THREADS": "1", "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db")}
    upstream.configure(delay=3.0)  # every refusal and health check must come back within it, on a busy machine too
    with GunicornServer(env, workers=1, threads=4, log_path=tmp_path / "gunicorn.log") as server:
        results, health = chat_burst(server.url, upstream, 10)
    assert health == [200] * 4
    ok = [r for r in results if r["status"] == 200]
    refused = [r for r in results if r["status"] == 503]
    assert ok and refused and len(ok) + len(refused) == 10
    for r in refused:  # refused at once: no queue (FLOWBRIDGE_QUEUE_DEPTH is 0 for 4 threads)
        assert int(r["retry_after"]) >= 1 and r["body"]["error"]["type"] == "overloaded"
        assert "work slots" in r["body"]["error"]["message"]
    assert max(r["seq"] for r in refused) < min(r["seq"] for r in ok)
    assert upstream.stats()["max_concurrency"] <= 3  # 4 threads, 1 kept free


def test_an_oversize_body_is_413_json_on_every_kind_of_api_route(served: GunicornServer) -> None:
    big = "x" * TWO_MIB
    posts: list[tuple[str, dict[str, Any]]] = [
        ("/api/chat", {"json": {"message": big}}),
        ("/api/ops/echo_tool", {"json": {"inputs": {"text": big}}}),
        ("/api/task/run", {"json": {"schema": simple_schema(), "inputs": {"q": big}}}),
        ("/invoke/word_count", {"json": {"inputs": {"text": big}}}),
        ("/invoke/process_text_file", {"files": {"file": ("big.txt", big.encode(), "text/plain")},
                                       "data": {"every": "10"}}),
    ]
    # Each on its own connection: gunicorn drains at most 64 KiB of a body the app did not read, then
    # closes the connection after the answer (so a client must not send another request on it).
    for path, kwargs in posts:
        with requests.post(served.url + path, timeout=30, **kwargs) as r:
            assert r.status_code == 413, (path, r.status_code, r.text[:200])
            assert r.headers["Content-Type"].startswith("application/json"), path
            assert r.json()["error"]["type"] == "request_entity_too_large", path
    # the workers are fine afterwards, and a body just under the limit is accepted
    text = "y" * 1_000_000  # the most word_count takes; the body is just under 1 MiB
    with requests.post(f"{served.url}/invoke/word_count", data=json.dumps({"inputs": {"text": text}}),
                       headers={"Content-Type": "application/json"}, timeout=30) as r:
        assert r.status_code == 200, r.text[:200]
        assert r.json()["result"]["characters"] == len(text)
