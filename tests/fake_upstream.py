"""A fake OpenAI-compatible upstream: a real HTTP/1.1 server for tests and benchmarks.

It answers ``/v1/chat/completions`` (plain and SSE streaming), ``/v1/embeddings`` and
``/v1/models`` on 127.0.0.1, keeps connections alive, replays a scripted list of faults
and counts what it sees. Scripted replies (:meth:`FakeUpstream.script`) make it answer with
tool calls, reasoning or given text, per conversation; a request that forces a tool call
(``tool_choice``) or asks for JSON (``response_format``) gets one made from the schema. Another process can steer it through ``/_control/*``;
``python -m tests.fake_upstream --port 0`` runs it in the foreground.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import hashlib
import http.server
import itertools
import json
import math
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.fake_replies import (
    WORD_SPLIT as _WORD_SPLIT,
    Scripts,
    conversation_problem as _conversation_problem,
    finish_of,
    openai_call as _openai_call,
    reply_deltas as _reply_deltas,
    schema_reply as _schema_reply,
    text_of as _text_of,
    tools_problem as _tools_problem,
)

LOG_SIZE = 200
FAULT_KINDS = frozenset({"reset", "malformed", "bad_shape", "hang", "stream_error", "stream_error_event",
                         "trickle", "null_content", "no_choices", "stream_malformed"})
_INVALID = object()  # a request body that is not JSON


@dataclasses.dataclass(frozen=True)
class _Config:
    """Behaviour knobs; replaced whole on each ``configure`` so a request sees one snapshot."""

    delay: float = 0.0
    reply: str | None = None
    stream_chunk_delay: float = 0.0
    model: str = "fake-model"
    embedding_dim: int = 8
    finish_reason: str = "stop"


_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "delay": (int, float), "reply": (str, type(None)), "stream_chunk_delay": (int, float),
    "model": (str,), "embedding_dim": (int,), "finish_reason": (str,),
}


def _fresh_stats() -> dict[str, Any]:
    return {"requests": 0, "by_path": {}, "in_flight": 0, "max_concurrency": 0, "connections": 0,
            "streams_started": 0, "streams_completed": 0, "streams_closed_early": 0, "last_request": None,
            "trickles_started": 0, "trickles_closed": 0}


def _error(message: str, type_: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": type_}}


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return _INVALID


def flowgram_mock_reply(payload: dict[str, Any]) -> str:
    """What FlowGram's test mock of the llm node answers, from a chat request's ``model``, ``temperature``
    (printed as JavaScript prints a number) and its system and user messages (``undefined`` when absent)::

        Hi, I am an AI model, my name is m1, temperature is 0.5, system prompt is "S", prompt is "P"
    """
    from workflow.javascript import js_number_text

    messages = payload.get("messages") or []

    def text(role: str) -> str:
        found = [_text_of(m.get("content")) for m in messages if m.get("role") == role]
        return found[-1] if found else "undefined"

    temperature = payload.get("temperature")
    shown = js_number_text(temperature) if isinstance(temperature, (int, float)) else "undefined"
    return (f"Hi, I am an AI model, my name is {payload.get('model', 'undefined')}, temperature is {shown}, "
            f'system prompt is "{text("system")}", prompt is "{text("user")}"')


@functools.lru_cache(maxsize=4096)
def embedding_for(text: str, dim: int) -> tuple[float, ...]:
    """A deterministic unit vector of ``dim`` floats derived from a hash of ``text``."""
    raw = hashlib.shake_256(text.encode("utf-8")).digest(2 * dim)
    values = [v / 32767.5 - 1.0 for v in struct.unpack(f">{dim}H", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return tuple(v / norm for v in values)


class FakeUpstream:
    """A threaded fake OpenAI server; ``start()`` it or use it as a context manager.

    :param replier: makes each chat answer's text from the request body (e.g. :func:`flowgram_mock_reply`);
        default: the ``reply`` setting, else ``echo: <last user message>``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 replier: Callable[[dict[str, Any]], str] | None = None) -> None:
        self.host = host
        self.replier = replier
        self._requested_port = port
        self._lock = threading.Lock()
        self._config = _Config()
        self._faults: collections.deque[dict[str, Any]] = collections.deque()
        self._stats = _fresh_stats()
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=LOG_SIZE)
        self._generation = 0  # bumped by reset(): requests begun earlier no longer count
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._call_ids = itertools.count(1)
        self._scripts = Scripts(self._call_ids)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeUpstream:
        """Bind and serve in a background thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("FakeUpstream already started")
        self._stopping.clear()
        self._server = _Server((self.host, self._requested_port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-upstream-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers and close every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        if self._thread is not None:
            self._thread.join()
        server.server_close()
        server.close_connections(timeout=2.0)

    def __enter__(self) -> FakeUpstream:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeUpstream is not running")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://host:port/v1``, as OpenAI clients expect."""
        return f"http://{self.host}:{self.port}/v1"

    # -- steering --------------------------------------------------------------------------

    def configure(self, **kw: Any) -> None:
        """Set ``delay``, ``reply``, ``stream_chunk_delay``, ``model`` or ``embedding_dim``."""
        for name, value in kw.items():
            if name not in _CONFIG_TYPES:
                raise TypeError(f"unknown setting {name!r}")
            if not isinstance(value, _CONFIG_TYPES[name]) or isinstance(value, bool):
                raise TypeError(f"bad value for {name}: {value!r}")
            if isinstance(value, (int, float)) and value < (1 if name == "embedding_dim" else 0):
                raise ValueError(f"{name} out of range: {value!r}")
        with self._lock:
            self._config = dataclasses.replace(self._config, **kw)

    def config(self) -> dict[str, Any]:
        """The current settings."""
        with self._lock:
            return dataclasses.asdict(self._config)

    def push_faults(self, *faults: dict[str, Any]) -> None:
        """Queue faults; each API request takes the oldest one, if any."""
        for fault in faults:
            if not isinstance(fault, dict) or not (isinstance(fault.get("status"), int)
                                                   or fault.get("kind") in FAULT_KINDS):
                raise ValueError(f"bad fault {fault!r}: need an int 'status' or 'kind' in {sorted(FAULT_KINDS)}")
        with self._lock:
            self._faults.extend(faults)

    def script(self, replies: list[str | dict[str, Any]], match: str | Callable[[dict[str, Any]], bool] | None = None,
               repeat: bool = False) -> None:
        """Answer the next chat requests that ``match`` with ``replies``, one each, in order: texts or
        tool calls (see :meth:`tests.fake_replies.Scripts.add`); ``repeat``: the last one forever."""
        self._scripts.add(replies, match, repeat)

    def reset(self) -> None:
        """Back to defaults: no faults, no scripts, zeroed stats; requests still running are forgotten."""
        with self._lock:
            self._generation += 1
            self._config = _Config()
            self._scripts.clear()
            self._faults.clear()
            self._stats = _fresh_stats()
            self._log.clear()

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters, ``last_request`` and ``requests_log``."""
        with self._lock:
            snap = dict(self._stats)
            snap["by_path"] = dict(snap["by_path"])
            snap["requests_log"] = list(self._log)
            snap["faults_pending"] = len(self._faults)
        return snap

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> bool:
        """Poll ``stats()`` until ``predicate`` holds; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self.stats()):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    # -- used by the handler -----------------------------------------------------------------

    def _begin(self, record: dict[str, Any]) -> tuple[int, dict[str, Any] | None, _Config]:
        with self._lock:
            s = self._stats
            s["requests"] += 1
            s["by_path"][record["path"]] = s["by_path"].get(record["path"], 0) + 1
            s["in_flight"] += 1
            s["max_concurrency"] = max(s["max_concurrency"], s["in_flight"])
            s["last_request"] = record
            self._log.append(record)
            fault = self._faults.popleft() if self._faults else None
            return self._generation, fault, self._config

    def _end(self, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._stats["in_flight"] -= 1

    def _bump(self, key: str, generation: int | None = None) -> None:
        with self._lock:
            if generation is None or generation == self._generation:
                self._stats[key] += 1

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the server stops."""
        if seconds > 0:
            self._stopping.wait(seconds)


class _Server(http.server.ThreadingHTTPServer):
    """Thread per connection; tracks open connections so ``stop()`` can close them."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], upstream: FakeUpstream) -> None:
        self.upstream = upstream
        self._open: set[socket.socket] = set()
        self._to_reset: set[socket.socket] = set()
        self._cond = threading.Condition()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # skip HTTPServer's getfqdn(), a DNS lookup
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        self.upstream._bump("connections")
        with self._cond:
            self._open.add(request)
        super().process_request(request, client_address)

    def reset_on_close(self, request: socket.socket) -> None:
        """Close ``request`` with SO_LINGER 0 and no FIN first, so the client sees a reset."""
        request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._cond:
            self._to_reset.add(request)

    def shutdown_request(self, request: Any) -> None:
        with self._cond:
            reset = request in self._to_reset
            self._to_reset.discard(request)
        if reset:
            self.close_request(request)
        else:
            super().shutdown_request(request)
        with self._cond:
            self._open.discard(request)
            self._cond.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # clients hanging up are business as usual
            super().handle_error(request, client_address)

    def close_connections(self, timeout: float) -> None:
        with self._cond:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._cond:
            self._cond.wait_for(lambda: not self._open, timeout)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeUpstream/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    ROUTES = {"/v1/chat/completions": ("POST", "_chat"), "/v1/embeddings": ("POST", "_embeddings"),
              "/v1/models": ("GET", "_models")}
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: benchmarks send hundreds of requests a second."""

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_GET

    def _dispatch(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            try:
                body = self._read_body()
            except ValueError:
                self.close_connection = True
                self._send_json(400, _error("unreadable request body"))
                return
            if path.startswith("/_control/"):
                self._control(path, _loads(body))
            else:
                self._api(path, _loads(body))
        except ConnectionError:
            self.close_connection = True

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while size := int(self.rfile.readline(1024).split(b";", 1)[0].strip() or b"-", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)
            while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send_raw(self, status: int, body: bytes, content_type: str,
                  headers: dict[str, Any] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, headers: dict[str, Any] | None = None) -> None:
        self._send_raw(status, json.dumps(obj).encode(), "application/json", headers)

    # -- control --------------------------------------------------------------------------

    def _control(self, path: str, payload: Any) -> None:
        up = self.server.upstream
        route = (self.command, path)
        try:
            if route == ("GET", "/_control/stats"):
                self._send_json(200, up.stats())
            elif route == ("POST", "/_control/configure"):
                if not isinstance(payload, (dict, type(None))):
                    raise TypeError("configure takes a JSON object")
                up.configure(**(payload or {}))
                self._send_json(200, {"ok": True, "config": up.config()})
            elif route == ("POST", "/_control/faults"):
                if not isinstance(payload, list):
                    raise TypeError("faults takes a JSON list")
                up.push_faults(*payload)
                self._send_json(200, {"ok": True, "faults_pending": up.stats()["faults_pending"]})
            elif route == ("POST", "/_control/script"):
                if not isinstance(payload, dict) or not isinstance(payload.get("replies"), list):
                    raise TypeError('script takes {"replies": [...], "match"?: text, "repeat"?: bool}')
                if not isinstance(payload.get("match"), (str, type(None))):
                    raise TypeError("match must be a text or null")
                up.script(payload["replies"], payload.get("match"), bool(payload.get("repeat")))
                self._send_json(200, {"ok": True})
            elif route == ("POST", "/_control/reset"):
                up.reset()
                self._send_json(200, {"ok": True})
            else:
                self._send_json(404, _error(f"no control endpoint {self.command} {path}", "not_found"))
        except (TypeError, ValueError) as exc:
            self._send_json(400, _error(str(exc)))

    # -- API ------------------------------------------------------------------------------

    def _api(self, path: str, payload: Any) -> None:
        up = self.server.upstream
        record = {"method": self.command, "path": path, "headers": dict(self.headers.items()),
                  "json": None if payload is _INVALID else payload}
        generation, fault, cfg = up._begin(record)
        try:
            up._sleep(cfg.delay)
            kind = fault.get("kind") if fault else None
            if fault and "status" in fault:
                body = fault.get("body", _error(f"injected {fault['status']}", "fake"))
                self._send_json(fault["status"], body, fault.get("headers"))
                return
            if kind == "reset":
                self.server.reset_on_close(self.connection)
                self.close_connection = True
                return
            if kind in ("malformed", "bad_shape"):
                self._send_raw(200, b"not json" if kind == "malformed" else b'{"foo": 1}', "application/json")
                return
            if kind == "hang":
                up._sleep(float(fault.get("seconds", 5)))
            if kind == "trickle":
                self._trickle(float(fault.get("interval", 1.0)), str(fault.get("first", "")), generation)
                return
            if up._stopping.is_set():  # woken by stop(): drop the request
                self.close_connection = True
                return
            method, name = self.ROUTES.get(path, (None, ""))
            if method is None:
                self._send_json(404, _error(f"unknown path {path}", "not_found"))
            elif self.command != method:
                self._send_json(405, _error(f"{self.command} not allowed on {path}"))
            elif payload is _INVALID:
                self._send_json(400, _error("request body is not valid JSON"))
            else:
                getattr(self, name)(payload, cfg, kind, generation)
        finally:
            up._end(generation)

    def _models(self, payload: Any, cfg: _Config, kind: str | None, generation: int) -> None:
        self._send_json(200, {"object": "list", "data": [{"id": cfg.model, "object": "model", "owned_by": "fake"}]})

    def _embeddings(self, payload: Any, cfg: _Config, kind: str | None, generation: int) -> None:
        texts = payload.get("input") if isinstance(payload, dict) else None
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            self._send_json(400, _error("'input' must be a string or a non-empty list of strings"))
            return
        tokens = sum(len(t.split()) for t in texts)
        self._send_json(200, {
            "object": "list", "model": cfg.model,
            "data": [{"object": "embedding", "index": i, "embedding": list(embedding_for(t, cfg.embedding_dim))}
                     for i, t in enumerate(texts)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })

    def _chat(self, payload: Any, cfg: _Config, kind: str | None, generation: int) -> None:
        messages = payload.get("messages") if isinstance(payload, dict) else None
        if not (isinstance(messages, list) and messages
                and all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)):
            self._send_json(400, _error("'messages' must be a non-empty list of objects with a 'role'"))
            return
        problem = _conversation_problem(messages) or _tools_problem(payload)
        if problem:
            self._send_json(400, _error(problem))
            return
        reply = self.server.upstream._scripts.next_reply(payload)
        if reply is None and self.server.upstream.replier is None and cfg.reply is None:
            reply = _schema_reply(payload, self.server.upstream._call_ids)
        if reply is not None:
            text = reply["content"] or ""
        elif self.server.upstream.replier is not None:
            text = self.server.upstream.replier(payload)
        elif cfg.reply is not None:
            text = cfg.reply
        else:
            users = [m for m in messages if m["role"] == "user"]
            text = "echo: " + (_text_of(users[-1].get("content")) if users else "")
        cid = f"chatcmpl-fake-{next(self.server.upstream._ids)}"
        if payload.get("stream") is True:
            options = payload.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            self._stream(cid, text, cfg, kind, generation, reply, usage)
            return
        prompt = sum(len(_text_of(m.get("content")).split()) for m in messages)
        completion = len(text.split())
        message: dict[str, Any] = {"role": "assistant", "content": None if kind == "null_content" else text}
        finish = cfg.finish_reason
        if reply is not None:
            message["content"] = reply["content"]
            if reply["tool_calls"]:
                message["tool_calls"] = [_openai_call(i, call) for i, call in enumerate(reply["tool_calls"])]
            if reply["reasoning_content"]:
                message["reasoning_content"] = reply["reasoning_content"]
            finish = finish_of(reply, cfg.finish_reason)
        answer: dict[str, Any] = {
            "id": cid, "object": "chat.completion", "created": int(time.time()), "model": cfg.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        }
        if kind == "no_choices":
            del answer["choices"]
        self._send_json(200, answer)

    def _trickle(self, interval: float, first: str, generation: int) -> None:
        """A 200 whose body never ends: ``first`` (e.g. a whole SSE event), then one space (valid before
        JSON, and in no SSE field) per ``interval``, until the client closes the connection (counted in
        ``trickles_closed``) or the server stops."""
        up = self.server.upstream
        up._bump("trickles_started", generation)
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if first:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(first.encode()), first.encode()))
            while not up._stopping.is_set():
                self.wfile.write(b"1\r\n \r\n")
                up._sleep(interval)
        except OSError:  # BrokenPipeError / ConnectionResetError: the client closed it
            up._bump("trickles_closed", generation)

    def _stream(self, cid: str, text: str, cfg: _Config, kind: str | None, generation: int,
                reply: dict[str, Any] | None = None, usage: bool = False) -> None:
        """SSE over chunked encoding: one HTTP chunk per event, so the connection stays reusable.

        A scripted ``reply`` streams as OpenAI does: reasoning deltas, content deltas, then each tool
        call's id and name in one delta and its arguments split over several. ``usage``: a last chunk
        without choices carries the token counts (``stream_options.include_usage``)."""
        up = self.server.upstream
        up._bump("streams_started", generation)
        created = int(time.time())

        def event(delta: dict[str, Any], finish: str | None) -> bytes:
            chunk = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": cfg.model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        if reply is not None:
            deltas = _reply_deltas(reply)
            frames = [event({"role": "assistant", **d} if i == 0 else d, None) for i, d in enumerate(deltas)]
            frames.append(event({}, finish_of(reply, cfg.finish_reason)))
        else:
            pieces = [None] if kind == "null_content" else _WORD_SPLIT.split(text)
            frames = [event({"role": "assistant", "content": piece} if i == 0 else {"content": piece}, None)
                      for i, piece in enumerate(pieces)]
            frames.append(event({}, cfg.finish_reason))
        if usage:
            words = len(text.split())
            frames.append(b"data: " + json.dumps({"id": cid, "object": "chat.completion.chunk", "choices": [],
                                                  "usage": {"prompt_tokens": 1, "completion_tokens": words,
                                                            "total_tokens": 1 + words}}).encode() + b"\n\n")
        frames.append(b"data: [DONE]\n\n")
        if kind == "no_choices":
            frames = [b"data: " + json.dumps({"id": cid, "object": "chat.completion.chunk"}).encode() + b"\n\n"]
        elif kind == "stream_malformed":  # a good first chunk, then one that is not JSON
            frames = frames[:1] + [b'data: {"choices": [\n\n']
        if kind == "stream_error":
            frames = frames[:2]
        elif kind == "stream_error_event":
            frames = frames[:1] + [b"data: " + json.dumps(_error("boom", "server_error")).encode() + b"\n\n"]
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i, frame in enumerate(frames):
                if i:
                    up._sleep(cfg.stream_chunk_delay)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))  # wfile is unbuffered
            if kind == "stream_error":  # end mid-body: no terminating chunk, then FIN
                self.close_connection = True
                return
            self.wfile.write(b"0\r\n\r\n")
        except ConnectionError:  # BrokenPipeError / ConnectionResetError: the client went away
            self.close_connection = True
            up._bump("streams_closed_early", generation)
            return
        if kind != "stream_error_event":
            up._bump("streams_completed", generation)


def main(argv: list[str] | None = None) -> int:
    """Serve in the foreground; prints ``READY <base_url>`` once listening; SIGTERM/SIGINT stop it."""
    parser = argparse.ArgumentParser(prog="python -m tests.fake_upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    for field in dataclasses.fields(_Config):  # --delay, --reply, --stream-chunk-delay, --model, ...
        parser.add_argument("--" + field.name.replace("_", "-"), default=field.default,
                            type=str if field.name in ("reply", "model") else type(field.default))
    parser.add_argument("--flowgram-mock", action="store_true",
                        help="answer chats as FlowGram's llm test mock does (see flowgram_mock_reply)")
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    upstream = FakeUpstream(args.host, args.port, replier=flowgram_mock_reply if args.flowgram_mock else None)
    upstream.configure(**{f.name: getattr(args, f.name) for f in dataclasses.fields(_Config)})
    with upstream:
        print(f"READY {upstream.base_url}", flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
