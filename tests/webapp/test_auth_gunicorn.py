"""API keys under real gunicorn (2 gthread workers), over real HTTP: bearer keys, the browser's sign-in with
a ``requests.Session``, and a log that never shows a key."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from llm_client import FlowbridgeAPIError, FlowbridgeClient
from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer
from tests.webapp.test_tasks_api import simple_schema

K1 = "k1-gunicorn-key-0123456789abcdef"
K2 = "k2-gunicorn-key-fedcba9876543210"
WRONG = "wrong-gunicorn-key-000000000000"
PROTECTED = [("POST", "/api/chat", {"message": "hi"}), ("POST", "/invoke/word_count", {"inputs": {"text": "a b"}}),
             ("GET", "/functions", None), ("POST", "/api/task/run", {"schema": json.dumps(simple_schema()),
                                                                      "inputs": {"q": "x"}})]


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("auth-gunicorn") / "gunicorn.log"


@pytest.fixture(scope="module")
def served(log_path: Path, _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    env = {"LLM_BASE_URL": _upstream_server.base_url, "LLM_MAX_RETRIES": "0",
           "FLOWBRIDGE_API_KEYS": f"{K1}, {K2}", "FLOWBRIDGE_TASK_DB": str(log_path.parent / "tasks.db"),
           # everything gunicorn can log: access lines and debug messages
           "GUNICORN_ACCESSLOG": "-", "GUNICORN_LOGLEVEL": "debug"}
    with GunicornServer(env, workers=2, threads=4, log_path=log_path) as server:
        yield server


def _call(server: GunicornServer, method: str, path: str, body: object, key: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.request(method, server.url + path, json=body, headers=headers, timeout=30)


def test_without_a_valid_key_the_api_answers_401(served: GunicornServer) -> None:
    for method, path, body in PROTECTED:
        for key in (None, WRONG):
            response = _call(served, method, path, body, key)
            assert response.status_code == 401, (method, path, key)
            assert response.json()["error"]["type"] == "unauthorized"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_each_key_works(served: GunicornServer, upstream: FakeUpstream) -> None:
    for _ in range(4):  # a new connection per call, spread over the workers
        for key in (K1, K2):
            assert _call(served, *PROTECTED[0], key).json()["response"] == "echo: hi"
            assert _call(served, *PROTECTED[1], key).json()["result"]["words"] == 2
            assert "functions" in _call(served, *PROTECTED[2], key).json()
            assert _call(served, *PROTECTED[3], key).json()["taskID"]
    assert upstream.stats()["requests"] == 8


def test_health_stays_open(served: GunicornServer) -> None:
    assert requests.get(served.url + "/healthz", timeout=5).json()["status"] == "ok"
    assert requests.get(served.url + "/readyz", timeout=5).status_code == 200


def test_the_browser_signs_in_once(served: GunicornServer) -> None:
    with requests.Session() as browser:
        page = browser.get(served.url + "/chat", allow_redirects=False, timeout=10)
        assert page.status_code == 302 and page.headers["Location"] == "/login?next=%2Fchat"
        form = browser.get(served.url + page.headers["Location"], timeout=10)
        assert form.status_code == 200 and 'name="key"' in form.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        signed_in = browser.post(served.url + "/login", data={"csrf_token": token, "key": K2, "next": "/chat"},
                                 allow_redirects=False, timeout=10)
        assert signed_in.status_code == 303 and signed_in.headers["Location"] == "/chat"
        cookie = signed_in.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and K2 not in cookie
        for _ in range(6):  # new connections, spread over the workers: each knows the session (shared secret)
            chat = requests.get(served.url + "/chat", cookies=browser.cookies, allow_redirects=False, timeout=10)
            assert chat.status_code == 200
        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', chat.text).group(1)
        answer = browser.post(served.url + "/api/chat", json={"message": "from the page"},
                              headers={"X-CSRF-Token": csrf}, timeout=30)
        assert answer.status_code == 200 and answer.json()["response"] == "echo: from the page"
        # the cookie alone, as another site's form would send it, is not enough for an unsafe method
        ridden = browser.post(served.url + "/api/chat", json={"message": "forged"}, timeout=30)
        assert ridden.status_code in (401, 403) and ridden.json()["error"]["type"] == "csrf_failed"
        assert browser.get(served.url + "/api/tasks", timeout=10).status_code == 200
        out = browser.post(served.url + "/logout", data={"csrf_token": csrf}, allow_redirects=False, timeout=10)
        assert out.status_code == 303
        assert browser.get(served.url + "/chat", allow_redirects=False, timeout=10).status_code == 302
        assert browser.post(served.url + "/api/chat", json={"message": "x"}, headers={"X-CSRF-Token": csrf},
                            timeout=10).status_code == 401


def test_a_wrong_key_on_the_login_form(served: GunicornServer) -> None:
    with requests.Session() as browser:
        form = browser.get(served.url + "/login", timeout=10)
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        again = browser.post(served.url + "/login", data={"csrf_token": token, "key": WRONG}, timeout=10)
        assert again.status_code == 401 and "That key is not valid" in again.text and WRONG not in again.text
        assert browser.get(served.url + "/chat", allow_redirects=False, timeout=10).status_code == 302


def test_the_python_client_sends_its_key(served: GunicornServer) -> None:
    with FlowbridgeClient(served.url, api_key=K1) as client:
        assert client.invoke("word_count", text="a b c")["words"] == 3
        assert "".join(event.data for event in client.chat_stream("hi") if event.type == "content") == "echo: hi"
    with FlowbridgeClient(served.url) as client, pytest.raises(FlowbridgeAPIError) as caught:
        client.functions()
    assert caught.value.status_code == 401
    with FlowbridgeClient(served.url, api_key=WRONG) as client, pytest.raises(FlowbridgeAPIError) as caught:
        client.invoke("word_count", text="a")
    assert caught.value.status_code == 401 and WRONG not in str(caught.value) and WRONG not in repr(client)


def test_keys_never_reach_the_log(served: GunicornServer, log_path: Path) -> None:
    """Last in the module: stops the server so that every line is written."""
    served.stop()
    log = log_path.read_text(errors="replace")
    assert "POST /api/chat" in log and "POST /login" in log  # the access log was on
    for secret in (K1, K2, WRONG):
        assert secret not in log


def test_a_bad_key_stops_gunicorn_naming_the_variable(tmp_path: Path, _upstream_server: FakeUpstream) -> None:
    log = tmp_path / "gunicorn.log"
    env = {"LLM_BASE_URL": _upstream_server.base_url, "FLOWBRIDGE_API_KEYS": f"{K1},short-secret"}
    server = GunicornServer(env, workers=2, threads=2, log_path=log)
    with pytest.raises(RuntimeError, match="gunicorn exited"):
        server.start(timeout=60)
    server.stop()
    text = log.read_text(errors="replace")
    assert "FLOWBRIDGE_API_KEYS: key 2 is shorter than 16 characters" in text
    assert "short-secret" not in text and K1 not in text
