"""The app plus a plain sync chat view, so one gunicorn serves both sides of ``bench/chat_load.py``.

``gunicorn -c gunicorn.conf.py bench.sync_view_app:app`` serves everything
``wsgi:app`` does, plus:

* ``POST /bench/sync-chat``: the same work as ``POST /api/chat`` (same body
  parsing, same client call, same JSON shape) in a plain ``def`` view that
  calls the client's sync method on the request thread, with no bridge;
* on each worker's first request, one warning logged through the ``urllib3``
  logger, so the benchmark can check that urllib3's warnings (such as
  "Connection pool is full") reach the gunicorn log from every worker before
  it counts them.
"""

from __future__ import annotations

import logging
import os

from flask import Response, jsonify, request

from bench._common import LOG_PROBE
from webapp import APIError, create_app, get_llm_client
from webapp.schemas import ChatRequest, ChatResponse, parse_body

# gunicorn configures only its own loggers. A root handler makes every
# library's warnings (urllib3's among them) land in gunicorn's stderr, the log.
logging.basicConfig(level=logging.WARNING, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")

app = create_app()
_probed_pid: int | None = None


@app.post("/bench/sync-chat")
def sync_chat() -> Response:
    """``POST /api/chat`` without the bridge: the sync client call on the request thread."""
    body = parse_body(ChatRequest, _json_body())
    assert isinstance(body, ChatRequest)
    if body.stream:
        raise APIError("streaming answers are not available yet; omit 'stream'", status=400)
    result = get_llm_client().chat_completion(body.conversation(), body.temperature, body.max_tokens)
    reply = ChatResponse(response=result.text, model=result.model, usage=result.usage)
    return jsonify(reply.model_dump())


@app.before_request
def _log_probe_once() -> None:
    """Log one warning through urllib3's logger per worker process (both views pay the same check)."""
    global _probed_pid
    if _probed_pid != os.getpid():
        _probed_pid = os.getpid()
        logging.getLogger("urllib3.connectionpool").warning("%s (pid %d)", LOG_PROBE, os.getpid())


def _json_body() -> object:
    # A copy of webapp.routes.api._json_body, so both views parse alike.
    if not request.is_json:
        raise APIError("send a JSON body with Content-Type: application/json", status=415, type="unsupported_media_type")
    data = request.get_json(silent=True)
    if data is None:
        raise APIError("the request body is not valid JSON")
    return data
