"""The SQLite task store: one file (WAL) shared by every worker process on the machine.

See :mod:`workflow.store` for what a task store does. A report is saved as a row's rest plus its
parts (``task_parts``: each snapshot and message written once, see
:meth:`~workflow.report.TaskState.export_progress`), so saving a long loop's progress costs the same
at its last iteration as at its first; :meth:`SQLiteTaskStore.get` merges them back.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from async_utils.per_thread import PerThread

from .report import ReportPart, merge_report_parts
from .store import (
    _ACTIVE_SQL,
    _COLUMNS,
    _FLUSHER_LINGER,
    _JSON_FIELDS,
    _LIST_COLUMNS,
    _TERMINAL_SQL,
    BUSY_TIMEOUT,
    PROGRESS_INTERVAL,
    TERMINAL_STATUSES,
    TaskRecord,
    TaskStore,
    _abandon_report,
    _check,
    abandoned_message,
    connect_sqlite,
)

logger = logging.getLogger(__name__)

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
        self._connections = PerThread(lambda: connect_sqlite(self.path, self.busy_timeout), sqlite3.Connection.close)
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
