"""Where workflow tasks live: in memory for one process, in one SQLite file for every worker of a
machine, or in PostgreSQL for every machine (:mod:`workflow.sql_store`, one implementation for both).

Any gunicorn worker answers report, result and cancel for any task, and results survive a restart.
A running task's report is saved as it grows: each snapshot and message once, when it can no
longer change, plus the rest of the report (statuses, running nodes), so saving progress costs the
same at a loop's last iteration as at its first; :meth:`TaskStore.get` returns the whole report.
Each task has a heartbeat; :meth:`TaskStore.fail_orphans` fails tasks whose process stopped beating,
so none stays ``processing`` forever. Cancel is a flag, polled by the engine before each node and loop
iteration. ``store = make_task_store("sqlite:/var/lib/flowbridge/tasks.db")`` (or ``"memory"``, or
``"postgresql://user:password@host:5432/flowbridge"``).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import socket
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .report import STATUSES, TERMINAL_STATUSES, ReportPart, merge_report_parts

#: Seconds a write waits for another process's lock before ``database is locked``.
BUSY_TIMEOUT = 10.0
#: SQLite writes one task's non-terminal progress at most once per this many seconds.
PROGRESS_INTERVAL = 0.05
#: Seconds an idle flusher thread waits for work before it exits.
_FLUSHER_LINGER = 1.0
_JSON_FIELDS = frozenset({"schema", "inputs", "outputs", "report"})
_COLUMNS = ("task_id", "status", "title", "schema", "inputs", "outputs", "report", "error", "created_at",
            "started_at", "finished_at", "cancel_requested", "owner", "heartbeat_at")
_UPDATABLE = frozenset(_COLUMNS) - {"task_id", "created_at"}
_owner: tuple[int, str] | None = None


def _forget_owner() -> None:
    global _owner
    _owner = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_owner)  # a forked child is another owner


def process_owner_id() -> str:
    """``hostname:pid:token`` of this process; the random token is new in every process, forked or not."""
    global _owner
    if _owner is None or _owner[0] != os.getpid():
        _owner = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}")
    return _owner[1]


def abandoned_message(owner: str) -> str:
    return f"Task abandoned: the process running it ({owner}) stopped"


def connect_sqlite(path: str, busy_timeout: float = BUSY_TIMEOUT) -> sqlite3.Connection:
    """A connection to a shared SQLite file as the stores use it: autocommit, rows by name, waiting
    up to ``busy_timeout`` for other writers, ``synchronous=NORMAL`` (safe with WAL).

    ``check_same_thread=False`` only so that a store's ``close()`` may close every thread's connection.
    """
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


@dataclass
class TaskRecord:
    """One workflow run as stored; ``report`` is the latest exported FlowGram ``IReport``."""

    task_id: str
    status: str
    schema: dict[str, Any]
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None
    report: dict[str, Any] | None
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    cancel_requested: bool
    #: ``hostname:pid:token`` of the process running the task (:func:`process_owner_id`).
    owner: str
    heartbeat_at: float
    #: Optional label for task lists.
    title: str = ""

    @property
    def terminated(self) -> bool:
        return self.status in TERMINAL_STATUSES


def _check(status: str | None = None, fields: dict[str, Any] | None = None, limit: int = 0, offset: int = 0) -> None:
    unknown = sorted(set(fields or ()) - _UPDATABLE)
    if unknown:
        raise ValueError(f"cannot update {', '.join(unknown)}; updatable: {', '.join(sorted(_UPDATABLE))}")
    status = (fields or {}).get("status", status)
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must be >= 0, got {limit} and {offset}")


def _abandon_report(report: dict[str, Any] | None, message: str, now: float) -> dict[str, Any] | None:
    """The report of an abandoned task: workflow and running nodes failed, the reason in ``messages.error``."""
    if report is None:
        return None
    now_ms = int(now * 1000)
    nodes = [n for n in (report.get("reports") or {}).values() if isinstance(n, dict)]
    for status in [report.setdefault("workflowStatus", {})] + [n for n in nodes if not n.get("terminated")]:
        status.update(status="failed", terminated=True, endTime=now_ms)
        if isinstance(status.get("startTime"), (int, float)):
            status["timeCost"] = now_ms - status["startTime"]
    report.setdefault("messages", {}).setdefault("error", []).append(
        {"id": uuid.uuid4().hex, "type": "error", "message": message, "timestamp": now_ms})
    return report


class TaskStore(ABC):
    """Tasks by ID, shared by every process that opens the same store. Use as a context manager.

    Unknown fields or statuses raise :class:`ValueError`; a non-terminal status never replaces a
    terminal one through :meth:`save_progress`; ``None`` arguments leave stored values as they are.
    """

    @abstractmethod
    def create(self, record: TaskRecord) -> None:
        """Store a new task. :raises ValueError: if its ID is taken"""

    @abstractmethod
    def get(self, task_id: str) -> TaskRecord | None:
        """The task, or None."""

    @abstractmethod
    def update(self, task_id: str, **fields: Any) -> None:
        """Set fields of a task (``status``, ``outputs``, ``report``...). :raises KeyError: if unknown"""

    @abstractmethod
    def save_progress(self, task_id: str, status: str, report: dict[str, Any] | None,
                      outputs: dict[str, Any] | None = None, error: str | None = None, *,
                      force: bool = False, parts: list[ReportPart] | None = None) -> None:
        """Record status and report on every status change; beats the heartbeat, sets ``started_at``
        and ``finished_at`` once. An unknown task is ignored. The store may keep ``report`` and
        ``parts`` without copying them. :param force: write now even where non-terminal progress is
        coalesced. :param parts: report parts to keep besides those kept before (see
        :meth:`~workflow.report.TaskState.export_progress`); ``report`` is then the rest, and
        :meth:`get` returns them merged. ``update(report=...)`` replaces the report and its parts.
        """

    def claim(self, task_id: str, owner: str, now: float | None = None) -> bool:
        """Atomically move a ``pending`` task to ``processing`` for ``owner`` (a queue worker starting it):
        True for exactly one caller, whatever the processes or machines racing; False if the task is
        unknown or not pending (already claimed, canceled, failed as lost). Sets ``owner``,
        ``heartbeat_at`` and ``started_at``."""
        raise NotImplementedError(f"{type(self).__name__} cannot claim tasks")

    @abstractmethod
    def request_cancel(self, task_id: str) -> bool:
        """Set the cancel flag: False for an unknown task, else True, even if finished (FlowGram)."""

    @abstractmethod
    def is_cancel_requested(self, task_id: str) -> bool:
        """Whether cancel was requested (False for an unknown task); cheap."""

    @abstractmethod
    def heartbeat(self, owner: str, task_ids: Iterable[str], now: float | None = None) -> None:
        """Mark the pending/processing tasks of ``owner`` among ``task_ids`` alive."""

    @abstractmethod
    def fail_orphans(self, now: float | None = None, *, stale_after: float) -> list[str]:
        """Fail pending/processing tasks whose heartbeat is more than ``stale_after`` seconds old (their
        process died) with error :func:`abandoned_message` in record and report. :returns: their IDs
        """

    @abstractmethod
    def list(self, status: str | None = None, limit: int = 50, offset: int = 0) -> list[TaskRecord]:
        """Tasks newest first, without blobs: ``schema`` is ``{}`` and ``report`` None."""

    @abstractmethod
    def count(self, status: str | None = None) -> int:
        """How many tasks (with this status)."""

    @abstractmethod
    def prune(self, max_age_seconds: float | None, max_tasks: int | None, *, now: float | None = None) -> int:
        """Delete terminated tasks finished ``max_age_seconds`` ago or more (0: all), then those finished
        longest ago while more than ``max_tasks`` remain; never running ones. :returns: how many
        """

    def flush(self) -> None:
        """Write coalesced progress now."""

    @abstractmethod
    def close(self) -> None:
        """Flush and release resources; safe to call twice."""

    def __enter__(self) -> TaskStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _finished(record: TaskRecord) -> tuple[float, float]:
    return (record.created_at if record.finished_at is None else record.finished_at, record.created_at)


class MemoryTaskStore(TaskStore):
    """Tasks in a dict, for tests and a single process; records are copied in and out."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskRecord] = {}
        self._parts: dict[str, list[ReportPart]] = {}
        self._lock = threading.Lock()

    def create(self, record: TaskRecord) -> None:
        _check(record.status)
        with self._lock:
            if record.task_id in self._tasks:
                raise ValueError(f"task {record.task_id!r} already exists")
            self._tasks[record.task_id] = copy.deepcopy(record)

    def get(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            record, parts = copy.deepcopy((self._tasks.get(task_id), self._parts.get(task_id, [])))
        if record is not None:
            record.report = merge_report_parts(record.report, parts)
        return record

    def update(self, task_id: str, **fields: Any) -> None:
        _check(fields=fields)
        with self._lock:
            record = self._tasks[task_id]
            if "report" in fields:
                self._parts.pop(task_id, None)
            for name, value in copy.deepcopy(fields).items():
                setattr(record, name, bool(value) if name == "cancel_requested" else value)

    def save_progress(self, task_id: str, status: str, report: dict[str, Any] | None,
                      outputs: dict[str, Any] | None = None, error: str | None = None, *,
                      force: bool = False, parts: list[ReportPart] | None = None) -> None:
        _check(status)
        now = time.time()
        with self._lock:
            r = self._tasks.get(task_id)
            if r is None or (r.terminated and status not in TERMINAL_STATUSES):
                return
            if parts:
                self._parts.setdefault(task_id, []).extend(parts)
            r.status, r.heartbeat_at = status, now
            r.report, r.outputs = r.report if report is None else report, r.outputs if outputs is None else outputs
            r.error = r.error if error is None else error
            r.started_at = now if status == "processing" and r.started_at is None else r.started_at
            r.finished_at = now if status in TERMINAL_STATUSES and r.finished_at is None else r.finished_at

    def claim(self, task_id: str, owner: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._lock:
            r = self._tasks.get(task_id)
            if r is None or r.status != "pending":
                return False
            r.status, r.owner, r.heartbeat_at = "processing", owner, now
            r.started_at = now if r.started_at is None else r.started_at
            return True

    def request_cancel(self, task_id: str) -> bool:
        with self._lock:
            record = self._tasks.get(task_id)
            if record is not None:
                record.cancel_requested = True
            return record is not None

    def is_cancel_requested(self, task_id: str) -> bool:
        record = self._tasks.get(task_id)
        return record is not None and record.cancel_requested

    def heartbeat(self, owner: str, task_ids: Iterable[str], now: float | None = None) -> None:
        with self._lock:
            for record in filter(None, map(self._tasks.get, task_ids)):
                if record.owner == owner and not record.terminated:
                    record.heartbeat_at = time.time() if now is None else now

    def fail_orphans(self, now: float | None = None, *, stale_after: float) -> list[str]:
        now = time.time() if now is None else now
        with self._lock:
            orphans = [r for r in self._tasks.values() if not r.terminated and r.heartbeat_at < now - stale_after]
            for r in orphans:
                message = abandoned_message(r.owner)
                r.status, r.error, r.finished_at = "failed", message, now
                r.report = _abandon_report(copy.deepcopy(r.report), message, now)
        return [r.task_id for r in orphans]

    def list(self, status: str | None = None, limit: int = 50, offset: int = 0) -> list[TaskRecord]:
        _check(status, limit=limit, offset=offset)
        with self._lock:
            records = [(r.created_at, i, r) for i, r in enumerate(self._tasks.values()) if status in (None, r.status)]
            records.sort(key=lambda item: item[:2], reverse=True)
            return [copy.deepcopy(dataclasses.replace(r, schema={}, report=None))
                    for _, _, r in records[offset:offset + limit]]

    def count(self, status: str | None = None) -> int:
        _check(status)
        with self._lock:
            return sum(1 for r in self._tasks.values() if status in (None, r.status))

    def prune(self, max_age_seconds: float | None, max_tasks: int | None, *, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._lock:
            done = sorted((r for r in self._tasks.values() if r.terminated), key=_finished)
            cutoff = -float("inf") if max_age_seconds is None else now - max_age_seconds
            doomed = [r.task_id for r in done if _finished(r)[0] <= cutoff]
            if max_tasks is not None:
                excess = len(self._tasks) - len(doomed) - max(max_tasks, 0)
                aged = set(doomed)
                doomed += [r.task_id for r in done if r.task_id not in aged][:max(excess, 0)]
            for task_id in doomed:
                del self._tasks[task_id]
                self._parts.pop(task_id, None)
            return len(doomed)

    def close(self) -> None:
        pass


def records_location(spec: str, what: str = "task store") -> str:
    """``"memory"``, a ``postgresql://`` URL as given, or an absolute SQLite file path (its directory created).

    Shared by the task store and the web app's result store (the same ``FLOWBRIDGE_TASK_DB``).

    :raises ValueError: for an empty spec, another URL scheme, ``:memory:`` or a directory
    """
    text = spec.strip() if isinstance(spec, str) else ""
    if text == "memory" or text.startswith(("postgresql://", "postgresql+psycopg://")):
        return text
    path = text[len("sqlite:"):] if text.startswith("sqlite:") else text
    path = path[2:] if path.startswith("///") else path  # sqlite:///abs/path
    if not path or "://" in path or path == ":memory:" or path.endswith(os.sep):
        raise ValueError(f"{what} must be 'memory', a file path, 'sqlite:/path' or a 'postgresql://' URL, "
                         f"got {spec!r}")
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path):
        raise ValueError(f"{what} {spec!r} is a directory, not a database file")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def make_task_store(spec: str) -> TaskStore:
    """A store from configuration: ``"memory"``, a file path, ``"sqlite:/path"`` (directories are created)
    or ``"postgresql://user:password@host:port/database"`` (the schema is created or migrated).

    :raises ValueError: for an empty spec, another URL scheme, ``:memory:`` or a directory
    :raises StoreUnavailableError: if the PostgreSQL server cannot be reached
    """
    location = records_location(spec)
    if location == "memory":
        return MemoryTaskStore()
    if "://" in location:
        return SQLTaskStore(location)
    return SQLiteTaskStore(location)


# The SQL stores build on the classes above; importers find them here as before.
from .sql_store import SQLiteTaskStore, SQLTaskStore  # noqa: E402
