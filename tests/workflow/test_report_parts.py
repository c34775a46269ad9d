"""A report saved in parts (issue 11: each snapshot stored once) reads back as the whole report."""

from __future__ import annotations

import json

import pytest

from tests.services import postgres_database, postgres_server  # noqa: F401 (fixtures)
from workflow.report import TaskState, merge_report_parts
from workflow.store import MemoryTaskStore, SQLTaskStore, TaskRecord


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def sql_spec(request: pytest.FixtureRequest, tmp_path) -> str:
    """A SQLite file, or a fresh PostgreSQL database."""
    return str(tmp_path / "t.db") if request.param == "sqlite" else request.getfixturevalue("postgres_database")


def test_a_report_saved_in_parts_reads_back_as_the_whole_report() -> None:
    state = TaskState("t", {"q": "x", "apiKey": "sk-secret"})
    state.workflow.set("processing")
    rest, parts = state.export_progress()
    collected = list(parts)
    for i in range(3):
        for node_id in ("a", "b"):
            state.node_status(node_id).set("processing")
            snapshot = state.new_snapshot(node_id, {"n": i})
            mid_rest, new = state.export_progress()  # the running snapshot stays in the rest
            collected += new
            assert [s["data"] for s in mid_rest["reports"][node_id]["snapshots"]] == [{"n": i}]
            snapshot["outputs"] = {"i": i}
            state.node_status(node_id).set("succeeded")
        state.add_message("warning", f"iteration {i}", "a")
    state.workflow.set("succeeded")
    rest, parts = state.export_progress()
    collected += parts
    merged = merge_report_parts(json.loads(json.dumps(rest)), json.loads(json.dumps(collected)))
    assert merged == state.export()
    assert merged["inputs"]["apiKey"] == "******"
    assert [s["outputs"] for s in merged["reports"]["b"]["snapshots"]] == [{"i": 0}, {"i": 1}, {"i": 2}]


def _record(task_id: str, report: dict) -> TaskRecord:
    return TaskRecord(task_id=task_id, status="processing", schema={}, inputs={}, outputs=None, report=report,
                      error=None, created_at=1.0, started_at=1.0, finished_at=None, cancel_requested=False,
                      owner="me", heartbeat_at=1.0)


def _state_with_snapshots(n: int) -> TaskState:
    state = TaskState("t", {"q": "x"})
    state.workflow.set("processing")
    for i in range(n):
        state.node_status("a").set("processing")
        state.new_snapshot("a", {"n": i})
        state.node_status("a").set("succeeded")
    return state


def test_sql_coalesced_progress_keeps_every_part_and_update_replaces_them(sql_spec: str) -> None:
    store = SQLTaskStore(sql_spec, progress_interval=60)  # later saves are coalesced
    state = _state_with_snapshots(0)
    store.create(_record("t", state.export()))
    for i in range(3):  # the first is written, the next two wait for the interval, their parts add up
        state.node_status("a").set("processing")
        state.new_snapshot("a", {"n": i})
        state.node_status("a").set("succeeded")
        rest, parts = state.export_progress()
        store.save_progress("t", "processing", rest, parts=parts)
    store.flush()
    stored, whole = store.get("t").report, state.export()
    for report in (stored, whole):
        report.pop("workflowStatus")  # its timeCost runs on while processing
    assert stored == whole and len(stored["reports"]["a"]["snapshots"]) == 3
    store.update("t", report={"id": "t", "reports": {}, "messages": {}})  # a whole new report
    assert store.get("t").report == {"id": "t", "reports": {}, "messages": {}}
    store.close()


def test_a_pruned_or_abandoned_task_keeps_no_stray_parts(sql_spec: str) -> None:
    for store in (MemoryTaskStore(), SQLTaskStore(sql_spec, progress_interval=0)):
        state = _state_with_snapshots(2)
        store.create(_record("t", {}))
        rest, parts = state.export_progress()
        store.save_progress("t", "processing", rest, parts=parts)
        assert store.fail_orphans(now=1e12, stale_after=1) == ["t"]
        report = store.get("t").report
        assert len(report["reports"]["a"]["snapshots"]) == 2 and report["workflowStatus"]["status"] == "failed"
        assert store.prune(0, None, now=1e12) == 1 and store.get("t") is None
        store.create(_record("t", {}))  # the same id again: nothing of the old task shows
        assert store.get("t").report == {}
        store.close()
