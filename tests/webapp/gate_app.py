"""A test-only WSGI app for the start gate: ``tests.webapp.gate_app:app``.

- ``GET /healthz``: ``{"pid": ...}``, as the real app's (the test server waits on it);
- ``POST /hold?name=N``: writes ``N.held`` into ``FLOWBRIDGE_TEST_MARKER_DIR``, then computes,
  as far as the gate can tell, until a file ``N.release`` appears there (at most 60 s): it never
  reports a wait, so it keeps its start permit until its lease ends;
- anything else: 200 ``done`` at once.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

_MARKERS = Path(os.environ["FLOWBRIDGE_TEST_MARKER_DIR"])


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/healthz":
        body = json.dumps({"status": "ok", "pid": os.getpid()}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/hold":
        name = parse_qs(environ.get("QUERY_STRING", "")).get("name", ["x"])[0]
        (_MARKERS / f"{name}.held").touch()
        until = time.monotonic() + 60
        while not (_MARKERS / f"{name}.release").exists() and time.monotonic() < until:
            time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    return [b"done"]
