"""Request IDs, logs and /metrics through the Flask test client, against the real fake upstream."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_upstream import FakeUpstream
from webapp import ConfigError, create_app
from webapp.guards.observability import JsonFormatter

GENERATED = re.compile(r"[0-9a-f]{32}")


def make_app(upstream: FakeUpstream, tmp_path: Path, **config: str) -> Flask:
    return create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_RETRY_INITIAL_DELAY": "0.01",
                       "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db"), **config})


@pytest.fixture
def app(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Flask]:
    app = make_app(upstream, tmp_path)
    yield app
    from webapp.extensions import close_llm_client, close_workflow_runtime

    close_workflow_runtime(app)
    close_llm_client(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def scrape(client: FlaskClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics", buffered=True)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# -- request IDs -----------------------------------------------------------------------------------


def test_a_sane_request_id_is_echoed(client: FlaskClient) -> None:
    for rid in ("abc-123", "A.b_c-9", "x" * 128):
        response = client.get("/healthz", headers={"X-Request-ID": rid}, buffered=True)
        assert response.headers["X-Request-ID"] == rid


def test_a_missing_request_id_is_generated_fresh_each_time(client: FlaskClient) -> None:
    ids = {client.get("/healthz", buffered=True).headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3 and all(GENERATED.fullmatch(i) for i in ids)


@pytest.mark.parametrize("bad", ["x" * 129, "has space", "semi;colon", "é", "a\u2028b", "<script>"])
def test_an_insane_request_id_is_replaced(client: FlaskClient, bad: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": bad}, buffered=True)
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])


def test_the_id_is_on_errors_and_event_streams(client: FlaskClient) -> None:
    not_found = client.get("/api/nope", headers={"X-Request-ID": "r-404"}, buffered=True)
    assert not_found.status_code == 404 and not_found.headers["X-Request-ID"] == "r-404"
    bad = client.post("/api/chat", json={"message": 5}, headers={"X-Request-ID": "r-400"}, buffered=True)
    assert bad.status_code == 400 and bad.headers["X-Request-ID"] == "r-400"
    assert bad.headers.getlist("X-Request-ID") == ["r-400"]
    stream = client.post("/api/chat", json={"message": "hi", "stream": True}, headers={"X-Request-ID": "r-sse"},
                         buffered=True)
    assert stream.mimetype == "text/event-stream" and stream.headers["X-Request-ID"] == "r-sse"
    assert b'"done"' in stream.data


# -- logs ------------------------------------------------------------------------------------------


def test_log_records_of_a_request_carry_its_id_even_from_the_llm_pool(
    client: FlaskClient, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.push_faults({"status": 500})  # one retry, logged by the client on a pool thread
    with caplog.at_level(logging.INFO):
        response = client.post("/api/chat", json={"message": "hi"}, headers={"X-Request-ID": "req-logs-1"},
                               buffered=True)
        logging.getLogger("tests.outside").info("between requests")
    assert response.status_code == 200
    retry = [r for r in caplog.records if r.name == "llm_client" and "retrying" in r.getMessage()]
    assert len(retry) == 1 and retry[0].request_id == "req-logs-1"
    assert retry[0].threadName.startswith("llm-bridge")  # the ID crossed into the pool thread
    access = [r for r in caplog.records if r.name == "flowbridge.access"]
    assert [(r.request_id, r.method, r.path, r.status) for r in access] == [("req-logs-1", "POST", "/api/chat", 200)]
    outside = [r for r in caplog.records if r.name == "tests.outside"]
    assert outside[0].request_id == "-"


def test_the_access_line_of_a_stream_is_written_when_it_ends(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="flowbridge.access"):
        response = client.post("/api/chat", json={"message": "a b c", "stream": True},
                               headers={"X-Request-ID": "req-stream"})
        assert not [r for r in caplog.records if r.name == "flowbridge.access"]
        body = response.get_data()
        response.close()
    assert b'"done"' in body
    access = [r for r in caplog.records if r.name == "flowbridge.access"]
    assert [(r.request_id, r.status) for r in access] == [("req-stream", 200)]


def test_json_log_lines_parse(upstream: FakeUpstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app(upstream, tmp_path, LOG_FORMAT="json")
    try:
        capsys.readouterr()
        app.test_client().get("/api/nope", headers={"X-Request-ID": "req-json"}, buffered=True)
        logging.getLogger("tests.json").warning("outside %s", "requests")
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    finally:
        make_app(upstream, tmp_path)  # back to text for the tests that follow
    entries = [json.loads(line) for line in lines]  # every line our handler wrote is one JSON object
    access = [e for e in entries if e["logger"] == "flowbridge.access"]
    assert len(access) == 1
    assert access[0]["request_id"] == "req-json" and access[0]["status"] == 404 and access[0]["path"] == "/api/nope"
    assert access[0]["level"] == "INFO" and access[0]["message"].startswith("GET /api/nope 404 ")
    assert {"time", "pid", "duration_ms"} <= access[0].keys()
    outside = [e for e in entries if e["logger"] == "tests.json"]
    assert outside == [{**outside[0], "message": "outside requests", "request_id": "-", "level": "WARNING"}]


def test_json_lines_carry_the_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("t").makeRecord("t", logging.ERROR, __file__, 1, "failed %s", ("x",),
                                                   sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "failed x" and "ValueError: boom" in entry["exception"]


def test_logging_is_set_up_once_however_many_apps(upstream: FakeUpstream, tmp_path: Path) -> None:
    for fmt in ("text", "json", "text"):
        make_app(upstream, tmp_path, LOG_FORMAT=fmt, LOG_LEVEL="warning")
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_flowbridge", False)]
    assert len(ours) == 1 and not isinstance(ours[0].formatter, JsonFormatter)
    assert logging.getLogger().level == logging.WARNING
    make_app(upstream, tmp_path)
    assert logging.getLogger().level == logging.INFO


@pytest.mark.parametrize(("name", "bad"), [("LOG_FORMAT", "xml"), ("LOG_LEVEL", "loud")])
def test_bad_log_settings_stop_the_app(upstream: FakeUpstream, tmp_path: Path, name: str, bad: str) -> None:
    with pytest.raises(ConfigError, match=name):
        make_app(upstream, tmp_path, **{name: bad})


# -- metrics ---------------------------------------------------------------------------------------


def test_metrics_count_requests_by_route_and_upstream_calls(client: FlaskClient, upstream: FakeUpstream) -> None:
    before = scrape(client)
    for _ in range(3):
        client.get("/healthz", buffered=True)
    client.get("/api/task/result?taskID=nope", buffered=True)
    client.get("/no/such/page/42", buffered=True)
    upstream.push_faults({"status": 503})
    assert client.post("/api/chat", json={"message": "hi"}, buffered=True).status_code == 200
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests_total = "flowbridge_http_requests_total"
    assert delta(requests_total, method="GET", route="/healthz", status="200") == 3
    assert delta("flowbridge_http_request_duration_seconds_count", method="GET", route="/healthz") == 3
    assert delta(requests_total, method="GET", route="/api/task/result", status="404") == 1
    assert delta(requests_total, method="GET", route="unmatched", status="404") == 1
    assert delta(requests_total, method="POST", route="/api/chat", status="200") == 1
    assert not [k for k in after if k[0] == requests_total and ("route", "/metrics") in k[1]]
    assert not [k for k in after if "/no/such/page/42" in str(k) or "nope" in str(k)]  # raw paths never labels
    path = "/chat/completions"
    assert delta("flowbridge_upstream_requests_total", path=path, outcome="http_503") == 1
    assert delta("flowbridge_upstream_requests_total", path=path, outcome="ok") == 1
    assert delta("flowbridge_upstream_request_duration_seconds_count", path=path) == 2
    assert ("flowbridge_llm_pool_running", frozenset()) in after
    assert ("flowbridge_llm_pool_queued", frozenset()) in after
    for status in ("pending", "processing", "succeeded", "failed", "canceled"):
        assert ("flowbridge_tasks", frozenset({("status", status)})) in after


def test_a_stream_is_counted_when_its_response_starts(client: FlaskClient) -> None:
    labels = {"method": "POST", "route": "/api/chat", "status": "200"}
    before = value(scrape(client), "flowbridge_http_requests_total", **labels)
    response = client.post("/api/chat", json={"message": "x y", "stream": True})
    assert value(scrape(client), "flowbridge_http_requests_total", **labels) == before + 1
    response.get_data()
    response.close()
    assert value(scrape(client), "flowbridge_http_requests_total", **labels) == before + 1


def test_tasks_by_status_come_from_the_store(client: FlaskClient, app: Flask) -> None:
    from webapp.extensions import get_workflow_runtime
    from workflow.store import TaskRecord

    store = get_workflow_runtime(app).store
    for i, status in enumerate(("succeeded", "succeeded", "failed")):
        store.create(TaskRecord(task_id=f"t{i}", status=status, schema={}, inputs={}, outputs=None, report=None,
                                error=None, created_at=1.0, started_at=None, finished_at=None,
                                cancel_requested=False, owner="test", heartbeat_at=1.0))
    samples = scrape(client)
    assert value(samples, "flowbridge_tasks", status="succeeded") == 2
    assert value(samples, "flowbridge_tasks", status="failed") == 1
    assert value(samples, "flowbridge_tasks", status="processing") == 0
