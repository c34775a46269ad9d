"""The app under real gunicorn (gthread workers), over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer, free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    env = {"LLM_BASE_URL": _upstream_server.base_url, "LLM_MAX_RETRIES": "0"}
    with GunicornServer(env, workers=2, threads=4, log_path=log) as server:
        yield server


def test_concurrent_chats_through_two_workers(served: GunicornServer, upstream: FakeUpstream) -> None:
    upstream.configure(delay=0.1)

    def ask(i: int) -> tuple[int, str, int]:
        with requests.post(f"{served.url}/api/chat", json={"message": f"q{i}"}, timeout=30) as r:
            return r.status_code, r.json().get("response"), r.headers.get("X-Worker-Pid", 0)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(ask, range(32)))
    assert [(status, text) for status, text, _ in results] == [(200, f"echo: q{i}") for i in range(32)]
    stats = upstream.stats()
    assert stats["requests"] == 32
    assert 1 < stats["max_concurrency"] <= 8  # 2 workers x 4 threads


def test_health_and_pages_under_gunicorn(served: GunicornServer) -> None:
    with requests.get(f"{served.url}/healthz", timeout=5) as r:
        assert r.json()["status"] == "ok"
    with requests.get(f"{served.url}/readyz", timeout=5) as r:
        assert r.status_code == 200
    with requests.get(served.url + "/", timeout=5) as r:
        assert "fake-model" not in r.text and "flowbridge" in r.text


@pytest.mark.local_model
def test_chat_reaches_the_real_local_model(tmp_path: Path) -> None:
    """No LLM_BASE_URL: gunicorn's master starts the local llama.cpp server and the app uses it."""
    env = {"FLOWBRIDGE_LOCAL_MODEL_PORT": str(free_port())}
    with GunicornServer(env, workers=2, threads=2, log_path=tmp_path / "gunicorn.log") as server:
        with requests.get(server.url + "/", timeout=10) as r:
            assert "SmolLM2-135M-Instruct" in r.text
        with requests.post(f"{server.url}/api/chat", json={"message": "Say hi", "max_tokens": 16,
                                                           "temperature": 0}, timeout=120) as r:
            assert r.status_code == 200, r.text
            body = r.json()
        assert body["response"].strip() and body["usage"]["completion_tokens"] > 0
        local_url = f"http://127.0.0.1:{env['FLOWBRIDGE_LOCAL_MODEL_PORT']}/v1/models"
        with requests.get(local_url, timeout=5) as r:
            assert r.ok
    # stopped with the app
    with pytest.raises(requests.ConnectionError):
        requests.get(local_url, timeout=2)
