"""Results of op and flow runs started from the pages, each kept at a permanent URL ``/results/<id>``.

The results live in the task store's SQLite file (``FLOWBRIDGE_TASK_DB``, default
``instance/tasks.db``), in a table of their own, so every gunicorn worker serves
every result and they survive a restart; ``"memory"`` keeps them in one process.
IDs are random and unguessable (``secrets.token_urlsafe(12)``): a result is seen
by whoever has its link, and the store never lists them. At most ``keep`` results
are kept; each save deletes the oldest beyond that (one indexed delete).
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from async_utils.per_thread import PerThread
from workflow import BUSY_TIMEOUT, connect_sqlite

__all__ = ["MemoryResultStore", "Result", "ResultStore", "SQLiteResultStore", "make_result_store", "new_result_id"]

KINDS = ("op", "flow")


def new_result_id() -> str:
    """A random, URL-safe, unguessable ID (96 bits)."""
    return secrets.token_urlsafe(12)


@dataclass(frozen=True)
class Result:
    """One finished run of an op or flow, as its result page shows it."""

    id: str
    kind: str
    name: str
    inputs: dict[str, Any]
    answer: Any
    outputs: dict[str, Any]
    success: bool
    metadata: dict[str, Any]
    #: Unix time the result was saved (the run's end).
    created_at: float
    #: Seconds the run took, when known.
    duration: float | None = None


def _json(value: Any) -> str:
    # default=str: an op may leave values JSON cannot hold (dates, objects); the page shows their text
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


class ResultStore(ABC):
    """Results by ID. :param keep: how many results to keep at most (the oldest go first)."""

    def __init__(self, keep: int = 10000) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.keep = keep

    def save(self, kind: str, name: str, inputs: dict[str, Any], answer: Any, outputs: dict[str, Any] | None,
             success: bool, metadata: dict[str, Any] | None, *, duration: float | None = None) -> str:
        """Store a result and return its new ID.

        :param kind: ``"op"`` or ``"flow"``.
        :raises ValueError: for another kind.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        # a JSON round trip: what is stored is what every worker reads back, in any process
        result = Result(
            id=new_result_id(), kind=kind, name=name, inputs=json.loads(_json(inputs or {})),
            answer=json.loads(_json(answer)), outputs=json.loads(_json(outputs or {})), success=bool(success),
            metadata=json.loads(_json(metadata or {})), created_at=time.time(), duration=duration,
        )
        self._insert(result)
        return result.id

    @abstractmethod
    def _insert(self, result: Result) -> None:
        """Store ``result`` and drop the oldest beyond :attr:`keep`."""

    @abstractmethod
    def get(self, result_id: str) -> Result | None:
        """The result, or None if unknown (or pruned)."""

    def close(self) -> None:
        """Release resources; safe to call twice."""


class MemoryResultStore(ResultStore):
    """Results in this process only (``FLOWBRIDGE_TASK_DB=memory``: tests, one worker)."""

    def __init__(self, keep: int = 10000) -> None:
        super().__init__(keep)
        self._results: OrderedDict[str, Result] = OrderedDict()
        self._lock = threading.Lock()

    def _insert(self, result: Result) -> None:
        with self._lock:
            self._results[result.id] = result
            while len(self._results) > self.keep:
                self._results.popitem(last=False)

    def get(self, result_id: str) -> Result | None:
        with self._lock:
            return copy.deepcopy(self._results.get(result_id))  # readers cannot change what is stored


_SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS op_results (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, name TEXT NOT NULL,
    inputs TEXT NOT NULL, answer TEXT NOT NULL, outputs TEXT NOT NULL, success INTEGER NOT NULL,
    metadata TEXT NOT NULL, created_at REAL NOT NULL, duration REAL);
"""
_COLUMNS = ("id", "kind", "name", "inputs", "answer", "outputs", "success", "metadata", "created_at", "duration")
_JSON_COLUMNS = frozenset({"inputs", "answer", "outputs", "metadata"})


class SQLiteResultStore(ResultStore):
    """Results in one SQLite file (WAL), shared by every worker process on the machine.

    Each thread has its own connection, opened again in a forked child (SQLite
    connections must not cross a fork). Rows are numbered in insertion order
    (``seq``), so pruning is one range delete on the primary key.

    :param path: the database file; the table is created if missing, the directory must exist.
    """

    def __init__(self, path: str | os.PathLike[str], keep: int = 10000, *, busy_timeout: float = BUSY_TIMEOUT) -> None:
        super().__init__(keep)
        self.path = os.fspath(path)
        self.busy_timeout = busy_timeout
        self._connections = PerThread(lambda: connect_sqlite(self.path, self.busy_timeout), sqlite3.Connection.close)
        self._closed = False
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a forked child opens its own)."""
        if self._closed:
            raise RuntimeError(f"result store {self.path} is closed")
        return self._connections.get()

    def _insert(self, result: Result) -> None:
        values = [_json(getattr(result, c)) if c in _JSON_COLUMNS else getattr(result, c) for c in _COLUMNS]
        values[_COLUMNS.index("success")] = int(result.success)
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            seq = conn.execute(f"INSERT INTO op_results ({', '.join(_COLUMNS)}) VALUES"
                               f" ({', '.join('?' * len(_COLUMNS))})", values).lastrowid
            # seq grows by one per insert and only the oldest rows are deleted, so this keeps `keep` rows
            conn.execute("DELETE FROM op_results WHERE seq <= ?", ((seq or 0) - self.keep,))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def get(self, result_id: str) -> Result | None:
        row = self._conn().execute(f"SELECT {', '.join(_COLUMNS)} FROM op_results WHERE id = ?",
                                   (result_id,)).fetchone()
        if row is None:
            return None
        values = {c: json.loads(row[c]) if c in _JSON_COLUMNS else row[c] for c in _COLUMNS}
        values["success"] = bool(values["success"])
        return Result(**values)

    def close(self) -> None:
        self._closed = True
        self._connections.close()


def make_result_store(spec: str, keep: int = 10000) -> ResultStore:
    """A store from the task store's setting: ``"memory"``, a file path or ``"sqlite:/path"``.

    Directories are created. :raises ValueError: for an empty spec, another URL
    scheme, ``:memory:`` or a directory (as the task store does).
    """
    text = spec.strip() if isinstance(spec, str) else ""
    if text == "memory":
        return MemoryResultStore(keep)
    path = text[len("sqlite:"):] if text.startswith("sqlite:") else text
    path = path[2:] if path.startswith("///") else path
    if not path or "://" in path or path == ":memory:" or path.endswith(os.sep):
        raise ValueError(f"result store must be 'memory', a file path or 'sqlite:/path', got {spec!r}")
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path):
        raise ValueError(f"result store {spec!r} is a directory, not a database file")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return SQLiteResultStore(path, keep)
