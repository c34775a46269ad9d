"""/metrics and request IDs under real gunicorn with 2 workers: counts add up across workers."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer

HEALTHZ = ("flowbridge_http_requests_total", frozenset({("method", "GET"), ("route", "/healthz"), ("status", "200")}))
CHAT = ("flowbridge_http_requests_total", frozenset({("method", "POST"), ("route", "/api/chat"), ("status", "200")}))
UPSTREAM_OK = ("flowbridge_upstream_requests_total",
               frozenset({("path", "/chat/completions"), ("outcome", "ok")}))
UPSTREAM_SECONDS = ("flowbridge_upstream_request_duration_seconds_count", frozenset({("path", "/chat/completions")}))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    folder = tmp_path_factory.mktemp("metrics")
    env = {"LLM_BASE_URL": _upstream_server.base_url, "LLM_MAX_RETRIES": "0", "LOG_FORMAT": "json",
           "FLOWBRIDGE_TASK_DB": str(folder / "tasks.db")}
    with GunicornServer(env, workers=2, threads=4, log_path=folder / "gunicorn.log") as server:
        yield server


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    # A fresh connection each time, so either worker may answer.
    with requests.get(url + "/metrics", timeout=10, headers={"Connection": "close"}) as response:
        assert response.status_code == 200
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(response.text) for s in family.samples}


def log_lines(server: GunicornServer) -> list[str]:
    assert server.log_path is not None
    return server.log_path.read_text(errors="replace").splitlines()


def wait_for_log(server: GunicornServer, ids: set[str]) -> list[dict]:
    """The JSON access lines of ``ids``, waiting (bounded) for the last ones to be written."""
    for _ in range(100):
        lines = [line for line in log_lines(server) if any(f'"{i}"' in line for i in ids)]
        entries = [json.loads(line) for line in lines]
        access = [e for e in entries if e["logger"] == "flowbridge.access"]
        if {e["request_id"] for e in access} >= ids:
            return access
        time.sleep(0.1)
    raise AssertionError(f"request ids missing from {server.log_path}")


def test_counts_add_up_across_workers_and_logs_carry_request_ids(
    served: GunicornServer, upstream: FakeUpstream
) -> None:
    before = scrape(served.url)

    def health(i: int) -> tuple[str, int]:
        rid = f"hz-{i}"
        with requests.get(served.url + "/healthz", headers={"X-Request-ID": rid, "Connection": "close"},
                          timeout=10) as r:
            assert r.status_code == 200 and r.headers["X-Request-ID"] == rid
            return rid, r.json()["pid"]

    def chat(i: int) -> str:
        rid = f"chat-{i}"
        with requests.post(served.url + "/api/chat", json={"message": f"m{i}"},
                           headers={"X-Request-ID": rid, "Connection": "close"}, timeout=30) as r:
            assert r.status_code == 200 and r.headers["X-Request-ID"] == rid
            return rid

    pids: dict[str, int] = {}
    with ThreadPoolExecutor(8) as pool:
        for round_ in range(5):  # 40 at a time until both workers have answered some (almost always at once)
            pids.update(pool.map(health, range(40 * round_, 40 * (round_ + 1))))
            if len(set(pids.values())) == 2:
                break
        chats = list(pool.map(chat, range(10)))
    assert len(set(pids.values())) == 2, "one worker served every request"
    assert upstream.stats()["requests"] == 10

    # Counted when each response started, so already complete; every scrape, whichever worker answers, agrees.
    for _ in range(6):
        after = scrape(served.url)
        assert after[HEALTHZ] - before.get(HEALTHZ, 0) == len(pids)
        assert after[CHAT] - before.get(CHAT, 0) == 10
        assert after[UPSTREAM_OK] - before.get(UPSTREAM_OK, 0) == 10
        assert after[UPSTREAM_SECONDS] - before.get(UPSTREAM_SECONDS, 0) == 10
        assert not [key for key in after if ("route", "/metrics") in key[1]]

    access = wait_for_log(served, set(pids) | set(chats))
    assert {e["request_id"]: e["pid"] for e in access if e["request_id"] in pids} == pids
    assert {e["path"] for e in access} == {"/healthz", "/api/chat"} and {e["status"] for e in access} == {200}
    lines = [line for line in log_lines(served) if line.strip()]
    entries = [json.loads(line) for line in lines]  # the app's lines and gunicorn's own: one JSON object each
    for entry in entries:
        assert {"time", "level", "logger", "message", "request_id"} <= entry.keys()
    assert entries[0]["logger"] == "gunicorn.error" and "Starting gunicorn" in entries[0]["message"]
    assert any(e["logger"] == "gunicorn.error" and "Booting worker" in e["message"] for e in entries)


def test_a_restarted_worker_keeps_its_counts_and_drops_its_live_gauges(served: GunicornServer) -> None:
    with requests.post(served.url + "/api/chat", json={"message": "gauges"}, timeout=30) as r:
        assert r.status_code == 200  # the worker that served it has an LLM pool, hence live gauges
    before = scrape(served.url)
    match = next(re.search(r"Prometheus multiprocess directory: ([^\s\"]+)", line) for line in log_lines(served)
                 if "Prometheus multiprocess directory" in line)
    folder = Path(match.group(1))
    with_gauges = sorted(int(p.stem.rsplit("_", 1)[1]) for p in folder.glob("gauge_livesum_*.db"))
    assert with_gauges, "no worker has written its pool gauges"
    victim = with_gauges[0]
    os.kill(victim, signal.SIGTERM)  # a worker of the gunicorn this test started; the master replaces it
    for _ in range(200):
        if not (folder / f"gauge_livesum_{victim}.db").exists():
            break
        time.sleep(0.1)
    assert not (folder / f"gauge_livesum_{victim}.db").exists()
    after = scrape(served.url)  # answered by the other worker or the new one; the victim's counts remain
    assert after[HEALTHZ] == before[HEALTHZ] and after[CHAT] == before[CHAT]
    assert after[UPSTREAM_OK] == before[UPSTREAM_OK]
