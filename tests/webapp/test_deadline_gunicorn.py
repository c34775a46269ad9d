"""The request deadline under real gunicorn (gthread does not enforce --timeout; the app does)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer
from tests.webapp.test_tasks_api import simple_schema


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    state = tmp_path_factory.mktemp("deadline")
    env = {"LLM_BASE_URL": _upstream_server.base_url, "LLM_MAX_RETRIES": "0",
           "FLOWBRIDGE_REQUEST_TIMEOUT": "0.5", "FLOWBRIDGE_TASK_DB": str(state / "tasks.db")}
    with GunicornServer(env, workers=2, threads=4, log_path=state / "gunicorn.log") as server:
        yield server


def test_a_blocking_request_past_its_deadline_answers_504(served: GunicornServer, upstream: FakeUpstream) -> None:
    upstream.configure(delay=3.0)
    response = requests.post(f"{served.url}/api/chat", json={"message": "slow"}, timeout=30)
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["type"] == "deadline_exceeded"
    assert "FLOWBRIDGE_REQUEST_TIMEOUT=0.5s" in error["message"]
    assert requests.get(f"{served.url}/healthz", timeout=10).status_code == 200


def test_a_long_poll_is_shortened_to_fit_the_deadline(served: GunicornServer, upstream: FakeUpstream) -> None:
    upstream.configure(delay=3.0)
    schema = simple_schema(prompt_node=True)  # start -> llm -> end
    response = requests.post(f"{served.url}/api/task/run?wait=30", json={"schema": schema, "inputs": {"q": "hi"}}, timeout=30)
    assert response.status_code in (200, 202)
    assert response.json()["status"] == "processing"  # answered before the task could finish
