"""Cross-site requests and unknown Host names are refused (webapp.guards.origin)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from flask import Flask

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer
from webapp import create_app
from webapp.config import ConfigError
from webapp.guards.origin import is_loopback_bind

#: What another site's page can send without CORS: a multipart form POST.
FORM = {"text": "to be or not"}


@pytest.fixture
def make_app(upstream: FakeUpstream) -> Callable[..., Flask]:
    def make(**config: str) -> Flask:
        return create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0",
                           "FLOWBRIDGE_TASK_DB": "memory", **config})
    return make


# -- cross-site ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
    {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:3000"},  # another app on this machine
    {"Origin": "https://evil.example"},  # a browser without Sec-Fetch-* headers
    {"Origin": "null"},  # a sandboxed frame or a data: page
])
def test_cross_site_form_post_does_not_run_the_function(make_app: Callable[..., Flask], headers: dict) -> None:
    app = make_app()
    response = app.test_client().post("/invoke/word_count", data=FORM, headers=headers)
    assert response.status_code == 403
    assert response.json["error"]["type"] == "cross_site_request"
    assert "FLOWBRIDGE_TRUSTED_ORIGINS" in response.json["error"]["message"]


@pytest.mark.parametrize("url", ["/api/chat", "/api/ops/echo_tool", "/api/task/run", "/chat"])
def test_every_unsafe_route_is_covered(make_app: Callable[..., Flask], url: str) -> None:
    response = make_app().test_client().post(url, json={}, headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 403, response.get_data(as_text=True)


@pytest.mark.parametrize("headers", [
    {},  # curl, the OpenAI SDK, legacy systems
    {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},  # our own pages
    {"Sec-Fetch-Site": "none"},  # typed in by the user
    {"Origin": "http://localhost"},  # an older browser, same origin
])
def test_own_and_non_browser_requests_pass(make_app: Callable[..., Flask], headers: dict) -> None:
    response = make_app().test_client().post("/invoke/word_count", data=FORM, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["result"]["words"] == 4


def test_trusted_origins_pass(make_app: Callable[..., Flask]) -> None:
    app = make_app(FLOWBRIDGE_TRUSTED_ORIGINS="https://app.example.com, http://localhost:3000")
    client = app.test_client()
    for origin in ("https://app.example.com", "http://localhost:3000"):
        response = client.post("/invoke/word_count", data=FORM,
                               headers={"Sec-Fetch-Site": "cross-site", "Origin": origin})
        assert response.status_code == 200, (origin, response.get_data(as_text=True))
    response = client.post("/invoke/word_count", data=FORM, headers={"Origin": "https://app.example.com.evil.io"})
    assert response.status_code == 403


def test_safe_methods_are_not_checked(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    response = client.get("/api/tasks", headers={"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
    assert response.status_code == 200


def test_a_browser_gets_an_html_page(make_app: Callable[..., Flask]) -> None:
    response = make_app().test_client().post("/chat", data={}, headers={
        "Sec-Fetch-Site": "cross-site", "Accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 403 and response.mimetype == "text/html"
    assert "accepts changes only from its own pages" in response.get_data(as_text=True)


# -- Host ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:5000", "[::1]:8000", "LOCALHOST"])
def test_loopback_names_pass(make_app: Callable[..., Flask], host: str) -> None:
    response = make_app().test_client().get("/api/tasks", headers={"Host": host})
    assert response.status_code == 200


@pytest.mark.parametrize("url", ["/api/tasks", "/healthz", "/", "/static/css/app.css"])
def test_dns_rebinding_is_refused_when_bound_to_loopback(make_app: Callable[..., Flask], url: str) -> None:
    response = make_app().test_client().get(url, headers={"Host": "rebind.evil.example:8000",
                                                          "Accept": "text/html"})
    assert response.status_code == 400
    assert response.json["error"]["type"] == "bad_host"  # JSON even for a browser: no page with server details
    assert "'rebind.evil.example'" in response.json["error"]["message"]
    assert "FLOWBRIDGE_TRUSTED_HOSTS" in response.json["error"]["message"]


def test_trusted_hosts(make_app: Callable[..., Flask]) -> None:
    client = make_app(FLOWBRIDGE_TRUSTED_HOSTS="flowbridge.internal, .example.com").test_client()
    for host, status in [("flowbridge.internal:8000", 200), ("example.com", 200), ("a.b.example.com", 200),
                         ("badexample.com", 400), ("flowbridge.internal.evil", 400), ("localhost", 200)]:
        assert client.get("/api/tasks", headers={"Host": host}).status_code == status, host
    assert make_app(FLOWBRIDGE_TRUSTED_HOSTS="*").test_client().get(
        "/api/tasks", headers={"Host": "anything"}).status_code == 200


def test_no_host_check_when_listening_on_other_addresses(make_app: Callable[..., Flask]) -> None:
    client = make_app(FLOWBRIDGE_BIND="0.0.0.0:8000").test_client()
    assert client.get("/api/tasks", headers={"Host": "10.1.2.3:8000"}).status_code == 200
    # ... unless a list is given
    client = make_app(FLOWBRIDGE_BIND="0.0.0.0:8000", FLOWBRIDGE_TRUSTED_HOSTS="api.example.com").test_client()
    assert client.get("/api/tasks", headers={"Host": "10.1.2.3:8000"}).status_code == 400
    assert client.get("/api/tasks", headers={"Host": "api.example.com"}).status_code == 200


@pytest.mark.parametrize(("bind", "loopback"), [
    ("127.0.0.1:8000", True), ("127.0.0.2:80", True), ("localhost:8000", True), ("[::1]:8000", True),
    ("unix:/run/flowbridge.sock", True), ("127.0.0.1:8000,[::1]:8000", True),
    ("0.0.0.0:8000", False), ("[::]:8000", False), ("10.0.0.5:8000", False), ("myhost:8000", False),
    (":8000", False), ("8000", False), ("127.0.0.1:8000,0.0.0.0:9000", False), ("", False),
])
def test_is_loopback_bind(bind: str, loopback: bool) -> None:
    assert is_loopback_bind(bind) is loopback


@pytest.mark.parametrize(("name", "value"), [
    ("FLOWBRIDGE_TRUSTED_HOSTS", "example.com:8000"),
    ("FLOWBRIDGE_TRUSTED_HOSTS", "http://example.com"),
    ("FLOWBRIDGE_TRUSTED_HOSTS", "*.example.com"),
    ("FLOWBRIDGE_TRUSTED_ORIGINS", "example.com"),
    ("FLOWBRIDGE_TRUSTED_ORIGINS", "https://example.com/app"),
    ("FLOWBRIDGE_TRUSTED_ORIGINS", "ftp://example.com"),
])
def test_bad_settings_stop_start_up(make_app: Callable[..., Flask], name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        make_app(**{name: value})


# -- live ----------------------------------------------------------------------------------------------

def test_gunicorn_bound_to_loopback_refuses_other_hosts(tmp_path: Path, _upstream_server: FakeUpstream) -> None:
    """The real server: gunicorn.conf.py tells the workers where it listens."""
    env = {"LLM_BASE_URL": _upstream_server.base_url, "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db")}
    with GunicornServer(env, workers=1, threads=2, log_path=tmp_path / "gunicorn.log") as server:
        refused = requests.get(server.url + "/api/tasks", headers={"Host": f"rebind.evil.example:{server.port}"},
                               timeout=30)
        assert refused.status_code == 400 and refused.json()["error"]["type"] == "bad_host"
        assert requests.get(server.url + "/api/tasks", timeout=30).status_code == 200
        forged = requests.post(server.url + "/invoke/word_count", files={"text": (None, "a b")},
                               headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
                               timeout=30)
        assert forged.status_code == 403 and forged.json()["error"]["type"] == "cross_site_request"
