"""The Flask app through its test client, against the real fake upstream."""

from __future__ import annotations

import threading

import pytest
from flask import Flask
from flask.testing import FlaskClient

from async_utils import loops_created
from llm_client import LLMConfigError
from tests.fake_upstream import FakeUpstream
from webapp import ConfigError, create_app, get_llm_client

SECRET = "sk-webapp-secret-987654321"


@pytest.fixture
def app(upstream: FakeUpstream) -> Flask:
    return create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_API_KEY": SECRET,
                       "LLM_RETRY_INITIAL_DELAY": "0.01", "LLM_MODEL": "m1"})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    yield app.test_client()
    from webapp.extensions import close_llm_client

    close_llm_client(app)


def test_healthz_never_touches_the_llm_client(app: Flask, client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json["status"] == "ok"
    assert "llm_client" not in app.extensions["flowbridge"]


def test_readyz(client: FlaskClient) -> None:
    assert client.get("/readyz").json["status"] == "ready"


def test_readyz_is_503_while_the_upstream_is_down() -> None:
    app = create_app({"TESTING": True, "LLM_BASE_URL": "http://127.0.0.1:9/v1", "READY_TIMEOUT": 0.5})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["error"]["type"] == "upstream_unavailable"
    assert "127.0.0.1:9" in response.json["error"]["message"]


def test_chat_with_one_message(client: FlaskClient, upstream: FakeUpstream) -> None:
    response = client.post("/api/chat", json={"message": "Say hi"})
    assert response.status_code == 200
    assert response.json["response"] == "echo: Say hi"
    assert response.json["model"] == "fake-model"
    assert response.json["usage"]["total_tokens"] > 0
    assert upstream.stats()["last_request"]["json"]["model"] == "m1"


def test_chat_with_messages_and_options(client: FlaskClient, upstream: FakeUpstream) -> None:
    body = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                         {"role": "user", "content": "c"}],
            "system_prompt": "sys", "temperature": 0.2, "max_tokens": 7}
    assert client.post("/api/chat", json=body).json["response"] == "echo: c"
    sent = upstream.stats()["last_request"]["json"]
    assert sent["messages"][0] == {"role": "system", "content": "sys"} and len(sent["messages"]) == 4
    assert (sent["temperature"], sent["max_tokens"]) == (0.2, 7)


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({}, 400, "exactly one of 'message' or 'messages'"),
        ({"message": "a", "messages": [{"role": "user", "content": "b"}]}, 400, "exactly one"),
        ({"message": ""}, 400, "message"),
        ({"message": 3}, 400, "message"),
        ({"messages": [{"role": "boss", "content": "x"}]}, 400, "messages.0.role"),
        ({"messages": []}, 400, "messages"),
        ({"message": "x", "temperature": 9}, 400, "temperature"),
        ({"message": "x", "max_tokens": 0}, 400, "max_tokens"),
        ({"message": "x", "colour": "red"}, 400, "colour"),
        ([1, 2], 400, "JSON object"),
    ],
)
def test_bad_chat_input_is_a_400_naming_the_field(client: FlaskClient, upstream: FakeUpstream,
                                                  body: object, status: int, named: str) -> None:
    response = client.post("/api/chat", json=body)
    assert response.status_code == status
    assert response.json["error"]["type"] == "invalid_request"
    assert named in response.json["error"]["message"]
    assert upstream.stats()["requests"] == 0


def test_non_json_bodies(client: FlaskClient) -> None:
    response = client.post("/api/chat", data="message=hi")
    assert response.status_code == 415 and "application/json" in response.json["error"]["message"]
    response = client.post("/api/chat", data="{oops", content_type="application/json")
    assert response.status_code == 400 and "not valid JSON" in response.json["error"]["message"]


def test_upstream_errors_are_502(client: FlaskClient, upstream: FakeUpstream) -> None:
    upstream.push_faults(*[{"status": 500}] * 3)
    response = client.post("/api/chat", json={"message": "x"})
    assert response.status_code == 502 and response.json["error"]["type"] == "upstream_error"
    upstream.push_faults({"kind": "malformed"})
    assert client.post("/api/chat", json={"message": "x"}).json["error"]["type"] == "upstream_bad_response"


@pytest.mark.parametrize("status", [400, 422])
def test_a_request_the_upstream_refuses_is_a_400_carrying_its_message(client: FlaskClient, upstream: FakeUpstream,
                                                                      status: int) -> None:
    """The client's to fix (a prompt past the context window, a malformed message), not a server error to retry."""
    upstream.push_faults({"status": status, "body": {"error": {"message": "maximum context length is 8192 tokens",
                                                               "type": "invalid_request_error"}}})
    response = client.post("/api/chat", json={"message": "x"})
    assert response.status_code == 400 and response.json["error"]["type"] == "upstream_rejected"
    assert response.json["error"]["message"].startswith("the upstream LLM server refused the request: ")
    assert "maximum context length is 8192 tokens" in response.json["error"]["message"]
    assert upstream.stats()["requests"] == 1  # not retried


def test_upstream_unreachable_is_502() -> None:
    app = create_app({"TESTING": True, "LLM_BASE_URL": "http://127.0.0.1:9/v1", "LLM_MAX_RETRIES": "0"})
    response = app.test_client().post("/api/chat", json={"message": "x"})
    assert response.status_code == 502 and response.json["error"]["type"] == "upstream_unreachable"


def test_upstream_timeout_is_504(upstream: FakeUpstream) -> None:
    upstream.push_faults({"kind": "hang", "seconds": 2})
    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_TIMEOUT": "0.2",
                      "LLM_MAX_RETRIES": "0"})
    response = app.test_client().post("/api/chat", json={"message": "x"})
    assert response.status_code == 504 and response.json["error"]["type"] == "upstream_timeout"


def test_bridge_timeout_is_504(upstream: FakeUpstream) -> None:
    upstream.configure(delay=1.0)
    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_ASYNC_TIMEOUT": "0.2"})
    response = app.test_client().post("/api/chat", json={"message": "x"})
    assert response.status_code == 504 and "LLM_ASYNC_TIMEOUT" in response.json["error"]["message"]


def test_queue_full_is_503_with_retry_after(upstream: FakeUpstream) -> None:
    upstream.configure(delay=2.0)  # the second request must arrive while the first still runs
    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url,
                      "LLM_ASYNC_WORKERS": "1", "LLM_ASYNC_QUEUE_SIZE": "0"})
    results: list[int] = []
    busy = threading.Thread(target=lambda: results.append(
        app.test_client().post("/api/chat", json={"message": "slow"}).status_code))
    busy.start()
    assert upstream.wait_for(lambda s: s["in_flight"] == 1)
    response = app.test_client().post("/api/chat", json={"message": "x"})
    busy.join(10)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json["error"]["type"] == "overloaded"
    assert results == [200]


def test_unknown_routes_and_methods_are_json_for_the_api(client: FlaskClient) -> None:
    response = client.get("/api/nothing")
    assert response.status_code == 404 and response.json["error"]["type"] == "not_found"
    response = client.get("/api/chat")
    assert response.status_code == 405 and "POST" in response.headers["Allow"]


def test_home_page_names_model_and_upstream(client: FlaskClient, upstream: FakeUpstream) -> None:
    html = client.get("/").get_data(as_text=True)
    assert "m1" in html and upstream.base_url in html and SECRET not in html


def test_browser_errors_are_html(client: FlaskClient) -> None:
    response = client.get("/nowhere", headers={"Accept": "text/html"})
    assert response.status_code == 404 and response.mimetype == "text/html"


@pytest.mark.parametrize(
    ("config", "error", "named"),
    [
        ({"LLM_TIMEOUT": "x"}, LLMConfigError, "LLM_TIMEOUT"),
        ({"LLM_ASYNC_QUEUE_SIZE": "-1"}, ValueError, "LLM_ASYNC_QUEUE_SIZE"),
        ({"FLOWBRIDGE_REQUEST_THREADS": "many"}, ConfigError, "FLOWBRIDGE_REQUEST_THREADS"),
        ({"FLOWBRIDGE_START_SLOTS": "-1"}, ConfigError, "FLOWBRIDGE_START_SLOTS"),
        ({"FLOWBRIDGE_START_SLOTS": "two"}, ConfigError, "FLOWBRIDGE_START_SLOTS"),
        ({"FLOWBRIDGE_START_LEASE": "0"}, ConfigError, "FLOWBRIDGE_START_LEASE"),
        ({"FLOWBRIDGE_START_LEASE": "nan"}, ConfigError, "FLOWBRIDGE_START_LEASE"),
        ({"FLOWBRIDGE_REQUEST_TIMEOUT": "inf"}, ConfigError, "FLOWBRIDGE_REQUEST_TIMEOUT"),
        ({"FLOWBRIDGE_QUEUE_WAIT": "nan"}, ConfigError, "FLOWBRIDGE_QUEUE_WAIT"),
    ],
)
def test_bad_configuration_fails_at_start(config: dict, error: type, named: str) -> None:
    with pytest.raises(error, match=named):
        create_app(config)


def test_the_pool_is_sized_to_the_request_threads(upstream: FakeUpstream) -> None:
    app = create_app({"LLM_BASE_URL": upstream.base_url, "FLOWBRIDGE_REQUEST_THREADS": 16})
    with app.app_context():
        assert get_llm_client().pool_stats.size == 16
    explicit = create_app({"LLM_BASE_URL": upstream.base_url, "FLOWBRIDGE_REQUEST_THREADS": 16,
                           "LLM_ASYNC_WORKERS": "3"})
    with explicit.app_context():
        assert get_llm_client().pool_stats.size == 3
    for each in (app, explicit):
        each.extensions["flowbridge"]["llm_client"][0].cleanup()


def test_async_route_reuses_its_loop_and_threads(app: Flask, client: FlaskClient) -> None:
    def bridge_threads() -> int:
        return sum(t.name.startswith("llm-bridge") for t in threading.enumerate())

    client.post("/api/chat", json={"message": "warm up"})
    loops, threads, bridges = loops_created(), threading.active_count(), bridge_threads()
    for i in range(200):
        assert client.post("/api/chat", json={"message": f"m{i}"}).status_code == 200
    assert loops_created() == loops
    # Threads are bounded by the pool, not by requests: the executor starts its
    # threads lazily (at most pool size), and each keeps one keep-alive
    # connection, i.e. one handler thread in the in-process fake upstream.
    size = app.extensions["flowbridge"]["llm_client"][0].pool_stats.size
    assert bridge_threads() - bridges < size
    assert threading.active_count() - threads <= 2 * size
