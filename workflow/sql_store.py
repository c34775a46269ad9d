"""The SQL task store: one SQLite file (WAL) shared by a machine's workers, or PostgreSQL shared by many.

See :mod:`workflow.store` for what a task store does and :mod:`workflow.sql_db` for connections,
errors and fork safety. A report is saved as a row's rest plus its parts (``task_parts``: each
snapshot and message written once, see :meth:`~workflow.report.TaskState.export_progress`), so
saving a long loop's progress costs the same at its last iteration as at its first;
:meth:`SQLTaskStore.get` merges them back. Every statement is SQLAlchemy Core, compiled once for the
database's dialect when the store opens.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from .report import ReportPart, merge_report_parts
from .sql_db import Database
from .sql_schema import task_parts, tasks
from .store import (
    _COLUMNS,
    _FLUSHER_LINGER,
    _JSON_FIELDS,
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
_LIST_COLUMNS = tuple(c for c in _COLUMNS if c not in ("schema", "report"))
_TERMINAL = [sa.literal_column(f"'{s}'") for s in ("succeeded", "failed", "canceled")]
_ACTIVE = [sa.literal_column(f"'{s}'") for s in ("pending", "processing")]


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _record(names: tuple[str, ...], row: Any) -> TaskRecord:
    values = dict(zip(names, row))
    for name in _JSON_FIELDS & set(values):
        values[name] = None if values[name] is None else json.loads(values[name])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return TaskRecord(**{"schema": {}, "report": None, **values})


class _Statements:
    """Every statement of the store, compiled once for one dialect (parameters by name)."""

    def __init__(self, db: Database) -> None:
        c, q = tasks.c, db.compile
        tid = c.task_id == param("tid")
        active, terminal = c.status.in_(_ACTIVE), c.status.in_(_TERMINAL)
        finished = sa.func.coalesce(c.finished_at, c.created_at)
        # SQLite lists equal creation times newest insert first (rowid); PostgreSQL has no rowid
        tiebreak = sa.literal_column("rowid") if db.sqlite else c.task_id
        self.insert = q(tasks.insert().values({n: param(n) for n in _COLUMNS}))
        self.get = q(sa.select(*(c[n] for n in _COLUMNS)).where(tid))
        self.parts = q(sa.select(task_parts.c.kind, task_parts.c.key, task_parts.c.body)
                       .where(task_parts.c.task_id == param("tid")).order_by(task_parts.c.seq))
        self.insert_part = q(task_parts.insert().values(
            task_id=param("tid"), kind=param("kind"), key=param("key"), body=param("body")))
        self.delete_parts = q(task_parts.delete().where(task_parts.c.task_id == param("tid")))
        progress = tasks.update().values(
            status=param("status"), report=sa.func.coalesce(param("report"), c.report),
            outputs=sa.func.coalesce(param("outputs"), c.outputs), error=sa.func.coalesce(param("error"), c.error),
            heartbeat_at=param("now"), started_at=sa.func.coalesce(c.started_at, param("started")),
            finished_at=sa.func.coalesce(c.finished_at, param("finished")))
        self.progress_terminal = q(progress.where(tid))
        self.progress = q(progress.where(tid, ~terminal))
        self.claim = q(tasks.update().values(status=sa.literal_column("'processing'"), owner=param("owner"),
                                             heartbeat_at=param("now"),
                                             started_at=sa.func.coalesce(c.started_at, param("started")))
                       .where(tid, c.status == sa.literal_column("'pending'")))
        self.cancel = q(tasks.update().values(cancel_requested=sa.literal_column("1")).where(tid))
        self.is_cancel = q(sa.select(c.cancel_requested).where(tid))
        self.heartbeat = q(tasks.update().values(heartbeat_at=param("now"))
                           .where(tid, c.owner == param("owner"), active))
        stale = (active, c.heartbeat_at < param("cutoff"))
        first = {"limit": param("limit"), "offset": param("offset")}  # SQLite would add an OFFSET of its own
        self.any_stale = q(sa.select(sa.literal_column("1")).where(*stale)
                           .limit(first["limit"]).offset(first["offset"]))
        self.stale = q(sa.select(c.task_id, c.owner, c.report).where(*stale).with_for_update(skip_locked=True))
        self.fail = q(tasks.update().values(status=sa.literal_column("'failed'"), error=param("message"),
                                            finished_at=param("now"), report=param("report")).where(tid, active))
        names = [c[n] for n in _LIST_COLUMNS]
        listed = sa.select(*names).order_by(c.created_at.desc(), tiebreak.desc()).limit(param("limit")) \
            .offset(param("offset"))
        self.list_all = q(listed)
        self.list_status = q(listed.where(c.status == param("status")))
        self.count_all = q(sa.select(sa.func.count()).select_from(tasks))
        self.count_status = q(sa.select(sa.func.count()).select_from(tasks).where(c.status == param("status")))
        aged = (terminal, finished <= param("cutoff"))
        self.any_aged = q(sa.select(sa.literal_column("1")).where(*aged).limit(first["limit"]).offset(first["offset"]))
        self.aged = q(sa.select(c.task_id).where(*aged))
        self.oldest = q(sa.select(c.task_id).where(terminal).order_by(finished, c.created_at)
                        .limit(first["limit"]).offset(first["offset"]))
        self.delete = q(tasks.delete().where(tid, terminal))
        self._db, self._updates = db, {}

    def update(self, fields: tuple[str, ...]) -> str:
        """``UPDATE tasks SET <fields> WHERE task_id = :tid``, compiled once per set of fields."""
        sql = self._updates.get(fields)
        if sql is None:
            values = {n: param(n) for n in fields} or {"task_id": tasks.c.task_id}
            sql = self._updates[fields] = self._db.compile(
                tasks.update().values(values).where(tasks.c.task_id == param("tid")))
        return sql


class SQLTaskStore(TaskStore):
    """Tasks in SQLite (one file) or PostgreSQL, shared by every process that opens the same database.

    :meth:`save_progress` writes at once a task's first progress in this process, a status change, a
    terminal status and ``force=True``; other progress of a task at most once per ``progress_interval``
    seconds, the latest one skipped being written by a background thread when the interval ends, by
    :meth:`flush` or :meth:`close`.

    :param spec: a SQLite file path (the directory must exist) or a ``postgresql://`` URL; the schema is
        created or migrated (:mod:`workflow.sql_schema`).
    :param progress_interval: seconds between writes of one task's non-terminal progress; 0 writes all.
    :param busy_timeout: seconds to wait for another process's write lock (SQLite), a pooled connection
        or a connect (PostgreSQL).
    """

    def __init__(self, spec: str | os.PathLike[str], *, progress_interval: float = PROGRESS_INTERVAL,
                 busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.progress_interval = progress_interval
        self.busy_timeout = busy_timeout
        self._db = Database(os.fspath(spec), busy_timeout=busy_timeout, connect=connect_sqlite)
        #: The SQLite file, None for PostgreSQL.
        self.path = self._db.path
        self._sql = _Statements(self._db)
        self._closed = False
        self._reset()
        _STORES.add(self)

    def _reset(self) -> None:
        """Fresh per-process state (at start, and in a forked child whose locks may be held forever)."""
        self._lock = threading.Lock()  # guards the dicts and the flusher; never held during I/O
        self._cond = threading.Condition(self._lock)
        self._write_lock = threading.Lock()  # orders progress writes: a skipped one never lands after a newer one
        #: task_id -> (status, report, outputs, error, due, parts): progress skipped, to be written at ``due``
        self._pending: dict[str, tuple[str, Any, Any, str | None, float, list[ReportPart]]] = {}
        #: task_id -> (monotonic time, status) of its last progress write
        self._written: dict[str, tuple[float, str]] = {}
        self._flusher: threading.Thread | None = None
        self._flusher_idle = False

    def create(self, record: TaskRecord) -> None:
        _check(record.status)
        values = {c: _dumps(getattr(record, c)) if c in _JSON_FIELDS else getattr(record, c) for c in _COLUMNS}
        values["cancel_requested"] = int(record.cancel_requested)
        try:
            self._db.execute(self._sql.insert, values)
        except self._db.integrity_errors:
            raise ValueError(f"task {record.task_id!r} already exists") from None

    def get(self, task_id: str) -> TaskRecord | None:
        with self._db.transaction(write=False) as conn:  # the row and its parts as of one moment
            cursor = conn.cursor()
            cursor.execute(self._sql.get, {"tid": task_id})
            row = cursor.fetchone()
            rows = []
            if row is not None:
                cursor.execute(self._sql.parts, {"tid": task_id})
                rows = cursor.fetchall()
        if row is None:
            return None
        record = _record(_COLUMNS, row)
        record.report = merge_report_parts(record.report, [(kind, key, json.loads(body)) for kind, key, body in rows])
        return record

    def update(self, task_id: str, **fields: Any) -> None:
        _check(fields=fields)
        values = {k: _dumps(v) if k in _JSON_FIELDS else v for k, v in fields.items()}
        if "cancel_requested" in values:
            values["cancel_requested"] = int(bool(values["cancel_requested"]))
        with self._write_lock:
            with self._lock:
                skipped = None
                if "status" in fields or "report" in fields:  # newer than any skipped progress
                    skipped = self._pending.pop(task_id, None)
                if fields.get("status") in TERMINAL_STATUSES:
                    self._written.pop(task_id, None)
            with self._db.transaction() as conn:
                cursor = conn.cursor()
                cursor.execute(self._sql.update(tuple(fields)), {**values, "tid": task_id})
                if not cursor.rowcount:
                    raise KeyError(task_id)
                if "report" in fields:  # a new whole report
                    cursor.execute(self._sql.delete_parts, {"tid": task_id})
                elif skipped is not None:  # the skipped progress's parts are not superseded
                    self._insert_parts(cursor, task_id, skipped[5])

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
        sql = self._sql.progress_terminal if terminal else self._sql.progress
        args = {"status": status, "report": _dumps(report), "outputs": _dumps(outputs), "error": error, "now": now,
                "started": now if status == "processing" else None, "finished": now if terminal else None,
                "tid": task_id}
        if not parts:
            self._db.execute(sql, args)
            return
        with self._db.transaction() as conn:
            cursor = conn.cursor()
            cursor.execute(sql, args)
            if cursor.rowcount:  # none for a task that ended meanwhile
                self._insert_parts(cursor, task_id, parts)

    def _insert_parts(self, cursor: Any, task_id: str, parts: list[ReportPart]) -> None:
        if parts:
            cursor.executemany(self._sql.insert_part, [{"tid": task_id, "kind": kind, "key": key, "body": _dumps(body)}
                                                       for kind, key, body in parts])

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
                except Exception:  # nobody to raise to (database gone, bad value); later progress is written
                    logger.exception("writing progress to task store %s failed", self._db.name)
        finally:
            with self._lock:
                self._flusher = None if self._flusher is me else self._flusher
            self._db.close_thread()

    def claim(self, task_id: str, owner: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now  # one UPDATE ... WHERE status = 'pending': atomic anywhere
        return self._db.execute(self._sql.claim, {"owner": owner, "now": now, "started": now,
                                                  "tid": task_id}).rowcount == 1

    def request_cancel(self, task_id: str) -> bool:
        return self._db.execute(self._sql.cancel, {"tid": task_id}).rowcount > 0

    def is_cancel_requested(self, task_id: str) -> bool:
        row = self._db.execute(self._sql.is_cancel, {"tid": task_id}).fetchone()
        return bool(row and row[0])

    def heartbeat(self, owner: str, task_ids: Iterable[str], now: float | None = None) -> None:
        now = time.time() if now is None else now
        rows = [{"now": now, "owner": owner, "tid": task_id} for task_id in task_ids]
        if rows:
            with self._db.transaction() as conn:
                conn.cursor().executemany(self._sql.heartbeat, rows)

    def fail_orphans(self, now: float | None = None, *, stale_after: float) -> list[str]:
        now = time.time() if now is None else now
        args = {"cutoff": now - stale_after}
        # every worker calls this every few seconds: read first, take the write lock only when needed
        if self._db.execute(self._sql.any_stale, {**args, "limit": 1, "offset": 0}).fetchone() is None:
            return []
        with self._db.transaction() as conn:
            cursor = conn.cursor()
            cursor.execute(self._sql.stale, args)  # PostgreSQL: rows another process fails now are skipped
            rows = cursor.fetchall()
            for task_id, owner, report in rows:
                message = abandoned_message(owner)
                report = _abandon_report(None if report is None else json.loads(report), message, now)
                cursor.execute(self._sql.fail, {"message": message, "now": now, "report": _dumps(report),
                                                "tid": task_id})
        return [row[0] for row in rows]

    def list(self, status: str | None = None, limit: int = 50, offset: int = 0) -> list[TaskRecord]:
        _check(status, limit=limit, offset=offset)
        args = {"limit": limit, "offset": offset}
        if status is None:
            rows = self._db.execute(self._sql.list_all, args).fetchall()
        else:
            rows = self._db.execute(self._sql.list_status, {**args, "status": status}).fetchall()
        return [_record(_LIST_COLUMNS, row) for row in rows]

    def count(self, status: str | None = None) -> int:
        _check(status)
        if status is None:
            return int(self._db.execute(self._sql.count_all, {}).fetchone()[0])
        return int(self._db.execute(self._sql.count_status, {"status": status}).fetchone()[0])

    def prune(self, max_age_seconds: float | None, max_tasks: int | None, *, now: float | None = None) -> int:
        now = time.time() if now is None else now
        cutoff = None if max_age_seconds is None else {"cutoff": now - max_age_seconds}
        # read first: the write lock is taken only when there is something to delete
        aged = cutoff is not None and self._db.execute(
            self._sql.any_aged, {**cutoff, "limit": 1, "offset": 0}).fetchone() is not None
        if not aged and (max_tasks is None or self.count() <= max_tasks):
            return 0
        with self._db.transaction() as conn:
            cursor = conn.cursor()
            deleted = 0
            if aged:
                cursor.execute(self._sql.aged, cutoff)
                deleted += self._delete(cursor, [row[0] for row in cursor.fetchall()])
            if max_tasks is not None:
                cursor.execute(self._sql.count_all, {})
                excess = cursor.fetchone()[0] - max(max_tasks, 0)
                if excess > 0:
                    cursor.execute(self._sql.oldest, {"limit": excess, "offset": 0})
                    deleted += self._delete(cursor, [row[0] for row in cursor.fetchall()])
        return deleted

    def _delete(self, cursor: Any, task_ids: list[str]) -> int:
        """Delete terminated tasks and their parts; :returns: how many tasks."""
        if not task_ids:
            return 0
        rows = [{"tid": task_id} for task_id in task_ids]
        cursor.executemany(self._sql.delete_parts, rows)
        cursor.executemany(self._sql.delete, rows)
        return max(cursor.rowcount, 0)

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
            self._db.close()


_STORES: weakref.WeakSet[SQLTaskStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_STORES):
        store._reset()  # its connections: see workflow.sql_db


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class SQLiteTaskStore(SQLTaskStore):
    """The SQL store on one SQLite file (WAL) shared by every worker process on the machine."""

    def __init__(self, path: str | os.PathLike[str], *, progress_interval: float = PROGRESS_INTERVAL,
                 busy_timeout: float = BUSY_TIMEOUT) -> None:
        super().__init__(os.fspath(path), progress_interval=progress_interval, busy_timeout=busy_timeout)
