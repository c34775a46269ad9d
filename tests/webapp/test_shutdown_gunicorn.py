"""Graceful shutdown under real gunicorn: on SIGTERM, work that finishes within GUNICORN_GRACEFUL_TIMEOUT
(requests in flight, workflow tasks) is finished and delivered; a task still running then ends failed at once,
with the reason, for every other process, and the worker exits without waiting for its abandoned LLM call."""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer
from tests.webapp.test_tasks_api import simple_schema


def wait_for_result(server: GunicornServer, task_id: str) -> requests.Response:
    """The task's result once it is no longer processing (bounded long polls)."""
    result = None
    for _ in range(120):
        with requests.get(f"{server.url}/api/task/result", params={"taskID": task_id, "wait": 0.5},
                          timeout=10) as result:
            if result.status_code != 202:
                break
    assert result is not None
    return result


def test_sigterm_finishes_requests_in_flight_and_fails_tasks_that_outlive_the_grace(
        tmp_path: Path, upstream: FakeUpstream) -> None:
    env = {"LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0", "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db"),
           "GUNICORN_GRACEFUL_TIMEOUT": "6"}
    first = GunicornServer(env, workers=2, threads=4, log_path=tmp_path / "first.log")
    other = GunicornServer(env, workers=1, threads=2, log_path=tmp_path / "other.log")
    try:
        first.start()
        other.start()
        upstream.configure(delay=1.0)
        upstream.push_faults({"kind": "hang", "seconds": 300})  # the task's LLM call (the first one) outlives the grace
        body = {"schema": simple_schema(prompt_node=True), "inputs": {"q": "slow"}}
        with requests.post(f"{first.url}/api/task/run", json=body, timeout=10) as r:
            task_id = r.json()["taskID"]
        assert upstream.wait_for(lambda s: s["requests"] == 1, timeout=20)
        with ThreadPoolExecutor(1) as pool:
            chat = pool.submit(requests.post, f"{first.url}/api/chat", json={"message": "in flight"}, timeout=60)
            assert upstream.wait_for(lambda s: s["requests"] == 2, timeout=20)
            assert first.process is not None
            first.process.send_signal(signal.SIGTERM)
            with chat.result() as answer:
                assert answer.status_code == 200 and answer.json()["response"] == "echo: in flight"

        # another server on the same task database reports the task failed, saying why, never stuck processing
        result = wait_for_result(other, task_id)
        assert result.status_code == 409, result.text
        error = result.json()["error"]
        assert error["type"] == "task_failed"
        assert "shut down before it finished" in error["message"]
        with requests.get(f"{other.url}/api/task/report", params={"taskID": task_id}, timeout=10) as r:
            report = r.json()
        assert report["workflowStatus"]["status"] == "failed"
        assert report["reports"]["llm_0"]["status"] == "failed"
        with requests.get(f"{other.url}/api/tasks", params={"status": "failed"}, timeout=10) as r:
            listed = {t["taskID"]: t for t in r.json()["tasks"]}
        assert "shut down" in listed[task_id]["error"]

        assert first.process.wait(60) == 0
        # The worker did not wait for the hung call past the grace (the master would have killed it): it
        # recorded the task and left.
        assert "SIGKILL" not in (tmp_path / "first.log").read_text(errors="replace")
    finally:
        first.stop()
        other.stop()


def test_sigterm_lets_a_task_finish_within_the_grace_and_keeps_its_result(tmp_path: Path,
                                                                        upstream: FakeUpstream) -> None:
    """Work that finishes within GUNICORN_GRACEFUL_TIMEOUT is delivered, not run and then thrown away."""
    env = {"LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0", "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db"),
           "GUNICORN_GRACEFUL_TIMEOUT": "60"}
    first = GunicornServer(env, workers=1, threads=4, log_path=tmp_path / "first.log")
    other = GunicornServer(env, workers=1, threads=2, log_path=tmp_path / "other.log")
    try:
        first.start()
        other.start()
        upstream.configure(delay=3.0)
        body = {"schema": simple_schema(prompt_node=True), "inputs": {"q": "almost done"}}
        with requests.post(f"{first.url}/api/task/run", json=body, timeout=10) as r:
            task_id = r.json()["taskID"]
        assert upstream.wait_for(lambda s: s["in_flight"] == 1, timeout=20)
        assert first.process is not None
        first.process.send_signal(signal.SIGTERM)  # while the task's LLM call runs
        assert first.process.wait(90) == 0
        assert upstream.stats()["requests"] == 1  # the call that was running, not a retry

        result = wait_for_result(other, task_id)
        assert result.status_code == 200, result.text
        assert result.json() == {"answer": "echo: almost done"}
    finally:
        first.stop()
        other.stop()


def test_shutdown_fails_running_tasks_but_keeps_a_users_cancel(tmp_path: Path, upstream: FakeUpstream) -> None:
    """The same, in one process: the runtime's shutdown (gunicorn's worker_exit calls it)."""
    from webapp import create_app
    from webapp.extensions import close_workflow_runtime, get_workflow_runtime

    upstream.configure(delay=3.0)  # the shutdown must come while both LLM calls run
    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0",
                      "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db")})
    client = app.test_client()
    body = {"schema": simple_schema(prompt_node=True), "inputs": {"q": "slow"}}
    running = client.post("/api/task/run", json=body).json["taskID"]
    canceled = client.post("/api/task/run", json=body).json["taskID"]
    quick = client.post("/api/task/run?wait=10", json={"schema": simple_schema(), "inputs": {"q": "x"}}).json
    assert quick["status"] == "succeeded"
    assert upstream.wait_for(lambda s: s["in_flight"] == 2, timeout=20)
    store = get_workflow_runtime(app).store
    store.request_cancel(canceled)  # as another process would: this one has not noticed yet
    close_workflow_runtime(app)

    record = store.get(running)
    assert record is not None and record.status == "failed"
    assert record.error is not None and "shut down before it finished" in record.error
    assert record.report is not None and record.report["workflowStatus"]["status"] == "failed"
    record = store.get(canceled)
    assert record is not None and record.status == "canceled"
    record = store.get(quick["taskID"])
    assert record is not None and record.status == "succeeded"
    store.close()
