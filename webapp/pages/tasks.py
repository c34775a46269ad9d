"""The Tasks list and the task page: a workflow run's graph, timeline, node snapshots and outputs.

Everything is rendered on the server from the stored report, so a finished task's page is a
complete result page without JavaScript. While the task runs, ``task.js`` follows
``/api/task/events`` and recolours the nodes, then reloads the page once the task has ended.

Pages stay bounded whatever the workflow's size (:data:`PAGE_BOUND`): the graph is drawn up to
:data:`MAX_GRAPH_NODES` nodes, the timeline shows the :data:`MAX_TIMELINE_ROWS` slowest runs, the node
list is paged (``?page=``, :data:`NODES_PER_PAGE` a page), and errors, warnings, values and snapshots
are capped; the rest is in the JSON report. Every value shown (schema, inputs, outputs, snapshots)
goes through :func:`workflow.report.mask_secrets`, the report's own mask.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Response, redirect, render_template, request, url_for

from workflow import STATUSES, TERMINAL_STATUSES, TaskRecord, mask_secrets

from ..extensions import get_workflow_runtime
from ..query import MAX_OFFSET, QueryError, int_arg
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
#: Largest graph drawn; a bigger one is listed (paged) without its drawing.
MAX_GRAPH_NODES = 300
#: Timeline rows shown: the slowest runs (in start order) when more nodes ran.
MAX_TIMELINE_ROWS = 60
#: Nodes per page of the node list (``?page=``).
NODES_PER_PAGE = 50
#: Characters of snapshots shown on one page of the node list; later snapshots are in the JSON report.
MAX_PAGE_SNAPSHOT_TEXT = 40_000
#: Error and warning messages listed, and inputs/outputs entries shown.
MAX_MESSAGES = 50
MAX_VALUES = 50
#: What the sizes above keep a task page under, in bytes of HTML, whatever the workflow's size
#: (tests/webapp/test_task_page_bounds.py checks it with a 10,000-node workflow).
PAGE_BOUND = 200_000
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
    #: the page of the node list that shows this node's details (1-based)
    page: int = 1
    #: the link to its details: ``#anchor`` on its own page, ``?page=N#anchor`` from another one
    href: str = ""

    @property
    def ran(self) -> bool:
        return self.start_ms is not None


@dataclass
class TimelineRow:
    node: NodeView
    left: float
    width: float


def _node_views(record: TaskRecord, boxes: list[Box], page: int) -> list[NodeView]:
    """A view of every node; only those on ``page`` of the node list get their snapshots (within
    :data:`MAX_PAGE_SNAPSHOT_TEXT` characters)."""
    report = record.report or {}
    reports = report.get("reports") if isinstance(report.get("reports"), dict) else {}
    errors: dict[str, list[str]] = {}
    for message in ((report.get("messages") or {}).get("error") or []):
        if isinstance(message, dict) and message.get("nodeID"):
            errors.setdefault(str(message["nodeID"]), []).append(str(message.get("message", "")))
    anchors: set[str] = set()
    views = []
    budget = MAX_PAGE_SNAPSHOT_TEXT
    for number, box in enumerate(boxes):
        info = reports.get(box.id) if isinstance(reports.get(box.id), dict) else {}
        name = anchor(box.id)
        while name in anchors:  # two ids that differ only in odd characters
            name += "_"
        anchors.add(name)
        start, end = _number(info.get("startTime")), _number(info.get("endTime"))
        cost = _number(info.get("timeCost"))
        raw = [s for s in info.get("snapshots") or [] if isinstance(s, dict)]
        node_page = number // NODES_PER_PAGE + 1
        shown = []
        for i, snapshot in enumerate(raw[:MAX_SNAPSHOTS] if node_page == page else ()):
            parts = _parts(snapshot)
            budget -= sum(len(text) for _, text in parts)
            if budget < 0:
                break
            shown.append(Snapshot(i + 1, parts))
        href = f"#{name}" if node_page == page else f"?page={node_page}#{name}"
        views.append(NodeView(box, name, str(info.get("status") or "pending"), start, end,
                              duration(cost / 1000) if start is not None and cost is not None else "",
                              shown, max(0, len(raw) - len(shown)) if node_page == page else 0,
                              errors.get(box.id, [])[:MAX_MESSAGES], node_page, href))
    return views


def _parts(snapshot: dict[str, Any]) -> list[tuple[str, str]]:
    """Inputs and outputs always (``{}`` says something); branch, data and error when they hold anything."""
    snapshot = mask_secrets(snapshot)
    return [(name, pretty(snapshot[name], MAX_SNAPSHOT_TEXT)) for name in _SNAPSHOT_FIELDS
            if snapshot.get(name) is not None and (name in ("inputs", "outputs") or snapshot[name] not in ("", {}, []))]


def _timeline(record: TaskRecord, nodes: list[NodeView]) -> tuple[float, float, list[TimelineRow], int]:
    """``(t0, t1, rows, more)``: the task's span in ms and a bar per node that ran, by start time; of
    more than :data:`MAX_TIMELINE_ROWS` nodes, the slowest, and how many more ran."""
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
    more = max(0, len(ran) - MAX_TIMELINE_ROWS)
    if more:
        slowest = sorted(ran, key=lambda n: (n.end_ms or now) - (n.start_ms or t0), reverse=True)
        keep = {id(n) for n in slowest[:MAX_TIMELINE_ROWS]}
        ran = [n for n in ran if id(n) in keep]
    rows = []
    for node in ran:
        start = node.start_ms or t0
        end = node.end_ms or now
        width = min(max((end - start) / span * 100, MIN_BAR), 100.0)
        left = min(max((start - t0) / span * 100, 0.0), 100.0 - width)
        rows.append(TimelineRow(node, left, width))
    return t0, t1, rows, more


def _messages(record: TaskRecord, kind: str) -> list[dict[str, str]]:
    messages = (((record.report or {}).get("messages") or {}).get(kind)) or []
    return [{"message": str(m.get("message", "")), "node": str(m.get("nodeID") or "")}
            for m in messages if isinstance(m, dict)]


# -- views -------------------------------------------------------------------------------------------

@bp.get("/tasks")
def tasks() -> str | tuple[str, int]:
    """Recent tasks, newest first; ``?status=`` filters, ``?offset=`` (0..MAX_OFFSET) pages: any other
    offset is a 400 page naming it."""
    status = request.args.get("status") or None
    problem = None
    if status is not None and status not in STATUSES:
        problem = f"There is no status {status!r}; showing every task. Statuses: {', '.join(STATUSES)}."
        status = None
    try:
        offset = int_arg(request.args, "offset", 0, 0, MAX_OFFSET)
    except QueryError as exc:
        return _bad_request(str(exc))
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


def _bad_request(message: str) -> tuple[str, int]:
    return render_template("error.html", status=400, type="invalid_request", message=message), 400


def _not_found(task_id: str) -> tuple[str, int]:
    message = f"There is no task {task_id!r}: it never existed, or it finished long ago and was pruned."
    return render_template("error.html", status=404, type="not_found", message=message), 404


# Endpoint names start with "tasks" so the navigation marks Tasks as the current section.
@bp.get("/tasks/<task_id>", endpoint="tasks_detail")
def task(task_id: str) -> str | tuple[str, int]:
    """One task: header, graph, timeline, node snapshots (``?page=`` of the node list), inputs and outputs."""
    record = get_workflow_runtime().get(task_id)
    if record is None:
        return _not_found(task_id)
    graph = layout(record.schema)
    pages = max(1, -(-len(graph.boxes) // NODES_PER_PAGE))
    try:
        page = int_arg(request.args, "page", 1, 1, pages)
    except QueryError as exc:
        return _bad_request(str(exc))
    nodes = _node_views(record, graph.boxes, page)
    t0, t1, rows, more_rows = _timeline(record, nodes)
    errors = _messages(record, "error")
    if record.status == "failed" and not errors and record.error:
        errors = [{"message": record.error, "node": ""}]
    warnings = _messages(record, "warning")
    ended = record.finished_at
    return render_template(
        "task.html", record=record, graph=graph, nodes=nodes, by_id={n.box.id: n for n in nodes},
        draw_graph=len(nodes) <= MAX_GRAPH_NODES, max_graph_nodes=MAX_GRAPH_NODES,
        page=page, pages=pages, first_node=(page - 1) * NODES_PER_PAGE + 1,
        page_nodes=nodes[(page - 1) * NODES_PER_PAGE:page * NODES_PER_PAGE],
        timeline=rows, more_rows=more_rows, max_timeline_rows=MAX_TIMELINE_ROWS, t0=t0, t1=t1,
        errors=errors[:MAX_MESSAGES], more_errors=max(0, len(errors) - MAX_MESSAGES),
        warnings=warnings[:MAX_MESSAGES], more_warnings=max(0, len(warnings) - MAX_MESSAGES),
        outputs=_values(record.outputs), more_outputs=max(0, len(record.outputs or {}) - MAX_VALUES),
        inputs=_values((record.report or {}).get("inputs")),
        more_inputs=max(0, len((record.report or {}).get("inputs") or {}) - MAX_VALUES),
        terminated=record.status in TERMINAL_STATUSES,
        created=when(record.created_at), created_iso=iso(record.created_at),
        finished=when(ended), finished_iso=iso(ended),
        took=duration(ended - (record.started_at or record.created_at)) if ended else "",
        schema_text=pretty(mask_secrets(record.schema)),
    )


def _values(values: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The first :data:`MAX_VALUES` entries of ``values``, masked and pretty-printed."""
    shown = dict(list((values or {}).items())[:MAX_VALUES]) if isinstance(values, dict) else {}
    return [(key, pretty(value)) for key, value in mask_secrets(shown).items()]


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
