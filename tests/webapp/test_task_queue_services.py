"""Workflow tasks on Celery workers through Redis (``FLOWBRIDGE_BROKER_URL``), end to end with real servers:
a real redis-server (tests/services.py), gunicorn app servers and ``python -m webapp.cli worker`` processes,
sharing one task store. The Task API answers through the app while workers run the tasks; a worker killed
with SIGKILL fails its task within the documented bound (never left processing, never run twice); tasks
queued on a Redis that restarts empty still end; a full queue answers 503 with Retry-After."""

from __future__ import annotations

import importlib.util
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer, QueueWorker
from tests.services import RedisServer, postgres_server, redis_server  # noqa: F401 (fixtures)
from tests.webapp.test_tasks_api import simple_schema
from workflow.store import make_task_store

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

#: FLOWBRIDGE_ORPHAN_AFTER of these tests: a lost worker's task is failed this long after its last heartbeat.
ORPHAN_AFTER = 6.0
_databases = itertools.count(1)  # a Redis database per test: nothing queued leaks into the next


def _store_kinds() -> list[str]:
    """SQLite always; PostgreSQL once the store speaks it (workflow/sql_store.py)."""
    return ["sqlite"] + (["postgresql"] if importlib.util.find_spec("workflow.sql_store") else [])


@pytest.fixture(params=_store_kinds())
def task_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """``FLOWBRIDGE_TASK_DB`` shared by the app servers and the workers: a SQLite file or a PostgreSQL URL."""
    if request.param == "sqlite":
        yield str(tmp_path / "tasks.db")
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[str]:  # noqa: F811
    url = f"{redis_server.url.rsplit('/', 1)[0]}/{next(_databases) % 16}"
    redis.Redis.from_url(url).flushdb()
    yield url
    try:
        redis.Redis.from_url(url).flushdb()
    except redis.RedisError:
        pass


Worker = QueueWorker  # the tests below name it so


class Cluster:
    """One gunicorn app server and the workers a test starts, on one broker and one task store."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.app = GunicornServer(env, workers=2, threads=4, log_path=folder / "app.log")
        self.workers: list[Worker] = []

    def add_worker(self, concurrency: int = 2) -> Worker:
        worker = Worker(self.env, self.folder / f"worker{len(self.workers)}.log", concurrency)
        self.workers.append(worker)
        return worker.start()

    def run(self, schema: dict[str, Any], inputs: dict[str, Any]) -> requests.Response:
        return requests.post(f"{self.app.url}/api/task/run", json={"schema": schema, "inputs": inputs}, timeout=30)

    def submit(self, q: str, *, llm: bool = True) -> str:
        with self.run(simple_schema(prompt_node=llm), {"q": q}) as response:
            assert response.status_code == 200, response.text
            return response.json()["taskID"]

    def result(self, task_id: str, timeout: float = 120) -> requests.Response:
        """The task's result once it ended (bounded long polls)."""
        deadline = time.monotonic() + timeout
        while True:
            response = requests.get(f"{self.app.url}/api/task/result", params={"taskID": task_id, "wait": 1},
                                    timeout=30)
            if response.status_code != 202 or time.monotonic() > deadline:
                return response

    def record(self, task_id: str) -> Any:
        with make_task_store(self.env["FLOWBRIDGE_TASK_DB"]) as store:
            return store.get(task_id)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.app.stop()


@pytest.fixture
def cluster_env(tmp_path: Path, upstream: FakeUpstream, task_db: str, broker: str) -> dict[str, str]:
    return {"LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0", "FLOWBRIDGE_TASK_DB": task_db,
            "FLOWBRIDGE_BROKER_URL": broker, "FLOWBRIDGE_ORPHAN_AFTER": str(ORPHAN_AFTER)}


def _cluster(tmp_path: Path, env: dict[str, str]) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, env)
    try:
        cluster.app.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def cluster(tmp_path: Path, cluster_env: dict[str, str]) -> Iterator[Cluster]:
    yield from _cluster(tmp_path, cluster_env)


def _pid_of(owner: str) -> int:
    """The pid in an owner ``host:pid:token``."""
    return int(owner.split(":")[-2])


def test_the_task_api_answers_through_the_app_while_a_worker_runs_the_task(cluster: Cluster,
                                                                           upstream: FakeUpstream) -> None:
    worker = cluster.add_worker()
    task_id = cluster.submit("hello")
    result = cluster.result(task_id)
    assert result.status_code == 200, result.text
    assert result.json() == {"answer": "echo: hello"}
    assert _pid_of(cluster.record(task_id).owner) == worker.pid  # run by the worker, not by gunicorn
    with requests.get(f"{cluster.app.url}/api/task/report", params={"taskID": task_id}, timeout=10) as r:
        report = r.json()
    assert report["workflowStatus"]["status"] == "succeeded" and report["reports"]["llm_0"]["status"] == "succeeded"

    # events: the stream of a task a worker runs, from start to done
    with requests.get(f"{cluster.app.url}/api/task/events", params={"taskID": cluster.submit("streamed")},
                      stream=True, timeout=60) as events:
        text = "".join(chunk for chunk in events.iter_content(chunk_size=None, decode_unicode=True))
    assert '"type":"start"' in text and '"type":"done"' in text and "echo: streamed" in text

    # ?wait= on run, and the task pages
    with requests.post(f"{cluster.app.url}/api/task/run?wait=30",
                       json={"schema": simple_schema(), "inputs": {"q": "waited"}}, timeout=60) as r:
        assert r.json()["status"] == "succeeded" and r.json()["outputs"] == {"answer": "waited"}
    with requests.get(f"{cluster.app.url}/tasks/{task_id}", timeout=10) as page:
        assert page.status_code == 200 and "succeeded" in page.text
    with requests.get(f"{cluster.app.url}/api/tasks", params={"status": "succeeded"}, timeout=10) as listed:
        assert task_id in {t["taskID"] for t in listed.json()["tasks"]}

    # /readyz reports the broker; /metrics the queue and the workers (the worker announces itself in Redis)
    with requests.get(f"{cluster.app.url}/readyz", timeout=30) as ready:
        assert ready.json()["checks"]["broker"]["ok"] is True, ready.text
    with requests.get(f"{cluster.app.url}/metrics", timeout=30) as metrics:
        assert 'flowbridge_workers{state="online"} 1.0' in metrics.text, metrics.text[-2000:]
        assert 'flowbridge_queue_depth{queue="flowbridge"} 0.0' in metrics.text

    # cancel, honoured by the worker while its LLM call hangs
    upstream.push_faults({"kind": "hang", "seconds": 15})  # the worker's slot stays busy until it returns
    slow = cluster.submit("slow")
    assert upstream.wait_for(lambda s: s["in_flight"] >= 1, timeout=60)
    with requests.put(f"{cluster.app.url}/api/task/cancel", json={"taskID": slow}, timeout=10) as r:
        assert r.json() == {"success": True}
    canceled = cluster.result(slow, timeout=60)
    assert canceled.status_code == 409 and canceled.json()["error"]["type"] == "task_canceled", canceled.text
    # the worker goes on with other tasks (its other slot)
    assert cluster.result(cluster.submit("after")).json() == {"answer": "echo: after"}


def test_a_worker_killed_mid_task_fails_it_within_the_bound_and_others_go_on(
        tmp_path: Path, cluster_env: dict[str, str], upstream: FakeUpstream) -> None:
    # a message of the dead worker comes back to the other within seconds (and must not run the task again)
    env = {**cluster_env, "FLOWBRIDGE_BROKER_VISIBILITY_TIMEOUT": "3"}
    for cluster in _cluster(tmp_path, env):
        workers = [cluster.add_worker(), cluster.add_worker()]
        upstream.push_faults({"kind": "hang", "seconds": 120})
        victim_task = cluster.submit("victim")
        assert upstream.wait_for(lambda s: s["in_flight"] >= 1, timeout=60)
        record = cluster.record(victim_task)
        assert record.status == "processing"
        victim = next(w for w in workers if w.pid == _pid_of(record.owner))
        victim.kill()
        killed_at = time.monotonic()

        # other tasks are unaffected: the surviving worker runs them meanwhile
        others = [cluster.submit(f"other {i}") for i in range(4)]
        for i, task_id in enumerate(others):
            assert cluster.result(task_id).json() == {"answer": f"echo: other {i}"}

        # the killed worker's task ends failed, naming the lost worker, within the bound
        result = cluster.result(victim_task, timeout=120)
        waited = time.monotonic() - killed_at
        assert result.status_code == 409, result.text
        message = result.json()["error"]["message"]
        assert record.owner in message and "stopped" in message, message
        assert waited < 120  # the documented bound is ORPHAN_AFTER + a heartbeat; the margin is for slow CI
        # never run twice: once the broker has given the dead worker's message back (and the survivor dropped
        # it), the upstream saw the victim's prompt once, and the task is still failed
        client = redis.Redis.from_url(env["FLOWBRIDGE_BROKER_URL"])
        deadline = time.monotonic() + 90
        while client.hlen("unacked") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.hlen("unacked") == 0
        prompts = [str(entry) for entry in upstream.stats()["requests_log"]]
        assert sum("victim" in p for p in prompts) == 1
        assert cluster.record(victim_task).status == "failed"


def test_tasks_queued_when_redis_restarts_empty_all_end(tmp_path: Path, cluster_env: dict[str, str],
                                                        redis_server: RedisServer) -> None:  # noqa: F811
    for cluster in _cluster(tmp_path, cluster_env):
        queued = [cluster.submit(f"queued {i}") for i in range(5)]  # no worker yet: they wait in Redis
        assert {cluster.record(t).status for t in queued} == {"pending"}
        redis_server.stop()
        with cluster.run(simple_schema(), {"q": "while down"}) as down:  # the broker is gone: 503, saying so
            assert down.status_code == 503 and down.headers["Retry-After"], down.text
            assert down.json()["error"]["type"] == "queue_unavailable"
            assert "Redis at 127.0.0.1" in down.json()["error"]["message"]
        with requests.get(f"{cluster.app.url}/readyz", timeout=30) as ready:
            assert ready.status_code == 503 and ready.json()["checks"]["broker"]["ok"] is False, ready.text
        redis_server.start()  # empty: the queued messages are gone
        cluster.add_worker()
        for i, task_id in enumerate(queued):  # queued again by housekeeping; each one succeeds
            result = cluster.result(task_id)
            assert result.status_code == 200, result.text
            assert result.json() == {"answer": f"echo: queued {i}"}
        # the one refused while Redis was down was not recorded: the client had its 503
        with requests.get(f"{cluster.app.url}/api/tasks", timeout=10) as listed:
            assert {t["status"] for t in listed.json()["tasks"]} == {"succeeded"}


def test_a_burst_beyond_the_queue_depth_gets_503_with_retry_after_and_the_rest_finish(
        tmp_path: Path, cluster_env: dict[str, str]) -> None:
    env = {**cluster_env, "FLOWBRIDGE_MAX_QUEUED_TASKS": "5"}
    for cluster in _cluster(tmp_path, env):
        accepted, refused = [], []
        for i in range(12):  # no worker: the queue fills up
            with cluster.run(simple_schema(), {"q": f"burst {i}"}) as response:
                if response.status_code == 200:
                    accepted.append((i, response.json()["taskID"]))
                else:
                    assert response.status_code == 503, response.text
                    assert int(response.headers["Retry-After"]) > 0
                    assert response.json()["error"]["type"] == "overloaded"
                    assert "FLOWBRIDGE_MAX_QUEUED_TASKS=5" in response.json()["error"]["message"]
                    refused.append(i)
        assert len(accepted) == 5 and len(refused) == 7
        # a task canceled while it waits for a worker ends canceled at once, and no worker runs it
        _, canceled = accepted.pop()
        with requests.put(f"{cluster.app.url}/api/task/cancel", json={"taskID": canceled}, timeout=10) as r:
            assert r.json() == {"success": True}
        result = cluster.result(canceled, timeout=30)
        assert result.status_code == 409 and result.json()["error"]["type"] == "task_canceled", result.text
        cluster.add_worker(concurrency=2)
        cluster.add_worker(concurrency=2)
        for i, task_id in accepted:
            assert cluster.result(task_id).json() == {"answer": f"burst {i}"}
        assert cluster.record(canceled).status == "canceled"


def test_two_app_servers_and_two_workers_share_only_redis_and_the_task_store(
        tmp_path: Path, cluster_env: dict[str, str], upstream: FakeUpstream) -> None:
    """Submitted to one app server, reported, awaited, streamed and canceled through the other. Each has its own
    instance folder (its own secret key there), so nothing but Redis and FLOWBRIDGE_TASK_DB is shared."""
    first_env = {**cluster_env, "FLOWBRIDGE_INSTANCE_DIR": str(tmp_path / "first-instance")}
    second_env = {**cluster_env, "FLOWBRIDGE_INSTANCE_DIR": str(tmp_path / "second-instance")}
    second = GunicornServer(second_env, workers=1, threads=4, log_path=tmp_path / "second.log")
    for cluster in _cluster(tmp_path, first_env):
        with second:
            workers = [cluster.add_worker(), cluster.add_worker()]
            ran_on = set()
            for i in range(6):
                task_id = cluster.submit(f"two {i}")
                with requests.get(f"{second.url}/api/task/result", params={"taskID": task_id, "wait": 30},
                                  timeout=60) as result:
                    assert result.json() == {"answer": f"echo: two {i}"}, result.text
                with requests.get(f"{second.url}/api/task/report", params={"taskID": task_id}, timeout=10) as r:
                    assert r.json()["workflowStatus"]["status"] == "succeeded"
                ran_on.add(_pid_of(cluster.record(task_id).owner))
            assert ran_on <= {w.pid for w in workers}
            with requests.get(f"{second.url}/api/task/events", params={"taskID": cluster.submit("streamed")},
                              stream=True, timeout=60) as events:
                text = "".join(events.iter_content(chunk_size=None, decode_unicode=True))
            assert '"type":"done"' in text and "echo: streamed" in text
            upstream.push_faults({"kind": "hang", "seconds": 15})
            slow = cluster.submit("slow")
            assert upstream.wait_for(lambda s: s["in_flight"] >= 1, timeout=60)
            with requests.put(f"{second.url}/api/task/cancel", json={"taskID": slow}, timeout=10) as r:
                assert r.json() == {"success": True}
            with requests.get(f"{cluster.app.url}/api/task/result", params={"taskID": slow, "wait": 30},
                              timeout=60) as result:
                assert result.status_code == 409 and result.json()["error"]["type"] == "task_canceled"
            with requests.get(f"{second.url}/tasks/{slow}", timeout=10) as page:
                assert page.status_code == 200 and "canceled" in page.text
    # each app server kept its files (its secret key) in its own instance folder; the records are elsewhere
    for name in ("first-instance", "second-instance"):
        assert (tmp_path / name).is_dir() and not (tmp_path / name / "tasks.db").exists()
