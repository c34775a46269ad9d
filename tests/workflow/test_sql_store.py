"""The SQL store's own concerns: versioned migrations (an old SQLite task DB upgraded in place), PostgreSQL
restarts survived, op results on PostgreSQL. The behaviour shared with the other stores is in test_store.py."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.services import PostgresServer, postgres_database, postgres_server  # noqa: F401 (fixtures)
from webapp.results import SQLResultStore, make_result_store
from workflow import StoreUnavailableError
from workflow.sql_schema import SCHEMA_VERSION, SchemaTooNewError
from workflow.store import SQLiteTaskStore, SQLTaskStore, TaskRecord, make_task_store

T0 = 1_700_000_000.0
# The schema the store created before migrations existed (workflow/sqlite_store.py and webapp/results.py
# before issue 14), verbatim: such a file must be adopted and upgraded in place.
OLD_SCHEMA = """
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
CREATE TABLE IF NOT EXISTS op_results (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, name TEXT NOT NULL,
    inputs TEXT NOT NULL, answer TEXT NOT NULL, outputs TEXT NOT NULL, success INTEGER NOT NULL,
    metadata TEXT NOT NULL, created_at REAL NOT NULL, duration REAL);
"""


def record(task_id: str, status: str = "processing", **fields: object) -> TaskRecord:
    values: dict = dict(task_id=task_id, status=status, schema={"nodes": []}, inputs={"q": "hi"}, outputs=None,
                        report=None, error=None, created_at=T0, started_at=None, finished_at=None,
                        cancel_requested=False, owner="host:1:x", heartbeat_at=T0, title="t")
    values.update(fields)
    return TaskRecord(**values)


def _old_database(path: Path) -> None:
    """A task DB as the code before issue 14 left it: a finished task with report parts, a running one, a result."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(OLD_SCHEMA)
    conn.execute("INSERT INTO tasks VALUES ('done', 'succeeded', 'old', '{}', '{\"q\":1}', '{\"a\":2}',"
                 " '{\"id\":\"done\",\"reports\":{\"n\":{\"id\":\"n\",\"snapshots\":[]}},\"messages\":{}}', NULL,"
                 " ?, ?, ?, 0, 'h:1:x', ?)", (T0, T0, T0 + 1, T0 + 1))
    conn.execute("INSERT INTO task_parts (task_id, kind, key, body) VALUES ('done', 'snapshot', 'n',"
                 " '{\"id\":\"s1\",\"data\":{}}')")
    conn.execute("INSERT INTO tasks VALUES ('running', 'processing', '', '{}', '{}', NULL, NULL, NULL,"
                 " ?, ?, NULL, 0, 'h:1:x', ?)", (T0, T0, T0))
    conn.execute("INSERT INTO op_results (id, kind, name, inputs, answer, outputs, success, metadata, created_at)"
                 " VALUES ('r1', 'op', 'echo', '{}', '\"hi\"', '{}', 1, '{}', ?)", (T0,))
    conn.close()


def _versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")]


def test_an_old_sqlite_task_db_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    _old_database(path)
    with SQLiteTaskStore(path) as store:
        done = store.get("done")
        assert done is not None and (done.status, done.title, done.inputs, done.outputs) == (
            "succeeded", "old", {"q": 1}, {"a": 2})
        assert done.report["reports"]["n"]["snapshots"] == [{"id": "s1", "data": {}}]  # its parts, merged
        assert [r.task_id for r in store.list()] == ["running", "done"]
        assert store.fail_orphans(T0 + 100, stale_after=30) == ["running"]
        assert store.prune(0, None, now=T0 + 1000) == 2
    assert _versions(path) == list(range(1, SCHEMA_VERSION + 1))
    with sqlite3.connect(path) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "tasks_delete_parts" not in names and "tasks_status_created" in names  # step 2 ran
        assert conn.execute("SELECT COUNT(*) FROM task_parts").fetchone()[0] == 0  # deleted by the store itself
    result_store = make_result_store(str(path))
    result = result_store.get("r1")
    assert result is not None and (result.name, result.answer, result.success) == ("echo", "hi", True)
    result_store.close()
    with SQLiteTaskStore(path):  # opened again: nothing to migrate, nothing applied twice
        pass
    assert _versions(path) == list(range(1, SCHEMA_VERSION + 1))


def test_a_database_from_a_newer_flowbridge_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    SQLiteTaskStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, 'from the future', 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNewError, match="upgrade flowbridge"):
        SQLiteTaskStore(path)


def test_stores_opening_at_once_migrate_once(tmp_path: Path) -> None:
    path, errors, stores = tmp_path / "tasks.db", [], []

    def open_store() -> None:
        try:
            stores.append(SQLiteTaskStore(path))
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for store in stores:
        store.close()
    assert errors == [] and len(stores) == 6
    assert _versions(path) == list(range(1, SCHEMA_VERSION + 1))


# -- PostgreSQL -------------------------------------------------------------------------------------------


@pytest.mark.services
def test_postgres_schema_is_migrated_once(postgres_database: str) -> None:  # noqa: F811
    stores = [make_task_store(postgres_database) for _ in range(2)]
    assert all(isinstance(s, SQLTaskStore) and not isinstance(s, SQLiteTaskStore) for s in stores)
    stores[0].create(record("a"))
    assert stores[1].get("a") is not None
    import psycopg
    with psycopg.connect(postgres_database) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    for store in stores:
        store.close()


@pytest.mark.services
def test_unreachable_postgres_is_a_clear_error_without_the_password() -> None:
    from tests.servers import free_port

    url = f"postgresql://flowbridge:s3cret-pw@127.0.0.1:{free_port()}/flowbridge"  # nobody listens there
    with pytest.raises(StoreUnavailableError, match="unavailable") as caught:
        make_task_store(url)
    assert "s3cret-pw" not in str(caught.value) and "127.0.0.1" in str(caught.value)


@pytest.mark.services
def test_postgres_restart_fails_calls_in_flight_and_later_ones_work(
        postgres_server: PostgresServer, postgres_database: str) -> None:  # noqa: F811
    store = SQLTaskStore(postgres_database)
    results = make_result_store(postgres_database)
    try:
        store.create(record("before"))
        result_id = results.save("op", "echo", {}, "hi", {}, True, {})
        in_flight: list[BaseException] = []
        started = threading.Event()

        def long_call() -> None:  # a call still running on the server when it goes down
            try:
                with store._db.transaction() as conn:
                    started.set()
                    conn.cursor().execute("SELECT pg_sleep(60)")
            except BaseException as exc:  # noqa: BLE001 (checked below)
                in_flight.append(exc)

        caller = threading.Thread(target=long_call)
        caller.start()
        assert started.wait(30)
        _wait_for_sleep(postgres_database)
        postgres_server.stop()  # fast shutdown: the server ends every session
        caller.join(60)
        assert len(in_flight) == 1 and isinstance(in_flight[0], StoreUnavailableError), in_flight
        with pytest.raises(StoreUnavailableError, match="records database .* unavailable"):
            store.get("before")  # while it is down
        with pytest.raises(StoreUnavailableError):
            results.get(result_id)
        postgres_server.start()
        got = store.get("before")  # the same store object, on a fresh connection
        assert got is not None and got.status == "processing"
        store.save_progress("before", "succeeded", {"id": "r"}, outputs={"ok": 1})
        assert store.get("before").outputs == {"ok": 1}
        result = results.get(result_id)
        assert result is not None and result.answer == "hi"
    finally:
        store.close()
        results.close()


def _wait_for_sleep(url: str) -> None:
    """Until the server shows the ``pg_sleep`` query running (bounded)."""
    import psycopg

    deadline = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%%'"
                            " AND state = 'active'").fetchone():
                return
            time.sleep(0.05)
    raise AssertionError("the long call never reached the server")


@pytest.mark.services
def test_op_results_on_postgres(postgres_database: str) -> None:  # noqa: F811
    store = make_result_store(postgres_database, keep=3)
    assert isinstance(store, SQLResultStore) and store.path is None
    ids = [store.save("flow", f"f{i}", {"i": i}, {"n": i}, {"o": i}, i % 2 == 0, {"m": "é"}, duration=0.5)
           for i in range(5)]
    assert [store.get(i) is not None for i in ids] == [False, False, True, True, True]  # keep=3: oldest go
    got = store.get(ids[4])
    assert got is not None and (got.kind, got.name, got.inputs, got.answer, got.success, got.metadata,
                                got.duration) == ("flow", "f4", {"i": 4}, {"n": 4}, True, {"m": "é"}, 0.5)
    store.close()
