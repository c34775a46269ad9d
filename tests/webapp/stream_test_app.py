"""The real app plus test-only streams under ``/_test``, for the client and browser tests.

Serve it with ``GunicornServer(env, app="tests.webapp.stream_test_app:app")``. Routes:

* ``GET /_test/events/<name>``: a known event sequence (``SEQUENCES``) through ``sse.sse_response``;
* ``GET /_test/raw/<name>``: hand-cut bytes (``RAW``) written with pauses, so that frames arrive split
  across TCP chunks, with heartbeat comments, multi-line data and CRLF line ends;
* ``GET /_test/heartbeat``: an async source that is silent for longer than the heartbeat;
* ``GET|POST /_test/slow?id=X``: content every 50 ms for up to 100 s; when it ends (the client went
  away) its ``finally`` writes ``$STREAM_TEST_MARKERS/X.closed``;
* ``/_test/fake/...``: stand-ins for the API's paths (``/functions``, ``/invoke/<name>``,
  ``/api/chat``, ``/api/flows/<name>``, ``/api/task/events``) that echo the request they got, so
  the client's requests can be checked without the real routes;
* ``GET /_test/page``: a blank page loading ``/static/js/events.js``.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, request

from tests.servers import GunicornServer
from webapp import APIError, create_app, sse

bp = Blueprint("stream_test", __name__, url_prefix="/_test")

SEQUENCES: dict[str, list[dict[str, Any]]] = {
    "basic": [
        sse.start({"items": 2}),
        sse.progress(1, 2, "first"),
        sse.content("Hel"),
        sse.content("lo, "),
        sse.content("wörld ✓"),
        sse.progress(2, 2, "second", result={"ok": True}),
        sse.done({"processed": 2}),
    ],
    "error": [
        sse.start(),
        sse.content("partial "),
        sse.error("the model went away", "upstream_error"),
    ],
}

_SPLIT_TEXT = "a frame cut in pieces — ünïcödé 🚀"


def _cut(data: bytes, positions: list[int]) -> list[bytes]:
    """``data`` cut at each of ``positions``."""
    edges = [0, *sorted(set(positions)), len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:]) if b > a]


def _raw_split() -> list[bytes]:
    first = sse.encode(sse.start({"raw": True}))
    body = first + sse.HEARTBEAT_FRAME + sse.encode(sse.content(_SPLIT_TEXT)) + sse.encode(sse.done({"n": 3}))
    # Cut inside "data:", inside the JSON, between the two "\n" ending a frame, inside the
    # heartbeat, and inside multi-byte characters (a 3-byte dash, a 4-byte emoji).
    dash, emoji = body.index("—".encode()), body.index("🚀".encode())
    return _cut(body, [3, 12, len(first) - 1, len(first) + 2, dash + 1, emoji + 1, emoji + 3, len(body) - 1])


def _raw_multiline() -> list[bytes]:
    """Multi-line ``data`` fields, CRLF line ends, a comment, an ``event:`` field and a split CRLF."""
    return [
        b'data: {"type": "start",\r\ndata:  "data": {"multi": true}}\r\n\r\n',
        b": a comment line\r\n\r\n",
        b"event: ignored-field\r\n",
        b'data: {"type": "content",\r\n',
        b'data: "data": "line one"}\r',
        b"\n\r\n",
        b'data:{"type":"content","data":"no space after the colon"}\n\n',
        b'data: {"type": "done", "data": {"multi": true}}\r\n\r\n',
    ]


def _raw_truncated() -> list[bytes]:
    return [sse.encode(sse.start()), sse.encode(sse.content("and then nothing"))]


def _raw_not_json() -> list[bytes]:
    return [sse.encode(sse.start()), b"data: this is not json\n\n"]


RAW = {"split": _raw_split, "multiline": _raw_multiline, "truncated": _raw_truncated,
       "not_json": _raw_not_json}
#: what the split stream's content event carries
SPLIT_TEXT = _SPLIT_TEXT


@bp.get("/events/<name>")
def events(name: str) -> Response:
    if name not in SEQUENCES:
        raise APIError(f"no sequence named {name!r}", status=404, type="not_found")
    return sse.sse_response(iter(SEQUENCES[name]))


@bp.get("/raw/<name>")
def raw(name: str) -> Response:
    if name not in RAW:
        raise APIError(f"no raw stream named {name!r}", status=404, type="not_found")
    pieces = RAW[name]()

    def body() -> Iterator[bytes]:
        for piece in pieces:
            yield piece
            time.sleep(0.03)  # separate writes, so the client reads separate chunks

    return Response(body(), mimetype="text/event-stream", headers=sse.HEADERS)


@bp.get("/heartbeat")
def heartbeat() -> Response:
    async def source() -> AsyncIterator[dict[str, Any]]:
        yield sse.start()
        await asyncio.sleep(1.0)  # ten heartbeat periods: one at least, even on a busy machine
        yield sse.content("after the silence")

    return sse.sse_response(source(), heartbeat=0.1)


@bp.route("/slow", methods=["GET", "POST"])
def slow() -> Response:
    marker = _marker_path(request.args.get("id", ""))

    def source() -> Iterator[dict[str, Any]]:
        try:
            yield sse.start({"id": marker.stem})
            for i in range(2000):
                yield sse.content(f"{i} ")
                time.sleep(0.05)
            yield sse.done()
        finally:
            marker.write_text("closed")

    return sse.sse_response(source())


def _marker_path(marker_id: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", marker_id):
        raise APIError("id: letters, digits, - and _ only", status=400)
    folder = os.environ.get("STREAM_TEST_MARKERS")
    if not folder:
        raise APIError("set STREAM_TEST_MARKERS to a folder", status=500, type="internal_error")
    return Path(folder) / f"{marker_id}.closed"


@bp.get("/page")
def page() -> Response:
    html = ("<!doctype html><meta charset=utf-8><title>events.js</title>"
            "<h1>flowbridge events.js</h1><pre id=log></pre>"
            '<script src="/static/js/events.js"></script>')
    return Response(html, mimetype="text/html")


# -- stand-ins for the API's paths: they echo what they received --------------------------------

def _echo() -> dict[str, Any]:
    return {"method": request.method, "path": request.path, "args": request.args.to_dict(),
            "json": request.get_json(silent=True), "accept": request.headers.get("Accept"),
            "authorization": request.headers.get("Authorization")}


def _echo_stream() -> Response:
    received = _echo()
    return sse.sse_response(iter([sse.start(received), sse.content("echo"), sse.done(received)]))


@bp.get("/fake/functions")
def fake_functions() -> Response:
    return jsonify({"functions": [{"name": "echo", "streaming": False}], "request": _echo()})


@bp.post("/fake/invoke/<name>")
def fake_invoke(name: str) -> Response:
    if name == "missing":
        raise APIError("no function named 'missing'", status=404, type="not_found")
    if name == "bad_input":
        raise APIError("inputs.items: field required", status=400)
    if name == "busy":
        response = jsonify({"error": {"type": "overloaded", "message": "all slots are busy"}})
        response.status_code, response.headers["Retry-After"] = 503, "2"
        return response
    if name == "plain_text_error":
        return Response("gateway exploded", status=502, mimetype="text/plain")
    if name == "failing":
        return sse.sse_response(iter(SEQUENCES["error"]))
    if name == "streaming":
        return _echo_stream()
    return jsonify({"result": {"name": name, "request": _echo()}})


@bp.post("/fake/api/chat")
def fake_chat() -> Response:
    return _echo_stream()


@bp.post("/fake/api/flows/<name>")
def fake_flow(name: str) -> Response:
    if name == "not_streaming":
        return jsonify({"answer": "json, not a stream"})
    return _echo_stream()


@bp.get("/fake/api/task/events")
def fake_task_events() -> Response:
    return _echo_stream()


def build_app() -> Any:
    """The real app (settings from the environment) with the test routes."""
    application = create_app()
    application.register_blueprint(bp)
    return application


def __getattr__(name: str) -> Any:
    # ``app`` is built when gunicorn asks for it, not when a test imports this module
    # for its constants and helpers (create_app configures process-wide services).
    if name == "app":
        return build_app()
    raise AttributeError(name)


def server(upstream_url: str, markers: Path, log_path: Path | None = None, *,
           app: str = "tests.webapp.stream_test_app:app") -> GunicornServer:
    """A (not yet started) gunicorn serving this app, or ``app``, with test settings."""
    env = {"LLM_BASE_URL": upstream_url, "LLM_MAX_RETRIES": "0", "FLOWBRIDGE_TASK_DB": "memory",
           "STREAM_TEST_MARKERS": str(markers)}
    return GunicornServer(env, workers=2, threads=4, app=app, log_path=log_path)


def wait_for_marker(markers: Path, marker_id: str, timeout: float = 10.0) -> bool:
    """True once the slow stream ``marker_id`` ran its ``finally`` (bounded wait)."""
    path, deadline = markers / f"{marker_id}.closed", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.05)
    return path.exists()
