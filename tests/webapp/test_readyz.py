"""/readyz reports each configured dependency (its registry of checks), and /metrics' queue and worker gauges."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from flask import Flask

from tests.fake_upstream import FakeUpstream
from tests.services import RedisServer, redis_server  # noqa: F401 - the fixture
from webapp import create_app
from webapp.extensions import close_llm_client, close_workflow_runtime
from webapp.guards.metrics import Metrics, add_scrape_hook
from webapp.routes.health import add_readiness_check, readiness_checks


def make_app(upstream_url: str, **config: object) -> Flask:
    return create_app({"TESTING": True, "LLM_BASE_URL": upstream_url, "LLM_MAX_RETRIES": "0",
                       "FLOWBRIDGE_TASK_DB": "memory", **config})


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    """Apps made by a test, closed afterwards."""
    made: list[Flask] = []
    yield made
    for app in made:
        close_llm_client(app)
        close_workflow_runtime(app)


def test_readyz_reports_the_model_server(apps: list[Flask], upstream: FakeUpstream) -> None:
    apps.append(app := make_app(upstream.base_url))
    body = app.test_client().get("/readyz").get_json()
    assert body["status"] == "ready" and body["model"] and body["base_url"] == upstream.base_url
    assert list(body["checks"]) == ["model_server"]  # no LLM_CACHE: no cache to report
    check = body["checks"]["model_server"]
    assert check["ok"] is True and check["required"] is True and check["latency_ms"] >= 0 and "error" not in check


def test_a_configured_llm_cache_is_reported_as_optional(apps: list[Flask], upstream: FakeUpstream) -> None:
    apps.append(app := make_app(upstream.base_url, LLM_CACHE="memory"))
    body = app.test_client().get("/readyz").get_json()
    assert body["checks"]["llm_cache"] == {"ok": True, "required": False,
                                           "latency_ms": body["checks"]["llm_cache"]["latency_ms"]}


def test_registered_checks_a_required_one_down_is_503(apps: list[Flask], upstream: FakeUpstream) -> None:
    apps.append(app := make_app(upstream.base_url))
    seen: list[float] = []

    def database(timeout: float) -> None:
        seen.append(timeout)

    def broker(timeout: float) -> None:
        raise ConnectionError("cannot reach redis://flow:hunter2-pw@10.0.0.9:6379/0:\n connection refused")

    add_readiness_check(app, "database", database)
    add_readiness_check(app, "broker", broker)
    assert list(readiness_checks(app)) == ["model_server", "database", "broker"]
    response = app.test_client().get("/readyz", headers={"Accept": "application/json"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    body = response.get_json()
    assert body["error"]["type"] == "dependency_unavailable"
    assert body["error"]["message"] == ("broker: cannot reach redis://flow:***@10.0.0.9:6379/0: connection refused")
    assert body["checks"]["database"]["ok"] is True and body["checks"]["model_server"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is False and body["checks"]["broker"]["required"] is True
    assert "hunter2" not in response.get_data(as_text=True)
    assert seen == [app.config["READY_TIMEOUT"]]


def test_an_optional_dependency_down_is_degraded_not_503(apps: list[Flask], upstream: FakeUpstream) -> None:
    apps.append(app := make_app(upstream.base_url))

    def search_index(timeout: float) -> None:
        raise OSError("the index does not answer")

    add_readiness_check(app, "search_index", search_index, required=False)
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["checks"]["search_index"]["error"] == "the index does not answer"


def test_the_model_server_down_is_503_with_every_check(apps: list[Flask]) -> None:
    apps.append(app := make_app("http://127.0.0.1:9/v1", READY_TIMEOUT=0.5, LLM_CACHE="memory"))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"]["type"] == "upstream_unavailable" and "127.0.0.1:9" in body["error"]["message"]
    assert body["checks"]["model_server"]["ok"] is False and body["checks"]["llm_cache"]["ok"] is True


def test_a_check_that_does_not_answer_in_time_is_reported_late(apps: list[Flask], upstream: FakeUpstream) -> None:
    apps.append(app := make_app(upstream.base_url, READY_TIMEOUT=0.2))
    release = threading.Event()
    add_readiness_check(app, "database", lambda timeout: release.wait(30))  # ignores its timeout
    try:
        body = app.test_client().get("/readyz").get_json()
    finally:
        release.set()
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["database"]["error"] == "no answer within 0.2 s"
    assert body["checks"]["model_server"]["ok"] is True


def test_a_check_name_is_checked(apps: list[Flask], upstream: FakeUpstream) -> None:
    apps.append(app := make_app(upstream.base_url))
    with pytest.raises(ValueError, match="readiness check name"):
        add_readiness_check(app, "Data Base", lambda timeout: None)


def test_metrics_show_queue_depth_and_workers_set_by_a_scrape_hook(
    apps: list[Flask], upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    apps.append(app := make_app(upstream.base_url))
    depth = iter(range(3, 100))

    def queue_stats(metrics: Metrics) -> None:  # what the Celery queue sets from the broker at each scrape
        metrics.queue_depth.labels("flowbridge").set(next(depth))
        metrics.workers.labels("online").set(2)
        metrics.workers.labels("busy").set(1)

    def broken(metrics: Metrics) -> None:
        raise ConnectionError("broker down")

    removers = [add_scrape_hook("test-queue", queue_stats), add_scrape_hook("test-broken", broken)]
    try:
        with caplog.at_level(logging.WARNING):
            first = app.test_client().get("/metrics").get_data(as_text=True)
            second = app.test_client().get("/metrics").get_data(as_text=True)
    finally:
        for remove in removers:
            remove()
    assert 'flowbridge_queue_depth{queue="flowbridge"} 3.0' in first
    assert 'flowbridge_queue_depth{queue="flowbridge"} 4.0' in second  # sampled at each scrape
    assert 'flowbridge_workers{state="online"} 2.0' in second and 'flowbridge_workers{state="busy"} 1.0' in second
    assert any("test-broken" in r.getMessage() and "broker down" in r.getMessage() for r in caplog.records)


@pytest.mark.services
def test_readyz_follows_the_redis_cache_and_chats_go_on_without_it(
    apps: list[Flask], upstream: FakeUpstream, redis_server: RedisServer  # noqa: F811
) -> None:
    own = RedisServer().start()  # stopped below: not the session's server
    try:
        apps.append(app := make_app(upstream.base_url, LLM_CACHE=own.url))
        client = app.test_client()
        body = client.get("/readyz").get_json()
        assert body["status"] == "ready" and body["checks"]["llm_cache"]["ok"] is True
        assert [client.post("/api/chat", json={"message": "hi", "temperature": 0}).headers.get("X-Cache")
                for _ in range(2)] == ["miss", "hit"]
        own.stop()
        response = client.get("/readyz")
        body = response.get_json()
        assert response.status_code == 200 and body["status"] == "degraded"
        assert body["checks"]["llm_cache"]["ok"] is False and "Redis" in body["checks"]["llm_cache"]["error"]
        chat = client.post("/api/chat", json={"message": "hi", "temperature": 0})
        assert chat.status_code == 200 and chat.get_json()["response"] == "echo: hi"
        assert chat.headers.get("X-Cache") == "miss"
        assert upstream.stats()["by_path"]["/v1/chat/completions"] == 2
        own.start()
        assert client.get("/readyz").get_json()["status"] == "ready"
    finally:
        own.close()
