"""The event source of ``GET /api/task/events``: a workflow task's node status changes as SSE events.

The source only reads the shared task store, so any gunicorn worker can serve any task, and a
subscriber that connects late (even after the task ended) still gets the whole story:

* ``start`` with ``{"taskID", "status", "title"}``;
* one ``progress`` per node status change seen in the task's report, ``{"nodeID", "status",
  "startTime", "endTime", "timeCost", "current", "total", "percentage", "message"}``, where
  ``current`` counts the nodes that have finished (succeeded, failed or canceled) and ``total`` the
  nodes in the report so far. Nodes already known when the client connects come first, in the
  order they changed; nodes never run (a branch not taken) get no event;
* ``done`` with ``{"taskID", "status", "outputs"}`` when the task succeeded, or ``error`` whose
  ``data`` is the task's error messages joined by ``"; "`` and whose ``error_code`` is
  ``task_failed`` or ``task_canceled`` (the messages themselves are in ``messages``).

The store saves a running task's report at most every ~0.1 s, so a node that starts and finishes
between two saves shows only its final status.

Resuming: each event has an SSE ``id``: ``0`` for ``start``, the node's ``seq`` for ``progress`` (the
report numbers every status change of a task, 1, 2, 3..., see ``workflow.report.Status``) and ``end``
for ``done``/``error``. Events go out in ``seq`` order, and a stored report holds every change up to
the moment it was saved, so a stream resumed after id ``n`` (``after=n``: a ``Last-Event-ID``) sends
exactly the nodes whose latest change came after ``n``, from the shared store, whichever worker
serves it: nothing is lost or sent twice. A report without ``seq`` (older tasks) sends its events
without ids, from the start. The outputs of ``done`` are masked like the report's
(:func:`workflow.report.mask_secrets`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from workflow import TERMINAL_STATUSES, TaskRecord, TaskStore, mask_secrets

from . import sse

__all__ = ["END_ID", "POLL_INTERVAL", "START_ID", "NodeWatch", "final_event", "task_events"]

#: Seconds between two reads of the task store while a task runs.
POLL_INTERVAL = 0.15
#: SSE ids of the first and the last event of a task's stream (``progress`` events: the change's ``seq``).
START_ID = "0"
END_ID = "end"

Event = dict[str, Any]


def _titles(schema: dict[str, Any] | None) -> dict[str, str]:
    """Node ID → title, for every node of ``schema`` including those inside loops and groups."""
    titles: dict[str, str] = {}
    stack = list((schema or {}).get("nodes") or [])
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        data = node.get("data")
        title = data.get("title") if isinstance(data, dict) else None
        if isinstance(title, str) and title:
            titles[str(node.get("id"))] = title
        stack.extend(node.get("blocks") or [])
    return titles


def _error_messages(report: dict[str, Any] | None) -> list[dict[str, Any]]:
    messages = ((report or {}).get("messages") or {}).get("error") or []
    return [m for m in messages if isinstance(m, dict)]


class NodeWatch:
    """What one subscriber has been told about a task's nodes.

    :meth:`changes` compares a report with what was sent before and returns the ``progress`` events
    of the nodes whose status (or run: a loop runs its body again) changed, each with its ``seq`` as
    SSE id.

    :param schema: the task's workflow, for node titles in messages.
    :param report: with ``after``: the report when the subscriber came back.
    :param after: the id of the last event the subscriber got (it reconnects): the nodes of
        ``report`` whose latest change is numbered ``after`` or less count as sent.
    """

    def __init__(self, schema: dict[str, Any] | None = None, report: dict[str, Any] | None = None,
                 after: int | None = None) -> None:
        self._titles = _titles(schema)
        #: node ID -> (status, startTime, endTime) last sent
        self._sent: dict[str, tuple[Any, Any, Any]] = {}
        #: nodes seen finished at least once: ``current`` never goes back when a loop reruns a node
        self._finished: set[str] = set()
        #: highest ``seq`` sent: ids only ever grow, so a client's Last-Event-ID never goes back
        self._last = after or 0
        if after is not None:
            self._skip_sent(report, after)

    def _skip_sent(self, report: dict[str, Any] | None, after: int) -> None:
        nodes = (report or {}).get("reports") or {}
        for node_id, info in nodes.items() if isinstance(nodes, dict) else ():
            if not isinstance(info, dict):
                continue
            seq = _seq(info)
            if seq is not None and seq <= after:
                self._sent[node_id] = _key(info)
                if _terminal(info):
                    self._finished.add(node_id)
            if len(info.get("snapshots") or ()) > 1:  # a loop body ran (and finished) before
                self._finished.add(node_id)

    def changes(self, report: dict[str, Any] | None) -> list[Event]:
        """The ``progress`` events for ``report``, oldest change first."""
        nodes = (report or {}).get("reports") or {}
        if not isinstance(nodes, dict):
            return []
        changed = []
        for position, (node_id, info) in enumerate(nodes.items()):
            if not isinstance(info, dict):
                continue
            key = _key(info)
            if self._sent.get(node_id) != key:
                seq = _seq(info)
                order = (float("inf") if seq is None else seq, _changed_at(info), 0 if _terminal(info) else 1, position)
                changed.append((order, node_id, info, key))
        changed.sort(key=lambda item: item[0])
        failures = {m.get("nodeID"): str(m.get("message", "")) for m in reversed(_error_messages(report))}
        events = []
        for _, node_id, info, key in changed:
            self._sent[node_id] = key
            if _terminal(info):
                self._finished.add(node_id)
            event = self._event(node_id, info, len(nodes), failures.get(node_id))
            seq = _seq(info)
            if seq is not None and seq > self._last:
                self._last = seq
                event = sse.with_id(event, seq)
            events.append(event)
        return events

    def _event(self, node_id: str, info: dict[str, Any], total: int, failure: str | None) -> Event:
        status = str(info.get("status"))
        message = f"{self._titles.get(node_id, node_id)}: {status}"
        if status == "failed" and failure:
            message += f" ({failure})"
        current = min(len(self._finished), total)
        return sse.progress(current, total, message, nodeID=node_id, status=status,
                            startTime=info.get("startTime"), endTime=info.get("endTime"),
                            timeCost=info.get("timeCost"))


def _key(info: dict[str, Any]) -> tuple[Any, Any, Any]:
    return (info.get("status"), info.get("startTime"), info.get("endTime"))


def _seq(info: dict[str, Any]) -> int | None:
    """The number of the node's latest status change, if the report has one."""
    seq = info.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0 else None


def _terminal(info: dict[str, Any]) -> bool:
    return info.get("status") in TERMINAL_STATUSES


def _changed_at(info: dict[str, Any]) -> float:
    """When a node reached its current status (ms), for ordering; unknown sorts last."""
    stamp = info.get("endTime") if _terminal(info) else info.get("startTime")
    return float(stamp) if isinstance(stamp, (int, float)) else float("inf")


def final_event(record: TaskRecord) -> Event:
    """``done`` for a succeeded task; ``error`` (``task_failed`` / ``task_canceled``) otherwise."""
    if record.status == "succeeded":
        return sse.done({"taskID": record.task_id, "status": record.status,
                         "outputs": mask_secrets(record.outputs or {})})
    messages = _error_messages(record.report)
    text = "; ".join(str(m.get("message", "")) for m in messages if m.get("message"))
    event = sse.error(text or record.error or f"task {record.status}", f"task_{record.status}")
    event["messages"] = [{"message": m.get("message", ""), "nodeID": m.get("nodeID")} for m in messages]
    return event


async def task_events(store: TaskStore, record: TaskRecord, *, poll_interval: float = POLL_INTERVAL,
                      after: int | None = None) -> AsyncIterator[Event]:
    """The events of one task, from ``record`` (already read from ``store``) to its end.

    Runs until the task terminates; the SSE response closes it when the client goes away.

    :param store: the shared task store, polled every ``poll_interval`` seconds.
    :param record: the task as it was when the client connected.
    :param after: resume after the event with this id (no ``start``; see the module's docstring).
    """
    task_id = record.task_id
    watch = NodeWatch(record.schema, record.report, after)
    if after is None:
        yield sse.with_id(sse.start({"taskID": task_id, "status": record.status, "title": record.title or ""}),
                          START_ID)
    while True:
        for event in watch.changes(record.report):
            yield event
        if record.terminated:
            yield sse.with_id(final_event(record), END_ID)
            return
        await asyncio.sleep(poll_interval)
        # one indexed SQLite read: cheap enough for the loop thread, and the connection stays per thread
        latest = store.get(task_id)
        if latest is None:
            yield sse.error(f"task {task_id} no longer exists (it was pruned)", "not_found")
            return
        record = latest
