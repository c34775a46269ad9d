"""A burst of 1,000 submissions against one gunicorn app server and two ``flowbridge worker`` processes on a
real Redis (``FLOWBRIDGE_BROKER_URL``) with a small ``FLOWBRIDGE_MAX_QUEUED_TASKS``: the queue's depth limit
refuses some with 503 + Retry-After, and every task it accepted finishes ``succeeded`` (none lost, none left
``pending`` or ``processing``). The cluster helpers are tests/webapp/test_task_queue_services.py's."""

from __future__ import annotations

import collections
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer
from tests.services import RedisServer, redis_server  # noqa: F401 (fixture)
from tests.webapp.test_task_queue_services import Cluster
from tests.webapp.test_tasks_api import simple_schema
from workflow.store import make_task_store

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

SUBMISSIONS = 1000
#: client threads submitting at once (the burst is bounded: no more connections than this)
CLIENTS = 8
#: the queue's depth limit: small next to the burst, so that the workers cannot keep up and some are refused
MAX_QUEUED = 40
#: the Redis database of this module (tests/webapp/test_task_queue_services.py counts up from 1)
REDIS_DATABASE = 15


def _submit(url: str, i: int) -> tuple[int, int, dict[str, str], Any]:
    """``POST /api/task/run`` of task ``i``: (i, status, headers, JSON body or None)."""
    with requests.post(url, json={"schema": simple_schema(prompt_node=True), "inputs": {"q": f"burst {i}"}},
                       timeout=60) as response:
        try:
            body = response.json()
        except ValueError:
            body = None
        return i, response.status_code, dict(response.headers), body


def test_a_burst_of_1000_submissions_every_accepted_task_succeeds_and_refusals_are_503(
        tmp_path: Path, upstream: FakeUpstream, redis_server: RedisServer) -> None:  # noqa: F811
    broker = f"{redis_server.url.rsplit('/', 1)[0]}/{REDIS_DATABASE}"
    redis.Redis.from_url(broker).flushdb()
    task_db = str(tmp_path / "tasks.db")
    env = {"LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0", "FLOWBRIDGE_TASK_DB": task_db,
           "FLOWBRIDGE_BROKER_URL": broker, "FLOWBRIDGE_MAX_QUEUED_TASKS": str(MAX_QUEUED)}
    upstream.configure(delay=0.02)  # fast, but the two workers cannot keep up with the burst
    cluster = Cluster(tmp_path, env)
    cluster.app = GunicornServer(env, workers=2, threads=CLIENTS + 4, log_path=tmp_path / "app.log")
    try:
        cluster.app.start()
        cluster.add_worker(concurrency=4)
        cluster.add_worker(concurrency=4)

        url = f"{cluster.app.url}/api/task/run"
        accepted: dict[str, int] = {}
        refused: collections.Counter[str] = collections.Counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            for i, status, headers, body in pool.map(lambda n: _submit(url, n), range(SUBMISSIONS)):
                if status == 200:
                    accepted[body["taskID"]] = i
                    continue
                assert status == 503, (status, body)
                assert int(headers["Retry-After"]) > 0, headers
                refused[body["error"]["type"] if isinstance(body, dict) else "not JSON"] += 1
        assert len(accepted) + sum(refused.values()) == SUBMISSIONS
        assert refused["overloaded"] > 0, refused  # the depth limit was reached ...
        assert len(accepted) >= MAX_QUEUED, refused  # ... and the queue took at least its depth

        # every accepted task ends, succeeded (bounded poll on the shared store)
        with make_task_store(task_db) as store:
            deadline = time.monotonic() + 180
            while store.count("succeeded") < len(accepted) and time.monotonic() < deadline:
                if store.count("failed") or store.count("canceled"):
                    break
                time.sleep(0.2)
            counts = {s: store.count(s) for s in ("pending", "processing", "succeeded", "failed", "canceled")}
            assert counts == {"pending": 0, "processing": 0, "succeeded": len(accepted), "failed": 0,
                              "canceled": 0}, counts
            assert store.count() == len(accepted)  # a refused submission was not recorded
            for task_id, i in accepted.items():
                record = store.get(task_id)
                assert record is not None and record.status == "succeeded", (task_id, record)
                assert record.outputs == {"answer": f"echo: burst {i}"}, record.outputs
        # each accepted task ran once: one upstream call per task
        by_path = upstream.stats()["by_path"]
        assert sum(n for path, n in by_path.items() if path.endswith("/chat/completions")) == len(accepted), by_path
        # the queue is empty and, once the workers acknowledged their last messages, nothing is left unacked
        client = redis.Redis.from_url(broker)
        deadline = time.monotonic() + 60
        while client.hlen("unacked") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.llen("flowbridge") == 0 and client.hlen("unacked") == 0
    finally:
        cluster.close()
        try:
            redis.Redis.from_url(broker).flushdb()
        except redis.RedisError:
            pass
