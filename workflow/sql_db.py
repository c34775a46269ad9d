"""The records database (tasks, op results): one SQLite file, or a PostgreSQL server, through SQLAlchemy.

:class:`Database` opens either from a URL, migrates its schema (:mod:`workflow.sql_schema`), and
compiles SQLAlchemy Core statements once for its dialect; the stores run those compiled strings on
the driver's connection, so a call costs what a hand-written query costs (SQLAlchemy's per-execute
overhead would make the SQLite default slower, see ``bench/tasks.py`` part 3).

* SQLite: each thread has its own connection (new ones after fork), in autocommit mode; multi-statement
  writes run in ``BEGIN IMMEDIATE``. Errors are SQLite's own, as before.
* PostgreSQL (psycopg 3): a SQLAlchemy pool with ``pool_pre_ping``; each call checks out a connection
  (autocommit) and runs one statement, or several in ``BEGIN`` ... ``COMMIT``. A lost connection (the
  server restarted) fails the call in flight with :class:`StoreUnavailableError` and drops that
  connection; the next call gets a fresh one. A forked child never uses its parent's pooled
  connections (``engine.dispose(close=False)`` after fork).
"""

from __future__ import annotations

import os
import sqlite3
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from async_utils.per_thread import PerThread

from .errors import WorkflowError
from .sql_schema import migrate

#: PostgreSQL pool of each store (tasks, op results) in each process: connections kept, and more opened
#: under load (each call holds one only while it runs). At most 2 x 20 per gunicorn worker or queue worker
#: process: size PostgreSQL's ``max_connections`` (default 100) for all processes of all machines.
PG_POOL_SIZE = 4
PG_MAX_OVERFLOW = 16
_PG_SCHEMES = ("postgresql://", "postgresql+psycopg://")


class StoreUnavailableError(WorkflowError, RuntimeError):
    """The records database cannot be reached now (connection lost, server restarting, pool exhausted).

    The web app answers 503 ``store_unavailable`` with ``Retry-After``; a later call may succeed.
    """


def is_database_url(spec: str) -> bool:
    return spec.startswith(_PG_SCHEMES)


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparseable database URL>"


class Database:
    """An open records database. :param spec: a SQLite file path or a ``postgresql://`` URL."""

    def __init__(self, spec: str, *, busy_timeout: float, connect: Any = None) -> None:
        if connect is None:  # SQLite connections as the stores have always opened them
            from .store import connect_sqlite as connect
        self.busy_timeout = busy_timeout
        self._closed = False
        if is_database_url(spec):
            url = sa.make_url(spec).set(drivername="postgresql+psycopg")
            self.path = None
            self.name = redact_url(spec)
            self.engine = sa.create_engine(
                url, pool_pre_ping=True, pool_size=PG_POOL_SIZE, max_overflow=PG_MAX_OVERFLOW,
                pool_timeout=busy_timeout, isolation_level="AUTOCOMMIT",  # transactions: explicit BEGIN
                connect_args={"connect_timeout": max(1, int(busy_timeout))})
            self._connections = None
            self._disconnects: tuple[type[BaseException], ...] = _psycopg_disconnects()
        else:
            self.path = self.name = spec
            # only its dialect is used (DDL, statements); no URL: a file name may hold any character
            self.engine = sa.create_engine("sqlite://", paramstyle="named", poolclass=NullPool,
                                           creator=lambda: connect(spec, busy_timeout))
            self._connections = PerThread(lambda: connect(spec, busy_timeout), sqlite3.Connection.close)
            self._disconnects = ()
        self.dialect = self.engine.dialect
        self.sqlite = self.dialect.name == "sqlite"
        self.integrity_errors: tuple[type[BaseException], ...] = (
            (sqlite3.IntegrityError,) if self.sqlite else (_psycopg().IntegrityError,))
        _DATABASES.add(self)
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def _migrate(self) -> None:
        if self.sqlite:
            migrate(self._connections.get(), self.dialect)  # type: ignore[union-attr]
            return
        with self._checkout(transaction=False) as conn:  # migrate() runs its own transaction
            migrate(conn, self.dialect)

    def compile(self, statement: Any) -> str:
        """A Core statement as this dialect's SQL, parameters by name (``:name`` / ``%(name)s``).

        :raises ValueError: if the statement binds a value of its own (callers pass every parameter).
        """
        compiled = statement.compile(dialect=self.dialect)
        baked = sorted(name for name, value in compiled.params.items() if value is not None)
        if baked:
            raise ValueError(f"statement binds values of its own ({', '.join(baked)}): {compiled}")
        return str(compiled)

    # -- connections ------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"store {self.name} is closed")

    @contextmanager
    def _checkout(self, transaction: bool = True, begin: str = "BEGIN") -> Iterator[Any]:
        """PostgreSQL: a pooled connection (autocommit, pre-pinged), in ``begin`` ... ``COMMIT`` if asked."""
        try:
            proxy = self.engine.raw_connection()
        except (sa.exc.DBAPIError, sa.exc.TimeoutError, *self._disconnects) as exc:
            raise StoreUnavailableError(f"records database {self.name} unavailable: {_first_line(exc)}") from None
        cursor = proxy.cursor()
        try:
            if transaction:
                cursor.execute(begin)
            yield proxy
            if transaction:
                cursor.execute("COMMIT")
        except self._disconnects as exc:
            proxy.invalidate()  # never back into the pool
            raise StoreUnavailableError(f"records database {self.name} unavailable: {_first_line(exc)}") from None
        except BaseException:
            try:
                if transaction:
                    cursor.execute("ROLLBACK")
            except self._disconnects:
                proxy.invalidate()
            raise
        finally:
            proxy.close()

    def connection(self) -> Any:
        """SQLite: this thread's connection (autocommit)."""
        self._check_open()
        return self._connections.get()  # type: ignore[union-attr]

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Any]:
        """A connection in one transaction: SQLite ``BEGIN IMMEDIATE`` (``BEGIN`` for a read); PostgreSQL
        ``BEGIN`` (a read: one snapshot for every statement, as SQLite's reads have)."""
        self._check_open()
        if not self.sqlite:
            with self._checkout(begin="BEGIN" if write else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") as conn:
                yield conn
            return
        conn = self._connections.get()  # type: ignore[union-attr]
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def execute(self, sql: str, params: Any = ()) -> Any:
        """One statement on its own: SQLite returns the cursor; PostgreSQL a finished cursor's copy
        (``rowcount`` and the rows read), since its connection goes back to the pool."""
        if self.sqlite:  # the hot path of the embedded default: as direct as a hand-written store
            if self._closed:
                raise RuntimeError(f"store {self.name} is closed")
            return self._connections.get().execute(sql, params)  # type: ignore[union-attr]
        self._check_open()
        with self._checkout(transaction=False) as conn:  # autocommit: one round trip besides the ping
            cursor = conn.cursor()
            cursor.execute(sql, params)
            return _Done(cursor)

    def close_thread(self) -> None:
        """Close the calling thread's SQLite connection (a thread that ends)."""
        if self._connections is not None:
            self._connections.close_mine()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._connections is not None:
            self._connections.close()
        self.engine.dispose()


class _Done:
    """What a PostgreSQL statement left: ``rowcount``, and its rows for ``fetchone``/``fetchall``."""

    def __init__(self, cursor: Any) -> None:
        self.rowcount = cursor.rowcount
        self._rows = cursor.fetchall() if cursor.description is not None else []

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return self._rows


def _psycopg() -> Any:
    import psycopg  # only with a PostgreSQL URL

    return psycopg


def _psycopg_disconnects() -> tuple[type[BaseException], ...]:
    psycopg = _psycopg()
    return (psycopg.OperationalError, psycopg.InterfaceError)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_DATABASES: weakref.WeakSet[Database] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for db in list(_DATABASES):
        if not db.sqlite:
            db.engine.dispose(close=False)  # the parent's connections stay the parent's
    # SQLite: PerThread gives the child's threads new connections


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
