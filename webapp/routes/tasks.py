"""FlowGram's task routes: run, report, result, cancel, validate, events (SSE); plus the task list and ``/info``."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from workflow import TaskCapacityError, TaskQueueError, WorkflowInputError, WorkflowRuntime

from ..errors import APIError, error_response
from ..extensions import get_workflow_runtime
from ..guards.metrics import Metrics, add_scrape_hook
from ..guards.deadlines import MAX_WAIT_SECONDS
from ..guards.gate import waiting
from ..query import MAX_OFFSET, QueryError, int_arg
from ..schemas import TaskCancelRequest, TaskRunRequest, TaskValidateRequest, parse_body
from ..sse import last_event_id, sse_response
from ..task_events import END_ID
from ..task_events import task_events as task_event_source

bp = Blueprint("tasks", __name__)


@bp.before_request
def _one_value_per_parameter() -> None:
    """Every query parameter of the task API is one value: a repeated one is a 400, not its first value."""
    if not request.path.startswith("/api/"):
        return  # /info and /metrics ignore their query
    for name, values in request.args.lists():
        if len(values) > 1:
            raise APIError(f"query parameter {name[:40]!r} is given {len(values)} times; give it once")

#: Longest ?wait= a request may hold a worker thread for.
STATUSES = ("pending", "processing", "succeeded", "failed", "canceled")
#: ms a browser's EventSource waits before reconnecting a task's event stream (``retry:``).
SSE_RETRY_MS = 1000
#: Most tasks one page of ``GET /api/tasks`` lists.
MAX_LIMIT = 500
#: Digits of the longest Last-Event-ID accepted (ids are a task's change numbers).
MAX_EVENT_ID_DIGITS = 12


def _runtime() -> WorkflowRuntime:
    return get_workflow_runtime()


@bp.record_once
def _observe_the_task_queue(state: Any) -> None:
    """``/readyz`` reports a PostgreSQL records database; with ``FLOWBRIDGE_BROKER_URL``, the broker too, and
    ``/metrics`` the queue and its workers."""
    from .health import add_readiness_check

    app = state.app
    if str(app.config.get("FLOWBRIDGE_TASK_DB") or "").startswith("postgresql"):  # a database of its own
        add_readiness_check(app, "database", lambda timeout: get_workflow_runtime(app).store.count())
    if not app.config["FLOWBRIDGE_BROKER_URL"]:
        return

    def queue() -> Any:
        return get_workflow_runtime(app).queue

    def scrape(metrics: Metrics) -> None:
        from ..server.task_queue import QUEUE

        queued, online, busy = queue().observe()
        metrics.queue_depth.labels(queue=QUEUE).set(queued)
        metrics.workers.labels(state="online").set(online)
        metrics.workers.labels(state="busy").set(busy)

    add_readiness_check(app, "broker", lambda timeout: queue().ping(timeout))
    add_scrape_hook("task_queue", scrape)


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True) if request.is_json else None
    if not isinstance(data, dict):
        raise APIError("send a JSON object body with Content-Type: application/json")
    return data


#: a plain decimal number of seconds: ``2``, ``0.5``, ``1e1``
_SECONDS = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _wait_arg() -> float:
    raw = request.args.get("wait")
    if raw is None:
        return 0.0
    if not _SECONDS.fullmatch(raw):  # float() would also take "1_0", "٣", "nan" and "inf"
        raise APIError(f"wait must be a number of seconds, got {raw[:40]!r}")
    wait = float(raw)
    if not 0 <= wait <= MAX_WAIT_SECONDS:
        raise APIError(f"wait must be between 0 and {MAX_WAIT_SECONDS:g} seconds, got {raw[:40]}")
    return wait


def _task_id() -> str:
    task_id = request.args.get("taskID") or (request.get_json(silent=True) or {}).get("taskID")
    if not task_id or not isinstance(task_id, str):
        raise APIError("taskID is required")
    return task_id


def _unknown(task_id: str) -> APIError:
    return APIError(f"no task {task_id!r}", status=404, type="not_found")


@bp.post("/api/task/run")
def run_task() -> Response:
    """``{schema, inputs}`` → ``{taskID}``; with ``?wait=S``, ``{taskID, status, outputs}``."""
    body = parse_body(TaskRunRequest, _body())
    assert isinstance(body, TaskRunRequest)
    wait = _wait_arg()
    try:
        task_id = _runtime().run(body.workflow, body.inputs)
    except WorkflowInputError as exc:
        raise APIError(str(exc)) from None
    except TaskCapacityError as exc:
        return error_response(503, "overloaded", str(exc), {"Retry-After": "2"})
    except TaskQueueError as exc:  # the broker is down (a task recorded before its send failed says so)
        return error_response(503, "queue_unavailable", str(exc), {"Retry-After": "5"})
    if not wait:
        return jsonify({"taskID": task_id})
    waiting()  # a long poll: let another request start meanwhile
    record = _runtime().wait(task_id, wait)
    assert record is not None
    return jsonify({"taskID": task_id, "status": record.status,
                    "outputs": record.outputs if record.terminated else None})


@bp.get("/api/task/report")
def task_report() -> Response:
    """``?taskID=`` → FlowGram's report: statuses, node snapshots, messages."""
    task_id = _task_id()
    report = _runtime().report(task_id)
    if report is None:
        raise _unknown(task_id)
    return jsonify(report)


@bp.get("/api/task/result")
def task_result() -> Response:
    """Outputs once succeeded; 202 while running; 409 if failed or canceled; 404 if unknown."""
    task_id = _task_id()
    wait = _wait_arg()
    runtime = _runtime()
    if wait:
        waiting()  # a long poll: let another request start meanwhile
    record = runtime.wait(task_id, wait) if wait else runtime.get(task_id)
    if record is None:
        raise _unknown(task_id)
    if not record.terminated:
        response = jsonify({"taskID": task_id, "status": record.status})
        response.status_code = 202
        return response
    if record.status == "succeeded":
        return jsonify(record.outputs or {})
    messages = [m.get("message", "") for m in ((record.report or {}).get("messages") or {}).get("error", [])]
    detail = "; ".join(messages) or record.error or record.status
    return error_response(409, f"task_{record.status}", f"task {task_id} {record.status}: {detail}")


@bp.get("/api/task/events")
def task_events() -> Response:
    """Server-Sent Events of a task: ``start``, a ``progress`` per node status change, then ``done``
    with the outputs or ``error`` with the messages. 400 without taskID, 404 for an unknown task.

    Every event has an ``id``; a client that reconnects with ``Last-Event-ID`` (or ``?lastEventId=``)
    gets the events after that one, from whichever worker serves it, and 204 (EventSource: stop
    reconnecting) once it has had the last one."""
    task_id = _task_id()
    after = _last_event_id()
    runtime = _runtime()
    record = runtime.get(task_id)
    if record is None:
        raise _unknown(task_id)
    if after == END_ID:
        return Response(status=204)
    assert not isinstance(after, str)
    return sse_response(task_event_source(runtime.store, record, after=after), retry=SSE_RETRY_MS,
                        resumed=after is not None)


def _last_event_id() -> int | str | None:
    """The ``Last-Event-ID`` of a reconnecting client: None, an event's number, or ``END_ID``."""
    raw = last_event_id()
    if raw is None or raw == END_ID:
        return raw
    if not (raw.isascii() and raw.isdigit()) or len(raw) > MAX_EVENT_ID_DIGITS:
        raise APIError(f"Last-Event-ID (or lastEventId) must be an id this stream sent: a whole number "
                       f"0..{10 ** MAX_EVENT_ID_DIGITS - 1} or {END_ID!r}, got {raw[:40]!r}")
    return int(raw)


@bp.put("/api/task/cancel")
def cancel_task() -> Response:
    """``{"taskID"}`` → ``{"success"}``; the task stops at its next node or loop iteration."""
    body = parse_body(TaskCancelRequest, _body())
    assert isinstance(body, TaskCancelRequest)
    return jsonify({"success": _runtime().cancel(body.taskID)})


@bp.post("/api/task/validate")
def validate() -> Response:
    """``{"schema", "inputs"}`` → ``{"valid", "errors"?, "warnings"?}``: FlowGram's checks, no run
    (:meth:`WorkflowRuntime.validate`, as ``TaskValidateAPI`` and the Workflows page)."""
    body = parse_body(TaskValidateRequest, _body())
    assert isinstance(body, TaskValidateRequest)
    try:  # a value no task could hold (too deep, a lone surrogate...) is a 400, as in /api/task/run
        return jsonify(_runtime().validate(body.workflow, body.inputs or {}).as_dict())
    except WorkflowInputError as exc:
        raise APIError(str(exc)) from None


@bp.get("/api/tasks")
def list_tasks() -> Response:
    """Recent tasks, newest first: ``?status=&limit=&offset=`` (limit 1..500, default 50; offset
    0..:data:`~webapp.query.MAX_OFFSET`); anything else is a 400 naming the parameter and its range."""
    for name in ("status", "limit", "offset"):
        if request.args.get(name) == "":
            raise APIError(f"{name} is empty; leave it out or give a value")
    status = request.args.get("status")
    if status is not None and status not in STATUSES:
        raise APIError(f"status must be one of {', '.join(STATUSES)}, got {status[:40]!r}")
    try:
        limit = int_arg(request.args, "limit", 50, 1, MAX_LIMIT)
        offset = int_arg(request.args, "offset", 0, 0, MAX_OFFSET)
    except QueryError as exc:
        raise APIError(str(exc)) from None
    store = _runtime().store
    tasks = [
        {"taskID": r.task_id, "status": r.status, "title": r.title, "createdAt": r.created_at,
         "startedAt": r.started_at, "finishedAt": r.finished_at, "error": r.error}
        for r in store.list(status=status, limit=limit, offset=offset)
    ]
    return jsonify({"tasks": tasks, "total": store.count(status=status), "limit": limit, "offset": offset})


@bp.get("/info")
def info() -> Response:
    return jsonify({"name": "flowbridge", "title": "flowbridge workflow runtime",
                    "description": "FlowGram-compatible workflow runtime behind Flask + gunicorn",
                    "runtime": "python", "version": current_app.config.get("VERSION", "0.1.0"),
                    "time": dt.datetime.now(dt.timezone.utc).isoformat()})
