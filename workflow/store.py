"""Where workflow tasks live: in memory for one process, or in one SQLite file for every worker.

Any gunicorn worker answers report, result and cancel for any task, and results survive a restart.
A running task's report is saved as it grows: each snapshot and message once, when it can no
longer change, plus the rest of the report (statuses, running nodes), so saving progress costs the
same at a loop's last iteration as at its first; :meth:`TaskStore.get` returns the whole report.
Each task has a heartbeat; :meth:`TaskStore.fail_orphans` fails tasks whose process stopped beating,
so none stays ``processing`` forever. Cancel is a flag, polled by the engine before each node and loop
iteration. ``store = make_task_store("sqlite:/var/lib/flowbridge/tasks.db")`` (or ``"memory"``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from async_utils.per_thread import PerThread

from .report import ReportPart, merge_report_parts

logger = logging.getLogger(__name__)

STATUSES = ("pending", "processing", "succeeded", "failed", "canceled")
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
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
_LIST_COLUMNS = ", ".join(c for c in _COLUMNS if c not in ("schema", "report"))
_TERMINAL_SQL = "('succeeded', 'failed', 'canceled')"
_ACTIVE_SQL = "('pending', 'processing')"
_owner: tuple[int, str] | None = None


def process_owner_id() -> str:
    """``hostname:pid:token`` of this process; the random token is new in every process, forked or not."""
    global _owner
    if _owner is None or _owner[0] != os.getpid():
        _owner = (os.getpid(), f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}")
    return _owner[1]


def abandoned_message(owner: str) -> str:
    return f"Task abandoned: the process running it ({owner}) stopped"


def connect(path: str, busy_timeout: float = BUSY_TIMEOUT) -> sqlite3.Connection:
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


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _record(row: sqlite3.Row) -> TaskRecord:
    values = {key: row[key] for key in row.keys()}
    for name in _JSON_FIELDS & set(values):
        values[name] = None if values[name] is None else json.loads(values[name])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return TaskRecord(**{"schema": {}, "report": None, **values})


_SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, status TEXT NOT NULL, title TEXT NOT NULL DEFAULT '',
    schema TEXT NOT NULL, inputs TEXT NOT NULL, outputs TEXT, report TEXT, error TEXT,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0, owner TEXT NOT NULL, heartbeat_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_status_created ON tasks (status, created_at);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created_at);
CREATE TABLE IF NOT EXISTS task_parts (
    seq INTEGER PRIMARY KEY, task_id TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS task_parts_task ON task_parts (task_id, seq);
CREATE TRIGGER IF NOT EXISTS tasks_delete_parts AFTER DELETE ON tasks
    BEGIN DELETE FROM task_parts WHERE task_id = old.task_id; END;
"""
_PROGRESS_SQL = (
    "UPDATE tasks SET status = ?, report = COALESCE(?, report), outputs = COALESCE(?, outputs),"
    " error = COALESCE(?, error), heartbeat_at = ?, started_at = COALESCE(started_at, ?),"
    " finished_at = COALESCE(finished_at, ?) WHERE task_id = ?")
_STORES: weakref.WeakSet[SQLiteTaskStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _owner
    _owner = None
    for store in list(_STORES):
        store._reset()  # its connections: see async_utils.per_thread


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class SQLiteTaskStore(TaskStore):
    """Tasks in one SQLite file (WAL) shared by every worker process on the machine.

    Each thread has its own connection (new ones after fork). :meth:`save_progress` writes at once a
    task's first progress in this process, a status change, a terminal status and ``force=True``;
    other progress of a task at most once per ``progress_interval`` seconds, the latest one skipped
    being written by a background thread when the interval ends, by :meth:`flush` or :meth:`close`.

    :param path: the database file (tables are created if missing; the directory must exist).
    :param progress_interval: seconds between writes of one task's non-terminal progress; 0 writes all.
    :param busy_timeout: seconds to wait for another process's write lock.
    """

    def __init__(self, path: str | os.PathLike[str], *, progress_interval: float = PROGRESS_INTERVAL,
                 busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path = os.fspath(path)
        self.progress_interval = progress_interval
        self.busy_timeout = busy_timeout
        self._closed = False
        self._connections = PerThread(lambda: connect(self.path, self.busy_timeout), sqlite3.Connection.close)
        self._reset()
        _STORES.add(self)
        self._conn().executescript(_SCHEMA)

    def _reset(self) -> None:
        """Fresh per-process state (at start, and in a forked child whose locks may be held forever)."""
        self._lock = threading.Lock()  # guards the dicts and the flusher; never held during I/O
        self._cond = threading.Condition(self._lock)
        self._write_lock = threading.Lock()  # orders progress writes: a skipped one never lands after a newer one
        #: task_id -> (status, report, outputs, error, due, parts): progress skipped, to be written at
        #: ``due`` (parts accumulate: each is written once, none is ever superseded)
        self._pending: dict[str, tuple[str, Any, Any, str | None, float, list[ReportPart]]] = {}
        #: task_id -> (monotonic time, status) of its last progress write
        self._written: dict[str, tuple[float, str]] = {}
        self._flusher: threading.Thread | None = None
        self._flusher_idle = False

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a forked child opens its own)."""
        if self._closed:
            raise RuntimeError(f"task store {self.path} is closed")
        return self._connections.get()

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the write lock from its first read (read-modify-write)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def create(self, record: TaskRecord) -> None:
        _check(record.status)
        values = [_dumps(getattr(record, c)) if c in _JSON_FIELDS else getattr(record, c) for c in _COLUMNS]
        try:
            self._conn().execute(f"INSERT INTO tasks ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                                 values)
        except sqlite3.IntegrityError:
            raise ValueError(f"task {record.task_id!r} already exists") from None

    def get(self, task_id: str) -> TaskRecord | None:
        conn = self._conn()
        conn.execute("BEGIN")  # the row and its parts as of one moment
        try:
            row = conn.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
            rows = [] if row is None else conn.execute(
                "SELECT kind, key, body FROM task_parts WHERE task_id = ? ORDER BY seq", (task_id,)).fetchall()
        finally:
            conn.execute("COMMIT")
        if row is None:
            return None
        record = _record(row)
        record.report = merge_report_parts(record.report, [(kind, key, json.loads(body)) for kind, key, body in rows])
        return record

    def update(self, task_id: str, **fields: Any) -> None:
        _check(fields=fields)
        values = [_dumps(v) if k in _JSON_FIELDS else v for k, v in fields.items()]
        with self._write_lock:
            with self._lock:
                skipped = None
                if "status" in fields or "report" in fields:  # newer than any skipped progress
                    skipped = self._pending.pop(task_id, None)
                if fields.get("status") in TERMINAL_STATUSES:
                    self._written.pop(task_id, None)
            sql = f"UPDATE tasks SET {', '.join(f'{k} = ?' for k in fields) or 'task_id = task_id'} WHERE task_id = ?"
            with self._immediate() as conn:
                if not conn.execute(sql, (*values, task_id)).rowcount:
                    raise KeyError(task_id)
                if "report" in fields:  # a new whole report
                    conn.execute("DELETE FROM task_parts WHERE task_id = ?", (task_id,))
                elif skipped is not None:  # the skipped progress's parts are not superseded
                    _insert_parts(conn, task_id, skipped[5])

    def save_progress(self, task_id: str, status: str, report: dict[str, Any] | None,
                      outputs: dict[str, Any] | None = None, error: str | None = None, *,
                      force: bool = False, parts: list[ReportPart] | None = None) -> None:
        _check(status)
        terminal = status in TERMINAL_STATUSES
        with self._lock:
            last = self._written.get(task_id)
            if (not force and not terminal and last is not None and last[1] == status
                    and time.monotonic() - last[0] < self.progress_interval):
                skipped = self._pending.get(task_id)
                parts = [*(skipped[5] if skipped else ()), *(parts or ())]
                self._pending[task_id] = (status, report, outputs, error, last[0] + self.progress_interval, parts)
                if self._flusher is None:
                    self._flusher = threading.Thread(target=self._flush_loop, name="task-store-flush", daemon=True)
                    self._flusher.start()
                elif self._flusher_idle:
                    self._cond.notify()
                return
        with self._write_lock:
            with self._lock:
                skipped = self._pending.pop(task_id, None)
            if skipped is not None:
                parts = [*skipped[5], *(parts or ())]
            self._write_progress(task_id, status, report, outputs, error, parts)
            with self._lock:
                if terminal:
                    self._written.pop(task_id, None)
                else:
                    self._written[task_id] = (time.monotonic(), status)

    def _write_progress(self, task_id: str, status: str, report: Any, outputs: Any, error: str | None,
                        parts: list[ReportPart] | None = None) -> None:
        now, terminal = time.time(), status in TERMINAL_STATUSES
        sql = _PROGRESS_SQL if terminal else f"{_PROGRESS_SQL} AND status NOT IN {_TERMINAL_SQL}"
        args = (status, _dumps(report), _dumps(outputs), error, now,
                now if status == "processing" else None, now if terminal else None, task_id)
        if not parts:
            self._conn().execute(sql, args)
            return
        with self._immediate() as conn:
            if conn.execute(sql, args).rowcount:  # none for a task that ended meanwhile
                _insert_parts(conn, task_id, parts)

    def flush(self, due_only: bool = False) -> None:
        with self._write_lock:
            with self._lock:
                mono = time.monotonic()
                due = [t for t, p in self._pending.items() if not due_only or p[4] <= mono]
                batch = [(t, self._pending.pop(t)) for t in due]
            for task_id, (status, report, outputs, error, _, parts) in batch:
                try:
                    self._write_progress(task_id, status, report, outputs, error, parts)
                finally:
                    with self._lock:
                        self._written[task_id] = (time.monotonic(), status)

    def _flush_loop(self) -> None:
        me = threading.current_thread()
        try:
            while True:
                with self._cond:
                    if self._closed or self._flusher is not me:
                        return
                    if not self._pending:
                        self._flusher_idle = True
                        self._cond.wait(_FLUSHER_LINGER)
                        self._flusher_idle = False
                        if not self._pending:
                            self._flusher = None
                            return
                    delay = min(p[4] for p in self._pending.values()) - time.monotonic()
                    if delay > 0:
                        self._cond.wait(delay)
                        continue
                try:
                    self.flush(due_only=True)
                except (sqlite3.Error, TypeError, ValueError):  # nobody to raise to; later progress is written
                    logger.exception("writing progress to task store %s failed", self.path)
        finally:
            with self._lock:
                self._flusher = None if self._flusher is me else self._flusher
            self._connections.close_mine()

    def request_cancel(self, task_id: str) -> bool:
        return self._conn().execute("UPDATE tasks SET cancel_requested = 1 WHERE task_id = ?", (task_id,)).rowcount > 0

    def is_cancel_requested(self, task_id: str) -> bool:
        row = self._conn().execute("SELECT cancel_requested FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return bool(row and row[0])

    def heartbeat(self, owner: str, task_ids: Iterable[str], now: float | None = None) -> None:
        now, ids = time.time() if now is None else now, list(task_ids)
        for start in range(0, len(ids), 500):  # SQLite limits the number of parameters
            chunk = ids[start:start + 500]
            self._conn().execute(f"UPDATE tasks SET heartbeat_at = ? WHERE owner = ? AND status IN {_ACTIVE_SQL}"
                                 f" AND task_id IN ({', '.join('?' * len(chunk))})", (now, owner, *chunk))

    def fail_orphans(self, now: float | None = None, *, stale_after: float) -> list[str]:
        now = time.time() if now is None else now
        where, args = f"status IN {_ACTIVE_SQL} AND heartbeat_at < ?", (now - stale_after,)
        # every worker calls this every few seconds: read first, take the write lock only when needed
        if self._conn().execute(f"SELECT 1 FROM tasks WHERE {where} LIMIT 1", args).fetchone() is None:
            return []
        with self._immediate() as conn:
            rows = conn.execute(f"SELECT task_id, owner, report FROM tasks WHERE {where}", args).fetchall()
            for task_id, owner, report in rows:
                report = _abandon_report(None if report is None else json.loads(report), abandoned_message(owner), now)
                conn.execute("UPDATE tasks SET status = 'failed', error = ?, finished_at = ?, report = ?"
                             " WHERE task_id = ?", (abandoned_message(owner), now, _dumps(report), task_id))
        return [row[0] for row in rows]

    def list(self, status: str | None = None, limit: int = 50, offset: int = 0) -> list[TaskRecord]:
        _check(status, limit=limit, offset=offset)
        where, args = ("WHERE status = ?", (status,)) if status is not None else ("", ())
        rows = self._conn().execute(f"SELECT {_LIST_COLUMNS} FROM tasks {where}"
                                    " ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?", (*args, limit, offset))
        return [_record(row) for row in rows.fetchall()]

    def count(self, status: str | None = None) -> int:
        _check(status)
        where, args = ("WHERE status = ?", (status,)) if status is not None else ("", ())
        return self._conn().execute(f"SELECT COUNT(*) FROM tasks {where}", args).fetchone()[0]

    def prune(self, max_age_seconds: float | None, max_tasks: int | None, *, now: float | None = None) -> int:
        now = time.time() if now is None else now
        finished = "COALESCE(finished_at, created_at)"
        by_age = f"status IN {_TERMINAL_SQL} AND {finished} <= ?"
        # read first: the write lock is taken only when there is something to delete
        aged = max_age_seconds is not None and self._conn().execute(
            f"SELECT 1 FROM tasks WHERE {by_age} LIMIT 1", (now - max_age_seconds,)).fetchone() is not None
        if not aged and (max_tasks is None or self.count() <= max_tasks):
            return 0
        with self._immediate() as conn:
            deleted = 0
            if aged:
                deleted += conn.execute(f"DELETE FROM tasks WHERE {by_age}", (now - max_age_seconds,)).rowcount
            if max_tasks is not None:
                excess = conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] - max(max_tasks, 0)
                deleted += conn.execute(
                    f"DELETE FROM tasks WHERE task_id IN (SELECT task_id FROM tasks WHERE status IN {_TERMINAL_SQL}"
                    f" ORDER BY {finished}, created_at LIMIT ?)", (max(excess, 0),)).rowcount
        return deleted

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            with self._lock:
                self._closed = True
                self._cond.notify_all()
                flusher = self._flusher
            if flusher is not None and flusher is not threading.current_thread():
                flusher.join(self.busy_timeout)
            self._connections.close()


def _insert_parts(conn: sqlite3.Connection, task_id: str, parts: list[ReportPart]) -> None:
    conn.executemany("INSERT INTO task_parts (task_id, kind, key, body) VALUES (?, ?, ?, ?)",
                     [(task_id, kind, key, _dumps(body)) for kind, key, body in parts])


def make_task_store(spec: str) -> TaskStore:
    """A store from configuration: ``"memory"``, a file path, or ``"sqlite:/path"`` (directories are created).

    :raises ValueError: for an empty spec, another URL scheme, ``:memory:`` or a directory
    """
    text = spec.strip() if isinstance(spec, str) else ""
    if text == "memory":
        return MemoryTaskStore()
    path = text[len("sqlite:"):] if text.startswith("sqlite:") else text
    path = path[2:] if path.startswith("///") else path  # sqlite:///abs/path
    if not path or "://" in path or path == ":memory:" or path.endswith(os.sep):
        raise ValueError(f"task store must be 'memory', a file path or 'sqlite:/path', got {spec!r}")
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path):
        raise ValueError(f"task store {spec!r} is a directory, not a database file")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return SQLiteTaskStore(path)
