"""The Tasks list and the task page: a workflow run's graph, timeline, node snapshots and outputs.

Everything is rendered on the server from the stored report, so a finished task's page is a
complete result page without JavaScript. While the task runs, ``task.js`` follows
``/api/task/events`` and recolours the nodes, then reloads the page once the task has ended.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Response, redirect, render_template, request, url_for

from workflow.store import STATUSES, TERMINAL_STATUSES, TaskRecord

from ..extensions import get_workflow_runtime
from . import bp
from .graph import Box, layout

#: Tasks per page of the list.
PAGE_SIZE = 25
#: Snapshots shown per node (a loop body runs once per item); the rest are in the JSON report.
MAX_SNAPSHOTS = 10
#: Characters of one pretty-printed value shown (the task's inputs and outputs, a snapshot's
#: parts); the whole value is in the JSON report. They keep a long loop's page small.
MAX_TEXT = 10_000
MAX_SNAPSHOT_TEXT = 3_000
#: Seconds ``POST /tasks/<id>/cancel`` waits for the task to stop before redirecting.
CANCEL_WAIT = 3.0
#: Narrowest timeline bar (% of the task): an instant still shows.
MIN_BAR = 0.4
#: Snapshot fields shown, in this order.
_SNAPSHOT_FIELDS = ("inputs", "outputs", "branch", "data", "error")


# -- formatting ------------------------------------------------------------------------------------

def when(seconds: float | None) -> str:
    """``2025-01-31 12:00:03 UTC``; empty for None."""
    if seconds is None:
        return ""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="milliseconds")


def duration(seconds: float | None) -> str:
    """A short human duration: ``12 ms``, ``4.2 s``, ``3 min 12 s``, ``1 h 5 min``."""
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def pretty(value: Any, limit: int = MAX_TEXT) -> str:
    """A value as indented JSON (a string as itself), cut at ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) > limit:
        text = text[:limit] + f"\n… ({len(text) - limit} more characters in the JSON report)"
    return text


def anchor(node_id: str) -> str:
    """An HTML id for a node's details (ids may hold any character; ours stay plain)."""
    return "node-" + re.sub(r"[^A-Za-z0-9_-]", "_", node_id)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# -- the task page's parts ---------------------------------------------------------------------------

@dataclass
class Snapshot:
    number: int
    #: ``(field, text)`` for each snapshot field present
    parts: list[tuple[str, str]]


@dataclass
class NodeView:
    """One node of the graph with what the report says about it."""

    box: Box
    anchor: str
    status: str
    start_ms: float | None
    end_ms: float | None
    duration: str
    snapshots: list[Snapshot] = field(default_factory=list)
    #: snapshots not shown (beyond MAX_SNAPSHOTS)
    more: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ran(self) -> bool:
        return self.start_ms is not None


@dataclass
class TimelineRow:
    node: NodeView
    left: float
    width: float


def _node_views(record: TaskRecord, boxes: list[Box]) -> list[NodeView]:
    report = record.report or {}
    reports = report.get("reports") if isinstance(report.get("reports"), dict) else {}
    errors: dict[str, list[str]] = {}
    for message in ((report.get("messages") or {}).get("error") or []):
        if isinstance(message, dict) and message.get("nodeID"):
            errors.setdefault(str(message["nodeID"]), []).append(str(message.get("message", "")))
    anchors: set[str] = set()
    views = []
    for box in boxes:
        info = reports.get(box.id) if isinstance(reports.get(box.id), dict) else {}
        name = anchor(box.id)
        while name in anchors:  # two ids that differ only in odd characters
            name += "_"
        anchors.add(name)
        start, end = _number(info.get("startTime")), _number(info.get("endTime"))
        cost = _number(info.get("timeCost"))
        raw = [s for s in info.get("snapshots") or [] if isinstance(s, dict)]
        shown = [Snapshot(i + 1, _parts(s)) for i, s in enumerate(raw[:MAX_SNAPSHOTS])]
        views.append(NodeView(box, name, str(info.get("status") or "pending"), start, end,
                              duration(cost / 1000) if start is not None and cost is not None else "",
                              shown, max(0, len(raw) - MAX_SNAPSHOTS), errors.get(box.id, [])))
    return views


def _parts(snapshot: dict[str, Any]) -> list[tuple[str, str]]:
    """Inputs and outputs always (``{}`` says something); branch, data and error when they hold anything."""
    return [(name, pretty(snapshot[name], MAX_SNAPSHOT_TEXT)) for name in _SNAPSHOT_FIELDS
            if snapshot.get(name) is not None and (name in ("inputs", "outputs") or snapshot[name] not in ("", {}, []))]


def _timeline(record: TaskRecord, nodes: list[NodeView]) -> tuple[float, float, list[TimelineRow]]:
    """``(t0, t1, rows)``: the task's span in ms and a bar per node that ran, by start time."""
    ran = sorted((n for n in nodes if n.ran), key=lambda n: n.start_ms or 0)
    workflow = (record.report or {}).get("workflowStatus") or {}
    t0 = _number(workflow.get("startTime"))
    if t0 is None:
        t0 = min((n.start_ms or 0 for n in ran), default=(record.started_at or record.created_at) * 1000)
    # A running task's bars reach "now"; a finished one's end at its end.
    t1 = _number(workflow.get("endTime")) or (record.finished_at * 1000 if record.finished_at else None)
    now = t1 if t1 is not None and record.terminated else time.time() * 1000
    t1 = max([t1 or now, *(n.end_ms or now for n in ran)])
    span = max(t1 - t0, 1.0)
    rows = []
    for node in ran:
        start = node.start_ms or t0
        end = node.end_ms or now
        width = min(max((end - start) / span * 100, MIN_BAR), 100.0)
        left = min(max((start - t0) / span * 100, 0.0), 100.0 - width)
        rows.append(TimelineRow(node, left, width))
    return t0, t1, rows


def _messages(record: TaskRecord, kind: str) -> list[dict[str, str]]:
    messages = (((record.report or {}).get("messages") or {}).get(kind)) or []
    return [{"message": str(m.get("message", "")), "node": str(m.get("nodeID") or "")}
            for m in messages if isinstance(m, dict)]


# -- views -------------------------------------------------------------------------------------------

@bp.get("/tasks")
def tasks() -> str:
    """Recent tasks, newest first; ``?status=`` filters, ``?offset=`` pages."""
    status = request.args.get("status") or None
    problem = None
    if status is not None and status not in STATUSES:
        problem = f"There is no status {status!r}; showing every task. Statuses: {', '.join(STATUSES)}."
        status = None
    try:
        offset = max(0, int(request.args.get("offset", 0)))
    except ValueError:
        offset = 0
    store = get_workflow_runtime().store
    total = store.count(status=status)
    now = time.time()
    rows = [{
        "id": r.task_id, "status": r.status, "title": r.title or "Untitled workflow",
        "created": when(r.created_at), "created_iso": iso(r.created_at),
        "duration": duration((r.finished_at or now) - (r.started_at or r.created_at)),
        "running": not r.terminated, "error": r.error or "",
    } for r in store.list(status=status, limit=PAGE_SIZE, offset=offset)]
    return render_template(
        "tasks.html", rows=rows, status=status, statuses=STATUSES, total=total, offset=offset,
        page_size=PAGE_SIZE, problem=problem,
        newer=max(0, offset - PAGE_SIZE) if offset else None,
        older=offset + PAGE_SIZE if offset + PAGE_SIZE < total else None,
    )


def _not_found(task_id: str) -> tuple[str, int]:
    message = f"There is no task {task_id!r}: it never existed, or it finished long ago and was pruned."
    return render_template("error.html", status=404, type="not_found", message=message), 404


# Endpoint names start with "tasks" so the navigation marks Tasks as the current section.
@bp.get("/tasks/<task_id>", endpoint="tasks_detail")
def task(task_id: str) -> str | tuple[str, int]:
    """One task: header, graph, timeline, node snapshots, inputs and outputs."""
    record = get_workflow_runtime().get(task_id)
    if record is None:
        return _not_found(task_id)
    graph = layout(record.schema)
    nodes = _node_views(record, graph.boxes)
    t0, t1, rows = _timeline(record, nodes)
    errors = _messages(record, "error")
    if record.status == "failed" and not errors and record.error:
        errors = [{"message": record.error, "node": ""}]
    outputs = [(key, pretty(value)) for key, value in (record.outputs or {}).items()]
    inputs = [(key, pretty(value)) for key, value in ((record.report or {}).get("inputs") or {}).items()]
    ended = record.finished_at
    return render_template(
        "task.html", record=record, graph=graph, nodes=nodes, by_id={n.box.id: n for n in nodes},
        timeline=rows, t0=t0, t1=t1, errors=errors, warnings=_messages(record, "warning"),
        outputs=outputs, inputs=inputs, terminated=record.status in TERMINAL_STATUSES,
        created=when(record.created_at), created_iso=iso(record.created_at),
        finished=when(ended), finished_iso=iso(ended),
        took=duration(ended - (record.started_at or record.created_at)) if ended else "",
        schema_text=pretty(record.schema),
    )


@bp.post("/tasks/<task_id>/cancel", endpoint="tasks_cancel")
def cancel_task(task_id: str) -> Response | tuple[str, int]:
    """Ask the runtime to cancel (CSRF-checked by the blueprint); back to the task page (303)."""
    runtime = get_workflow_runtime()
    if not runtime.cancel(task_id):
        return _not_found(task_id)
    # The flag is honoured within a moment (at once by the process running the task, else at its
    # next check); waiting for it lets the page we redirect to show the outcome without JavaScript.
    # The store, not runtime.wait: that also waits for a running node's executor to return.
    deadline = time.monotonic() + CANCEL_WAIT
    while time.monotonic() < deadline:
        record = runtime.store.get(task_id)
        if record is None or record.terminated:
            break
        time.sleep(0.05)
    return redirect(url_for("pages.tasks_detail", task_id=task_id), code=303)
