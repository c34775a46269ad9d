"""The LLM pool gauges under real gunicorn: every live worker keeps its values current, so a scrape
(whichever worker answers it) sees LLM calls that run now, not what a worker last wrote at a request's end."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer

CALLS = 3


def pool_running(folder: Path) -> float:
    """``flowbridge_llm_pool_running`` as any scrape computes it: the sum over the live workers' files."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    value = registry.get_sample_value("flowbridge_llm_pool_running")
    return 0.0 if value is None else value


def poll(folder: Path, wanted: float) -> float:
    """The gauge once it shows ``wanted`` (bounded: 20 s), else its last value."""
    value = pool_running(folder)
    for _ in range(200):
        if value == wanted:
            break
        time.sleep(0.1)
        value = pool_running(folder)
    return value


def test_pool_gauges_follow_the_calls_of_every_worker_between_requests(tmp_path: Path,
                                                                      upstream: FakeUpstream) -> None:
    env = {"LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0", "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db")}
    with GunicornServer(env, workers=2, threads=8, log_path=tmp_path / "gunicorn.log") as server:
        with requests.get(server.url + "/metrics", timeout=10) as r:  # the log names the directory by now
            assert r.status_code == 200
        log = (tmp_path / "gunicorn.log").read_text(errors="replace")
        folder = Path(re.search(r"Prometheus multiprocess directory: (\S+)", log).group(1))  # type: ignore[union-attr]
        upstream.configure(delay=6.0)
        with ThreadPoolExecutor(CALLS) as pool:
            chats = [pool.submit(requests.post, server.url + "/api/chat", json={"message": f"q{i}"}, timeout=60)
                     for i in range(CALLS)]
            assert upstream.wait_for(lambda s: s["in_flight"] == CALLS, timeout=20)
            # No request has ended since the calls began, and nothing scraped: the workers wrote it themselves.
            during = poll(folder, CALLS)
            assert upstream.stats()["in_flight"] == CALLS  # still running when it was read
            for chat in chats:
                with chat.result() as r:
                    assert r.status_code == 200
        assert during == CALLS
        assert poll(folder, 0) == 0
        with requests.get(server.url + "/metrics", timeout=10) as r:
            assert "flowbridge_llm_pool_running 0.0" in r.text
