"""Request IDs, structured logs and Prometheus ``/metrics``.

- **Request IDs.** Each request takes its ``X-Request-ID`` header if it is sane
  (1 to 128 of ``A-Z a-z 0-9 . _ -``), else a new ``uuid4().hex``. The ID is
  echoed on every response (errors and event streams too) and is in a context
  variable while the request runs, its body is streamed and the LLM pool runs
  its calls, so every log record made meanwhile carries it as ``request_id``
  (``-`` outside requests).
- **Logs.** ``LOG_FORMAT=text`` (default) or ``json`` (one object per line:
  time, level, logger, message, request_id, pid, exception); ``LOG_LEVEL``.
  One handler on the root logger, to stderr, set up by ``create_app`` however
  often it is called. An access line per request (``flowbridge.access``, INFO)
  when its response ends: method, path, status, duration in ms.
- **Metrics.** ``GET /metrics`` (see :mod:`webapp.guards.metrics`): requests by route
  (the URL rule, ``unmatched`` when none) and status, counted when the response
  *starts* (a stream counts at once; its histogram holds the time to its
  headers); upstream calls; LLM pool gauges; tasks by status. Under gunicorn the
  master prepares ``PROMETHEUS_MULTIPROC_DIR`` before forking, so every worker's
  counts add up whichever worker answers the scrape.
"""

from __future__ import annotations

import atexit
import contextvars
import json
import logging
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

from flask import Flask, Response, request

from ..config import ConfigError
from .gate import installed

__all__ = ["REQUEST_ID_HEADER", "JsonFormatter", "RequestIdFilter", "configure_logging", "current_request_id",
           "gunicorn_child_exit", "gunicorn_on_starting", "init_app"]

#: The header read and echoed.
REQUEST_ID_HEADER = "X-Request-ID"
#: The ID inside the WSGI environ.
ENVIRON_KEY = "flowbridge.request_id"
#: Where the matched URL rule is kept for the metrics, inside the WSGI environ.
_ROUTE_KEY = "flowbridge.route"
#: The route of the scrape endpoint, which the request metrics leave out.
METRICS_PATH = "/metrics"
#: Same name as webapp.guards.metrics.MULTIPROC_ENV; not imported so the gunicorn master never loads prometheus_client early.
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: The human-readable line.
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s [%(request_id)s] %(message)s"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("flowbridge_request_id", default="-")
access_logger = logging.getLogger("flowbridge.access")
logger = logging.getLogger(__name__)


def current_request_id() -> str:
    """The ID of the request being handled on this thread (or task), ``-`` outside requests."""
    return _request_id.get()


def clean_request_id(value: str | None) -> str:
    """``value`` if it is a sane request ID, else a fresh one."""
    if value and _VALID_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


# -- logging ---------------------------------------------------------------------------------------


class RequestIdFilter(logging.Filter):
    """Gives a record without one the current ``request_id`` (for handlers outside this module's setup)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    #: attributes copied into the object when a record has them (the access log's ``extra``)
    EXTRAS = ("method", "path", "status", "duration_ms")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", _request_id.get()),
            "pid": record.process,
        }
        for name in self.EXTRAS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (pytest replaces it for every test)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr


def install_record_factory() -> None:
    """Every record gets ``request_id`` when it is made, so every handler sees it (caplog, gunicorn's)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_flowbridge", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = _request_id.get()
        return record

    factory._flowbridge = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def configure_logging(log_format: str = "text", level: str = "INFO") -> logging.Handler:
    """Send the root logger to stderr in ``log_format`` at ``level``; calling it again reconfigures.

    :raises ConfigError: naming ``LOG_FORMAT`` or ``LOG_LEVEL``.
    """
    fmt, lvl = str(log_format).strip().lower(), str(level).strip().upper()
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be text or json, got {log_format!r}")
    if lvl == "WARN":
        lvl = "WARNING"
    if lvl not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    install_record_factory()
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_flowbridge", False)), None)
    if handler is None:
        handler = _StderrHandler()
        handler._flowbridge = True  # type: ignore[attr-defined]
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.setLevel(lvl)
    return handler


# -- requests --------------------------------------------------------------------------------------


class _Body:
    """The response iterable, run with the request ID set; ``close`` ends the request."""

    def __init__(self, body: Iterable[bytes], request_id: str, on_close: Callable[[], None]) -> None:
        self._body = body
        self._iterator: Iterator[bytes] | None = None
        self._request_id = request_id
        self._on_close: Callable[[], None] | None = on_close

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        token = _request_id.set(self._request_id)
        try:
            if self._iterator is None:
                self._iterator = iter(self._body)
            return next(self._iterator)
        finally:
            _request_id.reset(token)

    def close(self) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is None:
            return
        token = _request_id.set(self._request_id)
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            try:
                on_close()
            finally:
                _request_id.reset(token)


class _Observer:
    """WSGI middleware: request ID in and out, request metrics, the access log line."""

    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request_id = clean_request_id(environ.get("HTTP_X_REQUEST_ID"))
        environ[ENVIRON_KEY] = request_id
        started = time.perf_counter()
        state: dict[str, Any] = {"status": None, "counted": False}

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            state["status"] = status
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, exc_info)

        token = _request_id.set(request_id)
        try:
            body = self.wsgi_app(environ, start)
        except BaseException:  # only when exceptions propagate (TESTING): record it as a 500, re-raise
            state["status"] = state["status"] or "500"
            self._count(environ, state, started)
            self._finish(environ, state, started)
            raise
        finally:
            _request_id.reset(token)
        if state["status"] is not None:
            self._count(environ, state, started)
        return _Body(body, request_id, lambda: self._finish(environ, state, started))

    def _count(self, environ: dict[str, Any], state: dict[str, Any], started: float) -> None:
        """Request metrics, once, when the response starts."""
        if state["counted"]:
            return
        state["counted"] = True
        route = environ.get(_ROUTE_KEY, "unmatched")
        if route == METRICS_PATH:
            return
        from .metrics import get_metrics

        metrics = get_metrics()
        method = _method(environ)
        metrics.http_requests.labels(method, route, _status_code(state["status"])).inc()
        metrics.http_duration.labels(method, route).observe(time.perf_counter() - started)

    def _finish(self, environ: dict[str, Any], state: dict[str, Any], started: float) -> None:
        """When the response has ended (or the client went away): metrics if not yet, pool gauges, access log."""
        state["status"] = state["status"] or "500"
        self._count(environ, state, started)
        sample_pool(self.app)
        status = _status_code(state["status"])
        path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")) or "/"
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        level = logging.DEBUG if environ.get(_ROUTE_KEY) == METRICS_PATH else logging.INFO
        access_logger.log(level, "%s %s %s %.1fms", _method(environ), path, status, duration_ms,
                          extra={"method": environ.get("REQUEST_METHOD", ""), "path": path,
                                 "status": int(status) if status.isdigit() else status,
                                 "duration_ms": duration_ms})


def _method(environ: dict[str, Any]) -> str:
    method = str(environ.get("REQUEST_METHOD", "")).upper()
    return method if method in _METHODS else "other"  # bounded label values


def _status_code(status: str | None) -> str:
    return (status or "500").split(" ", 1)[0]


def _remember_route() -> None:
    """The URL rule (``/api/task/result``), never the raw path: metric labels stay few."""
    rule = request.url_rule
    request.environ[_ROUTE_KEY] = rule.rule if rule is not None else "unmatched"


def sample_pool(app: Flask) -> None:
    """Copy this process's LLM pool counts, its open streams (:mod:`webapp.chat`) and who waits at its start
    gate to the gauges; never creates the client.

    Called when a request ends, on a scrape, and by this worker's sampler thread
    (:func:`webapp.guards.metrics.start_pool_sampler`), which keeps the gauges current between requests.
    """
    from .metrics import get_metrics, start_pool_sampler

    start_pool_sampler(lambda: sample_pool(app))
    metrics, gate = get_metrics(), installed()
    metrics.start_gate_waiting.set(gate.waiting if gate is not None else 0)
    entry = app.extensions.get("flowbridge", {}).get("llm_client")  # (client, pid), see extensions._per_process
    if entry is None or entry[1] != os.getpid():
        return
    from ..chat import open_streams

    stats = entry[0].pool_stats
    metrics.pool_running.set(stats.running)
    metrics.pool_queued.set(stats.queued)
    metrics.streams_open.set(open_streams(entry[0]))


def _observe_upstream(path: str, seconds: float, outcome: str) -> None:
    from .metrics import get_metrics

    metrics = get_metrics()
    metrics.upstream_requests.labels(path, outcome).inc()
    metrics.upstream_duration.labels(path).observe(seconds)


def _task_counts(app: Flask) -> Iterator[Any]:
    from workflow import STATUSES, StoreUnavailableError

    from ..extensions import get_workflow_runtime
    from .metrics import tasks_family

    try:
        store = get_workflow_runtime(app).store
        counts = {status: store.count(status) for status in STATUSES}
    except (sqlite3.Error, StoreUnavailableError) as exc:  # a busy or broken task DB must not fail the scrape
        logger.warning("tasks by status left out of /metrics: %s", exc)
        return
    yield tasks_family(counts)


def init_app(app: Flask) -> None:
    """Install request IDs, logging, request metrics and ``/metrics`` on ``app``.

    :raises ConfigError: on a bad ``LOG_FORMAT`` or ``LOG_LEVEL``.
    """
    from flask.logging import default_handler

    from llm_client.observe import add_call_observer

    from . import metrics

    configure_logging(app.config.get("LOG_FORMAT", "text"), app.config.get("LOG_LEVEL", "INFO"))
    app.logger.removeHandler(default_handler)  # the root handler prints the app's records, with their ID
    metrics.get_metrics()
    add_call_observer(_observe_upstream)  # once per process however many apps
    app.wsgi_app = _Observer(app, app.wsgi_app)  # type: ignore[method-assign]
    # First of all before_request functions, so a request another one refuses still has its route.
    app.before_request_funcs.setdefault(None, []).insert(0, _remember_route)

    def scrape() -> Response:
        sample_pool(app)
        body, content_type = metrics.render(request.headers.get("Accept"), lambda: _task_counts(app))
        return Response(body, headers={"Content-Type": content_type})

    app.add_url_rule(METRICS_PATH, "metrics", scrape, methods=["GET"])


# -- gunicorn's master -------------------------------------------------------------------------------


def gunicorn_on_starting(server: Any) -> None:
    """Called by gunicorn.conf.py's ``on_starting`` in the master, before workers fork.

    Points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory (removed when the
    master exits) unless the operator set one; a directory given is emptied of
    the previous run's files, which would otherwise be added to this run's counts.
    (gunicorn's own lines follow ``LOG_FORMAT`` through :mod:`webapp.guards.gunicorn_log`.)
    """
    path = os.environ.get(_MULTIPROC_ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))
    else:
        path = tempfile.mkdtemp(prefix="flowbridge-metrics-")
        os.environ[_MULTIPROC_ENV] = path
        atexit.register(_remove_dir, path, os.getpid())
    server.log.info("Prometheus multiprocess directory: %s", path)


def _remove_dir(path: str, owner: int) -> None:
    if os.getpid() == owner:  # workers inherit the atexit hook; only the master removes the directory
        shutil.rmtree(path, ignore_errors=True)


def gunicorn_child_exit(server: Any, worker: Any) -> None:
    """Called by gunicorn.conf.py's ``child_exit`` in the master when a worker exits.

    Its live gauges (the LLM pool's) stop counting; its counters stay, as they should.
    """
    if os.environ.get(_MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
