"""The LLM client honours the environment's proxy settings (HTTP_PROXY, NO_PROXY) as requests does,
though it resolves them once per client rather than on every call (llm_client._http.Transport._send)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llm_client import LLMClient, LLMConnectionError

#: an upstream nobody can reach directly: ".invalid" never resolves (RFC 2606)
UPSTREAM = "http://llm.invalid:9/v1"
COMPLETION = {"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "via the proxy"},
                           "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}}


class _Proxy(BaseHTTPRequestHandler):
    """A forward proxy that answers every request itself and records its request line and headers."""

    seen: list[tuple[str, str, str | None]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).seen.append((self.command, self.path, self.headers.get("Authorization")))
        body = json.dumps(COMPLETION).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
                 "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    _Proxy.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_calls_go_through_the_environments_proxy(proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    with LLMClient(UPSTREAM, env={"LLM_API_KEY": "sk-test-secret", "LLM_MAX_RETRIES": "0"}) as client:
        assert client.chat("hi") == "via the proxy"
        assert client.chat("again") == "via the proxy"  # the second call reuses what the first resolved
    assert [(m, p) for m, p, _ in _Proxy.seen] == [("POST", UPSTREAM + "/chat/completions")] * 2
    assert all(auth == "Bearer sk-test-secret" for _, _, auth in _Proxy.seen)


def test_no_proxy_sends_the_call_straight_to_the_upstream(proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "llm.invalid")
    with LLMClient(UPSTREAM, env={"LLM_MAX_RETRIES": "0", "LLM_CONNECT_TIMEOUT": "5"}) as client:
        with pytest.raises(LLMConnectionError):
            client.chat("hi")  # straight to llm.invalid, which does not resolve
    assert _Proxy.seen == []
