"""Results of op and flow runs started from the pages, each kept at a permanent URL ``/results/<id>``.

The results live in the task store's database (``FLOWBRIDGE_TASK_DB``: default
``instance/tasks.db``, or a ``postgresql://`` URL), in a table of their own, so every gunicorn
worker (of every machine, on PostgreSQL) serves every result and they survive a restart;
``"memory"`` keeps them in one process.
IDs are random and unguessable (``secrets.token_urlsafe(12)``): a result is seen
by whoever has its link, and the store never lists them. At most ``keep`` results
are kept; each save deletes the oldest beyond that (one indexed delete).
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from workflow import BUSY_TIMEOUT, connect_sqlite
from workflow.sql_db import Database
from workflow.sql_schema import op_results
from workflow.store import records_location

__all__ = ["MemoryResultStore", "Result", "ResultStore", "SQLResultStore", "SQLiteResultStore", "make_result_store",
           "new_result_id"]

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


_COLUMNS = ("id", "kind", "name", "inputs", "answer", "outputs", "success", "metadata", "created_at", "duration")
_JSON_COLUMNS = frozenset({"inputs", "answer", "outputs", "metadata"})


class SQLResultStore(ResultStore):
    """Results in the records database (:class:`workflow.sql_db.Database`): a SQLite file (WAL) shared by
    every worker process on the machine, or PostgreSQL shared by every machine.

    Table ``op_results`` is created and migrated with the task tables (:mod:`workflow.sql_schema`).
    Rows are numbered in insertion order (``seq``), so pruning is one range delete on the primary key.

    :param spec: the database file (the directory must exist) or a ``postgresql://`` URL.
    """

    def __init__(self, spec: str | os.PathLike[str], keep: int = 10000, *, busy_timeout: float = BUSY_TIMEOUT) -> None:
        super().__init__(keep)
        self._db = Database(os.fspath(spec), busy_timeout=busy_timeout, connect=connect_sqlite)
        #: The SQLite file, None for PostgreSQL.
        self.path = self._db.path
        self.busy_timeout = busy_timeout
        c = op_results.c
        self._insert_sql = self._db.compile(op_results.insert().values({n: sa.bindparam(n) for n in _COLUMNS})
                                            .returning(c.seq))
        self._prune_sql = self._db.compile(op_results.delete().where(c.seq <= sa.bindparam("seq")))
        self._get_sql = self._db.compile(sa.select(*(c[n] for n in _COLUMNS)).where(c.id == sa.bindparam("id")))

    def _insert(self, result: Result) -> None:
        values = {c: _json(getattr(result, c)) if c in _JSON_COLUMNS else getattr(result, c) for c in _COLUMNS}
        values["success"] = int(result.success)
        with self._db.transaction() as conn:
            cursor = conn.cursor()
            cursor.execute(self._insert_sql, values)
            seq = cursor.fetchone()[0]
            # seq grows by one per insert and only the oldest rows are deleted, so this keeps `keep` rows
            cursor.execute(self._prune_sql, {"seq": (seq or 0) - self.keep})

    def get(self, result_id: str) -> Result | None:
        row = self._db.execute(self._get_sql, {"id": result_id}).fetchone()
        if row is None:
            return None
        values = {c: json.loads(v) if c in _JSON_COLUMNS else v for c, v in zip(_COLUMNS, row)}
        values["success"] = bool(values["success"])
        return Result(**values)

    def close(self) -> None:
        self._db.close()


#: The name this store had when it kept SQLite only.
SQLiteResultStore = SQLResultStore


def make_result_store(spec: str, keep: int = 10000) -> ResultStore:
    """A store from the task store's setting: ``"memory"``, a file path, ``"sqlite:/path"`` or a
    ``postgresql://`` URL.

    Directories are created. :raises ValueError: for an empty spec, another URL
    scheme, ``:memory:`` or a directory (as the task store does).
    """
    location = records_location(spec, "result store")
    return MemoryResultStore(keep) if location == "memory" else SQLResultStore(location, keep)
