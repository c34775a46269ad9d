"""Task stores: the same behaviour in memory, in SQLite and in PostgreSQL, and SQLite across processes.

PostgreSQL cases need a real server (tests/services.py, marked ``services``); the PostgreSQL-only ones
(restarts, migrations, several processes) are in test_sql_store.py.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import postgres_database, postgres_server  # noqa: F401 (fixtures)
from workflow.store import (
    MemoryTaskStore,
    SQLiteTaskStore,
    SQLTaskStore,
    TaskRecord,
    TaskStore,
    abandoned_message,
    make_task_store,
    process_owner_id,
)

T0 = 1_700_000_000.0
OWNER = "host:1:deadbeef"
SCHEMA = {"nodes": [{"id": "start_0", "type": "start", "data": {"title": "Début ✓", "n": 1.5}}], "edges": []}
REPORT = {
    "id": "t", "inputs": {"q": "hi"}, "outputs": {},
    "workflowStatus": {"status": "processing", "terminated": False, "startTime": 1000, "timeCost": 5},
    "reports": {"start_0": {"id": "start_0", "status": "processing", "terminated": False, "startTime": 1000,
                            "timeCost": 5, "snapshots": []},
                "end_0": {"id": "end_0", "status": "succeeded", "terminated": True, "startTime": 900,
                          "endTime": 950, "timeCost": 50, "snapshots": [{"id": "s", "data": {"x": [1, None, True]}}]}},
    "messages": {"log": [], "info": [], "debug": [], "error": [], "warning": []},
}


def record(task_id: str | None = None, status: str = "pending", created_at: float = T0, **fields: Any) -> TaskRecord:
    values: dict[str, Any] = dict(
        task_id=task_id or str(uuid.uuid4()), status=status, schema=SCHEMA, inputs={"q": "hi", "n": [1, 2]},
        outputs=None, report=None, error=None, created_at=created_at, started_at=None, finished_at=None,
        cancel_requested=False, owner=OWNER, heartbeat_at=created_at, title="demo")
    values.update(fields)
    return TaskRecord(**values)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskStore]:
    s: TaskStore
    if request.param == "memory":
        s = MemoryTaskStore()
    elif request.param == "sqlite":
        s = SQLiteTaskStore(tmp_path / "tasks.db")
    else:
        s = SQLTaskStore(request.getfixturevalue("postgres_database"))
    yield s
    s.close()


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    (tmp_path / "shared").mkdir()
    return tmp_path / "shared" / "tasks.db"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def sql_spec(request: pytest.FixtureRequest, sqlite_path: Path) -> str:
    """Where a SQL store lives: a SQLite file, or a fresh PostgreSQL database."""
    return str(sqlite_path) if request.param == "sqlite" else request.getfixturevalue("postgres_database")


def test_create_get_round_trip(store: TaskStore) -> None:
    rec = record("a", report=REPORT, outputs={"out": {"deep": ["ü", 1e-3]}})
    store.create(rec)
    assert store.get("a") == rec
    assert store.get("missing") is None
    with pytest.raises(ValueError, match="already exists"):
        store.create(record("a"))


def test_records_are_copies(store: TaskStore) -> None:
    rec = record("a", report={"k": [1]})
    store.create(rec)
    rec.report["k"].append(2)  # type: ignore[index]
    got = store.get("a")
    assert got is not None and got.report == {"k": [1]}


def test_update(store: TaskStore) -> None:
    store.create(record("a"))
    store.update("a", status="succeeded", outputs={"r": 1}, report=REPORT, error=None, finished_at=T0 + 2)
    got = store.get("a")
    assert got is not None
    assert (got.status, got.outputs, got.report, got.finished_at, got.terminated) == (
        "succeeded", {"r": 1}, REPORT, T0 + 2, True)
    with pytest.raises(KeyError):
        store.update("missing", status="failed")
    with pytest.raises(ValueError, match="cannot update nope"):
        store.update("a", nope=1)
    with pytest.raises(ValueError, match="status must be one of"):
        store.update("a", status="cancelled")


def test_save_progress(store: TaskStore) -> None:
    store.create(record("a"))
    store.save_progress("a", "processing", REPORT)
    got = store.get("a")
    assert got is not None and got.status == "processing" and got.report == REPORT
    assert got.started_at is not None and got.finished_at is None and got.heartbeat_at >= T0
    final = {**REPORT, "workflowStatus": {"status": "succeeded", "terminated": True}}
    store.save_progress("a", "succeeded", final, outputs={"r": "ok"})
    store.save_progress("a", "processing", REPORT, force=True)  # a late non-terminal write never wins
    got = store.get("a")
    assert got is not None and got.status == "succeeded" and got.report == final and got.outputs == {"r": "ok"}
    assert got.finished_at is not None
    store.save_progress("missing", "processing", REPORT)  # ignored
    with pytest.raises(ValueError):
        store.save_progress("a", "success", REPORT)


def test_cancel_flag(store: TaskStore) -> None:
    assert store.request_cancel("missing") is False
    assert store.is_cancel_requested("missing") is False
    store.create(record("run", status="processing"))
    store.create(record("done", status="succeeded", finished_at=T0))
    assert store.is_cancel_requested("run") is False
    assert store.request_cancel("run") is True
    assert store.is_cancel_requested("run") is True
    assert store.request_cancel("done") is True  # FlowGram: true even if finished, status kept
    got = store.get("done")
    assert got is not None and got.status == "succeeded"


def test_list_and_count(store: TaskStore) -> None:
    for i in range(7):
        store.create(record(f"t{i}", status="succeeded" if i % 2 else "processing", created_at=T0 + i,
                            report=REPORT))
    listed = store.list()
    assert [r.task_id for r in listed] == [f"t{i}" for i in range(6, -1, -1)]
    assert all(r.schema == {} and r.report is None and r.title == "demo" for r in listed)
    assert listed[0].inputs == {"q": "hi", "n": [1, 2]}
    assert [r.task_id for r in store.list(status="succeeded")] == ["t5", "t3", "t1"]
    assert [r.task_id for r in store.list(limit=2, offset=1)] == ["t5", "t4"]
    assert [r.task_id for r in store.list(status="processing", limit=2, offset=3)] == ["t0"]
    assert store.list(offset=10) == []
    assert (store.count(), store.count("succeeded"), store.count("failed")) == (7, 3, 0)
    with pytest.raises(ValueError):
        store.list(status="bogus")
    with pytest.raises(ValueError):
        store.list(limit=-1)


def test_prune_by_age(store: TaskStore) -> None:
    store.create(record("old", status="succeeded", finished_at=T0))
    store.create(record("new", status="failed", finished_at=T0 + 100))
    store.create(record("old-running", status="processing"))
    store.create(record("old-pending"))
    assert store.prune(60, None, now=T0 + 120) == 1
    assert store.get("old") is None and store.get("new") is not None
    assert store.prune(0, None, now=T0 + 100) == 1  # retention 0: immediate cleanup
    assert {r.task_id for r in store.list()} == {"old-running", "old-pending"}
    assert store.prune(0, 0, now=T0 + 10_000) == 0  # running and pending are never pruned


def test_prune_by_count(store: TaskStore) -> None:
    store.create(record("run", status="processing", created_at=T0))
    for i in range(5):
        store.create(record(f"d{i}", status="canceled", created_at=T0 + 1, finished_at=T0 + 10 - i))
    assert store.prune(None, 4, now=T0 + 20) == 2  # the two that finished longest ago
    assert {r.task_id for r in store.list()} == {"run", "d0", "d1", "d2"}
    assert store.prune(None, 4, now=T0 + 20) == 0
    assert store.prune(None, 0, now=T0 + 20) == 3
    assert [r.task_id for r in store.list()] == ["run"]


def test_fail_orphans(store: TaskStore) -> None:
    store.create(record("stale", status="processing", heartbeat_at=T0, report=REPORT))
    store.create(record("stale-pending", heartbeat_at=T0))
    store.create(record("fresh", status="processing", heartbeat_at=T0 + 50))
    store.create(record("beating", status="processing", heartbeat_at=T0))
    store.create(record("done", status="succeeded", heartbeat_at=T0, finished_at=T0))
    store.heartbeat(OWNER, ["beating", "done"], now=T0 + 55)
    store.heartbeat("other:2:x", ["stale"], now=T0 + 55)  # not its owner: no effect
    assert sorted(store.fail_orphans(T0 + 60, stale_after=30)) == ["stale", "stale-pending"]
    message = abandoned_message(OWNER)
    assert message == f"Task abandoned: the process running it ({OWNER}) stopped"
    got = store.get("stale")
    assert got is not None and got.report is not None
    assert (got.status, got.error, got.finished_at, got.terminated) == ("failed", message, T0 + 60, True)
    assert got.report["workflowStatus"] == {"status": "failed", "terminated": True, "startTime": 1000,
                                            "endTime": int((T0 + 60) * 1000), "timeCost": int((T0 + 60) * 1000) - 1000}
    assert got.report["reports"]["start_0"]["status"] == "failed"
    assert got.report["reports"]["end_0"]["status"] == "succeeded"
    assert [m["message"] for m in got.report["messages"]["error"]] == [message]
    pending = store.get("stale-pending")
    assert pending is not None and pending.status == "failed" and pending.report is None
    for task_id, status in (("fresh", "processing"), ("beating", "processing"), ("done", "succeeded")):
        got = store.get(task_id)
        assert got is not None and got.status == status
    assert store.fail_orphans(T0 + 60, stale_after=30) == []


def test_claim_lets_exactly_one_caller_start_a_pending_task(store: TaskStore) -> None:
    store.create(record("q", heartbeat_at=T0))
    store.create(record("busy", status="processing"))
    wins: list[str] = []

    def claimer(name: str) -> None:
        if store.claim("q", name, now=T0 + 5):
            wins.append(name)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(wins) == 1
    got = store.get("q")
    assert got is not None and (got.status, got.owner, got.heartbeat_at, got.started_at) == (
        "processing", wins[0], T0 + 5, T0 + 5)
    assert store.claim("busy", "w9") is False and store.claim("nope", "w9") is False


def test_process_owner_id() -> None:
    host, pid, token = process_owner_id().rsplit(":", 2)
    assert host and int(pid) == os.getpid() and token
    assert process_owner_id() == process_owner_id()


# -- SQL stores (SQLite, PostgreSQL) ------------------------------------------------------------------


def test_sql_coalesces_progress(sql_spec: str) -> None:
    with SQLTaskStore(sql_spec, progress_interval=3600) as store:
        store.create(record("a"))
        first = {**REPORT, "id": "first"}
        store.save_progress("a", "processing", first)  # first progress: written at once
        store.save_progress("a", "processing", {**REPORT, "id": "second"})  # within the interval: later
        got = store.get("a")
        assert got is not None and got.report == first
        store.flush()
        got = store.get("a")
        assert got is not None and got.report is not None and got.report["id"] == "second"
        store.save_progress("a", "processing", {**REPORT, "id": "third"})
        store.save_progress("a", "processing", {**REPORT, "id": "forced"}, force=True)
        got = store.get("a")
        assert got is not None and got.report is not None and got.report["id"] == "forced"
        store.save_progress("a", "processing", {**REPORT, "id": "fourth"})
        store.save_progress("a", "failed", {**REPORT, "id": "final"}, error="boom")  # terminal: at once
        store.flush()
        got = store.get("a")
        assert got is not None and got.report is not None
        assert (got.status, got.report["id"], got.error) == ("failed", "final", "boom")


def test_sql_flusher_writes_skipped_progress(sql_spec: str) -> None:
    with SQLTaskStore(sql_spec, progress_interval=0.01) as store:
        store.create(record("a"))
        store.save_progress("a", "processing", {"id": "first"})
        store.save_progress("a", "processing", {"id": "latest"})
        for _ in range(1000):  # the background flusher writes it after the interval
            got = store.get("a")
            assert got is not None and got.report is not None
            if got.report["id"] == "latest":
                break
            time.sleep(0.005)
        assert got.report == {"id": "latest"}


def test_sql_close_flushes_and_survives_restart(sql_spec: str) -> None:
    store = make_task_store(sql_spec if "://" in sql_spec else f"sqlite:{sql_spec}")
    assert isinstance(store, SQLTaskStore)
    assert isinstance(store, SQLiteTaskStore) == ("://" not in sql_spec)
    assert store.path is None or Path(store.path).exists()
    store.create(record("a", report=REPORT))
    store.save_progress("a", "processing", {"id": "one"})
    store.save_progress("a", "processing", {"id": "two"})
    store.request_cancel("a")
    store.close()
    store.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        store.get("a")
    with make_task_store(sql_spec) as reopened:
        got = reopened.get("a")
        assert got is not None and got.report == {"id": "two"} and got.cancel_requested
        assert got.schema == SCHEMA and got.inputs == {"q": "hi", "n": [1, 2]}


@pytest.mark.parametrize("spec", ["", "   ", "sqlite:", "postgres://db/tasks", ":memory:", "sqlite::memory:"])
def test_make_task_store_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="task store"):
        make_task_store(spec)


def test_make_task_store(tmp_path: Path) -> None:
    with make_task_store("memory") as store:
        assert isinstance(store, MemoryTaskStore)
    with make_task_store(f"sqlite://{tmp_path}/a/b.db") as store:
        assert isinstance(store, SQLiteTaskStore) and store.path == str(tmp_path / "a" / "b.db")
    with pytest.raises(ValueError, match="directory"):
        make_task_store(str(tmp_path))


def _child_writes(spec: str, task_id: str) -> None:
    with SQLTaskStore(spec) as store:
        store.create(record(task_id, owner=process_owner_id()))
        store.save_progress(task_id, "processing", REPORT)
        store.update(task_id, status="succeeded", outputs={"from": "child"}, finished_at=T0 + 1)


def _child_dies_processing(spec: str, task_id: str) -> None:
    store = SQLTaskStore(spec)
    store.create(record(task_id, owner=process_owner_id(), heartbeat_at=time.time()))
    store.save_progress(task_id, "processing", REPORT)
    os._exit(0)  # dies without closing anything or finishing its task


def _run_child(target: Any, *args: Any) -> None:
    proc = multiprocessing.get_context("spawn").Process(target=target, args=args)
    proc.start()
    proc.join(120)
    if proc.is_alive():
        proc.kill()
        proc.join()
    assert proc.exitcode == 0


def test_sql_other_process_sees_child_writes(sql_spec: str) -> None:
    with SQLTaskStore(sql_spec) as store:  # open before the child: live connections on both sides
        assert store.get("c") is None
        _run_child(_child_writes, sql_spec, "c")
        got = store.get("c")
        assert got is not None and (got.status, got.outputs, got.report) == ("succeeded", {"from": "child"}, REPORT)
        assert got.owner != process_owner_id() and got.owner.split(":")[1] != str(os.getpid())
        assert store.request_cancel("c") is True


def test_sql_task_of_dead_process_fails_once_stale(sql_spec: str) -> None:
    with SQLTaskStore(sql_spec) as store:
        _run_child(_child_dies_processing, sql_spec, "orphan")
        got = store.get("orphan")
        assert got is not None and got.status == "processing" and got.report == REPORT
        assert store.fail_orphans(got.heartbeat_at + 10, stale_after=30) == []  # not stale yet
        assert store.fail_orphans(got.heartbeat_at + 31, stale_after=30) == ["orphan"]
        got = store.get("orphan")
        assert got is not None and got.status == "failed" and got.error == abandoned_message(got.owner)
        assert got.report is not None and got.report["workflowStatus"]["terminated"] is True
        assert got.report["messages"]["error"][-1]["message"] == got.error


def _forked_child(store: SQLTaskStore, parent_owner: str) -> None:
    assert process_owner_id() != parent_owner
    store.save_progress("f", "succeeded", {"id": "from-fork"}, outputs={"ok": True})
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sql_store_works_after_fork(sql_spec: str) -> None:
    with SQLTaskStore(sql_spec) as store:
        store.create(record("f", status="processing"))
        store.save_progress("f", "processing", {"id": "parent"})  # the parent holds a live connection
        with warnings.catch_warnings():  # 3.12+ warns about forking with threads; none of ours is involved
            warnings.simplefilter("ignore", DeprecationWarning)
            proc = multiprocessing.get_context("fork").Process(target=_forked_child, args=(store, process_owner_id()))
            proc.start()
        proc.join(120)
        assert proc.exitcode == 0
        got = store.get("f")
        assert got is not None and (got.status, got.report, got.outputs) == ("succeeded", {"id": "from-fork"}, {"ok": True})
