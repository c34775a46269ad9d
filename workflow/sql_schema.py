"""The records database's tables and its versioned migrations, for SQLite and PostgreSQL alike.

The tables are SQLAlchemy Core :class:`~sqlalchemy.Table` objects; their DDL is compiled for the
database's dialect. :func:`migrate` brings any database up to :data:`SCHEMA_VERSION`: it applies, in
order and each once, the steps of :data:`MIGRATIONS` newer than the version recorded in the
``schema_version`` table, all in one transaction holding the database's write lock (SQLite's
``BEGIN IMMEDIATE``, a PostgreSQL advisory lock), so two processes starting at once migrate once.

Step 1 creates the tables with ``IF NOT EXISTS``: a task database made before migrations existed
(the same tables, no ``schema_version``) is thereby adopted as version 1 and upgraded in place.
Why not Alembic: three tables, steps that must run inside the app at start (no ``alembic upgrade``
command to forget on deploy), and no autogenerate needed; a list of functions is enough.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, CreateTable

metadata = sa.MetaData()
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: INTEGER PRIMARY KEY is the rowid

#: Workflow tasks; JSON fields are TEXT (written and read as JSON text by the store).
tasks = sa.Table(
    "tasks", metadata,
    sa.Column("task_id", sa.Text, primary_key=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("title", sa.Text, nullable=False, server_default=""),
    sa.Column("schema", sa.Text, nullable=False),
    sa.Column("inputs", sa.Text, nullable=False),
    sa.Column("outputs", sa.Text),
    sa.Column("report", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("started_at", sa.Double),
    sa.Column("finished_at", sa.Double),
    sa.Column("cancel_requested", sa.Integer, nullable=False, server_default="0"),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("heartbeat_at", sa.Double, nullable=False),
)
sa.Index("tasks_status_created", tasks.c.status, tasks.c.created_at)
sa.Index("tasks_created", tasks.c.created_at)

#: The finished parts of a running task's report (snapshots, messages), each written once.
task_parts = sa.Table(
    "task_parts", metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
)
sa.Index("task_parts_task", task_parts.c.task_id, task_parts.c.seq)

#: Results of op and flow runs started from the pages (webapp/results.py).
op_results = sa.Table(
    "op_results", metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, nullable=False, unique=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("inputs", sa.Text, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("outputs", sa.Text, nullable=False),
    sa.Column("success", sa.Integer, nullable=False),
    sa.Column("metadata", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("duration", sa.Double),
)

_version_table = sa.Table(
    "schema_version", sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("applied_at", sa.Double, nullable=False),
)

#: Any constant: the key of the advisory lock PostgreSQL migrations hold (one migrator at a time).
_PG_LOCK_KEY = 0x666C6F77  # "flow"

Step = Callable[[Any, sa.Dialect], None]


def _ddl(cursor: Any, dialect: sa.Dialect, element: Any) -> None:
    cursor.execute(str(element.compile(dialect=dialect)))


def _initial(cursor: Any, dialect: sa.Dialect) -> None:
    """Version 1: the tables (kept as they are where they exist: the pre-migration schema is the same)."""
    for table in metadata.sorted_tables:
        _ddl(cursor, dialect, CreateTable(table, if_not_exists=True))
        for index in sorted(table.indexes, key=lambda i: i.name or ""):
            _ddl(cursor, dialect, CreateIndex(index, if_not_exists=True))


def _parts_deleted_by_the_store(cursor: Any, dialect: sa.Dialect) -> None:
    """Version 2: a task's parts are deleted by the store itself, on either database; the SQLite trigger
    that did it before migrations existed goes. (No index is added for ``fail_orphans``: the
    ``(status, created_at)`` one already narrows it to the few active tasks, and one more index would
    make every progress write slower.)"""
    if dialect.name == "sqlite":
        cursor.execute("DROP TRIGGER IF EXISTS tasks_delete_parts")


#: (version, name, step), in order; a step is never changed once released: add a new one.
MIGRATIONS: tuple[tuple[int, str, Step], ...] = (
    (1, "tasks, task_parts, op_results", _initial),
    (2, "task parts deleted by the store, no trigger", _parts_deleted_by_the_store),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer flowbridge than this one."""


def current_version(cursor: Any) -> int:
    cursor.execute("SELECT MAX(version) FROM schema_version")
    row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _switch_to_wal(cursor: Any, attempts: int = 100) -> None:
    """``PRAGMA journal_mode = WAL`` (outside a transaction, as SQLite requires). Changing the journal mode
    needs the database to itself and SQLite answers "database is locked" at once, without its busy handler,
    while another process opens the same new file: retry, bounded (about 10 s in all)."""
    import sqlite3

    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.01 + 0.002 * attempt)


def migrate(connection: Any, dialect: sa.Dialect) -> list[int]:
    """Apply the missing migrations on a DBAPI ``connection`` in autocommit mode. :returns: versions applied

    :raises SchemaTooNewError: if the database records a version this code does not know.
    """
    cursor = connection.cursor()
    sqlite = dialect.name == "sqlite"
    if sqlite:
        _switch_to_wal(cursor)
        cursor.execute("BEGIN IMMEDIATE")
    else:
        cursor.execute("BEGIN")
        cursor.execute(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")  # held until COMMIT
    try:
        _ddl(cursor, dialect, CreateTable(_version_table, if_not_exists=True))
        version = current_version(cursor)
        if version > SCHEMA_VERSION:
            raise SchemaTooNewError(f"the records database has schema version {version}, newer than this "
                                    f"flowbridge knows ({SCHEMA_VERSION}): upgrade flowbridge")
        applied = []
        insert = str(_version_table.insert().compile(dialect=dialect))
        for number, name, step in MIGRATIONS:
            if number > version:
                step(cursor, dialect)
                cursor.execute(insert, _params(dialect, {"version": number, "name": name, "applied_at": time.time()}))
                applied.append(number)
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
    cursor.execute("COMMIT")
    return applied


def _params(dialect: sa.Dialect, values: dict[str, Any]) -> Any:
    """Parameters for a compiled statement: a dict (named/pyformat), a tuple in order (qmark)."""
    return values if dialect.paramstyle in ("named", "pyformat") else tuple(values.values())
