"""An OpenAI-compatible server answering as FlowGram's mock LLM does, for runs of both engines.

Every other request (an http node's) gets its method, path and body echoed back as JSON.

FlowGram's tests swap the llm node for ``MockLLMExecutor``, which answers ``Hi, I am an AI model, my name is
${modelName}, temperature is ${temperature}, system prompt is "${systemPrompt}", prompt is "${prompt}"``.
Here the real llm nodes of both engines (ours through ``LLMClient``, runtime-js through langchain's
``ChatOpenAI``) call this server, which builds that text from the request: ``model``, ``temperature``, the
system message (``undefined`` when there is none, as in JavaScript) and the last user message.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def js_number(value: Any) -> str:
    """A JSON number written as JavaScript's ``String()`` writes it (for the temperatures sent)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "undefined" if value is None else str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    mantissa, _, exponent = text.partition("e")
    if exponent:  # 1e-07 -> 1e-7, 1e+21 -> 1e+21
        sign = "-" if exponent.startswith("-") else "+"
        return f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return text


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def mock_reply(payload: dict[str, Any]) -> str:
    """FlowGram's mock LLM text for one chat request."""
    messages = payload.get("messages") or []
    system = next((_text(m.get("content")) for m in messages if m.get("role") == "system"), "undefined")
    users = [m for m in messages if m.get("role") == "user"]
    prompt = _text(users[-1].get("content")) if users else "undefined"
    return (f"Hi, I am an AI model, my name is {payload.get('model')}, temperature is "
            f"{js_number(payload.get('temperature'))}, system prompt is \"{system}\", prompt is \"{prompt}\"")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version, sys_version = "mock", ""  # the same headers for every answer: no Date either

    def date_time_string(self, timestamp: float | None = None) -> str:
        return "Thu, 01 Jan 2026 00:00:00 GMT"

    def _echo(self) -> None:
        """Any other request (the http nodes'): ``/status/NNN...`` answers NNN; the body echoes the request."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        parts = self.path.split("/")
        status = int(parts[2]) if len(parts) > 2 and parts[1] == "status" and parts[2].isdigit() else 200
        self._send(status, {"method": self.command, "path": self.path, "body": body,
                            "contentType": self.headers.get("Content-Type")})

    do_GET = do_PUT = do_DELETE = do_PATCH = _echo

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._echo()
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            payload = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self._send(400, {"error": {"message": "the body is not a JSON object"}})
            return
        self.server.requests += 1  # type: ignore[attr-defined]
        self._send(200, {
            "id": "chatcmpl-flowgram-mock", "object": "chat.completion", "created": int(time.time()),
            "model": payload.get("model"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": mock_reply(payload)}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class FlowGramMockLLM:
    """The server on 127.0.0.1 (a free port) in a background thread; use it as a context manager."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.requests = 0  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="flowgram-mock-llm", daemon=True)

    @property
    def authority(self) -> str:
        """``127.0.0.1:port``: the entry for ``RuntimeSettings.allowed_hosts``."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        """The ``apiHost`` both engines' llm nodes get (OpenAI clients append ``/chat/completions``)."""
        return f"http://{self.authority}/v1"

    @property
    def requests(self) -> int:
        return int(self._server.requests)  # type: ignore[attr-defined]

    def __enter__(self) -> FlowGramMockLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
