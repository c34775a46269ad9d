"""Every failed task says why (issue 11): no more "failed: failed" with empty ``messages.error``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.workflow.builders import edge, node, obj, ref
from workflow import Limits, NodeResult, RuntimeSettings, WorkflowRuntime, register_node_executor
from workflow.store import MemoryTaskStore

START = node("start_0", "start", outputs=obj(x={"type": "integer"}))
END = node("end_0", "end", inputs=obj(), inputsValues={})


async def _nothing(ctx: Any) -> NodeResult:
    return NodeResult({})


register_node_executor("test-nothing", _nothing)


def condition(node_id: str = "cond") -> dict[str, Any]:
    rule = {"left": ref("start_0", "x"), "operator": "eq", "right": {"type": "constant", "content": 1}}
    return node(node_id, "condition", conditions=[{"key": "if_one", "value": rule}])


@pytest.fixture
def runtime() -> Iterator[WorkflowRuntime]:
    runtime = WorkflowRuntime(MemoryTaskStore(), RuntimeSettings(), limits=Limits(deadline=30))
    yield runtime
    runtime.shutdown()


def failed(runtime: WorkflowRuntime, schema: dict[str, Any], inputs: dict[str, Any]) -> tuple[Any, list[Any]]:
    record = runtime.wait(runtime.run(json.dumps(schema), inputs), 30)
    assert record is not None and record.status == "failed", record
    errors = record.report["messages"]["error"]
    assert errors and record.error == "; ".join(e["message"] for e in errors)
    return record, errors


def test_a_branch_with_no_edge_fails_its_condition_node_saying_so(runtime: WorkflowRuntime) -> None:
    schema = {"nodes": [START, condition(), END], "edges": [edge("start_0", "cond"), edge("cond", "end_0", "if_one")]}
    record, errors = failed(runtime, schema, {"x": 2})  # 2 != 1: the "else" branch, which has no edge
    assert [(e.get("nodeID"), e["message"]) for e in errors] == [("cond", 'Branch "else" not found')]
    assert record.report["reports"]["cond"]["status"] == "failed"


def test_the_same_inside_a_loop_names_the_condition_node_not_only_the_loop(runtime: WorkflowRuntime) -> None:
    loop = node("loop_0", "loop", loopFor=ref("start_0", "items"))
    loop["blocks"] = [node("bs", "block-start"), condition(), node("be", "block-end")]
    loop["edges"] = [edge("bs", "cond"), edge("cond", "be", "if_one")]
    start = node("start_0", "start", outputs=obj(x={"type": "integer"}, items={"type": "array",
                                                                                "items": {"type": "integer"}}))
    schema = {"nodes": [start, loop, END], "edges": [edge("start_0", "loop_0"), edge("loop_0", "end_0")]}
    _, errors = failed(runtime, schema, {"x": 2, "items": [1]})
    assert ("cond", 'Branch "else" not found') in [(e.get("nodeID"), e["message"]) for e in errors]


def test_a_node_with_no_way_on_fails_saying_so(runtime: WorkflowRuntime) -> None:
    schema = {"nodes": [START, node("a", "test-nothing"), END], "edges": [edge("start_0", "a")]}
    _, errors = failed(runtime, schema, {"x": 1})
    assert [(e.get("nodeID"), e["message"]) for e in errors] == [("a", 'Node "a" has no next nodes')]


def test_an_end_node_never_reached_succeeds_as_in_flowgram_with_a_warning_saying_why(runtime: WorkflowRuntime) -> None:
    """FlowGram's engine ends this run succeeded with outputs {} (its join waits silently); the warning says why."""
    nodes = [START, node("a", "test-nothing"), node("dangling", "test-nothing"), END]
    edges = [edge("start_0", "a"), edge("a", "end_0"), edge("dangling", "end_0")]
    record = runtime.wait(runtime.run(json.dumps({"nodes": nodes, "edges": edges}), {"x": 1}), 30)
    assert record is not None and record.status == "succeeded" and record.outputs == {}
    assert [(w.get("nodeID"), w["message"]) for w in record.report["messages"]["warning"]] == [
        ("end_0", 'The end node "end_0" was not reached: it waits for "dangling", which never ran; '
                  "the outputs are empty")]


class RefusingStore(MemoryTaskStore):
    """A store that cannot save a finished task's report (a full disk, a value it cannot encode...)."""

    def save_progress(self, task_id: str, status: str, report: Any, *args: Any, **kwargs: Any) -> None:
        if status in ("succeeded", "failed"):
            raise OSError("disk full")
        super().save_progress(task_id, status, report, *args, **kwargs)


def test_a_report_that_cannot_be_saved_still_ends_the_task_failed_saying_why() -> None:
    runtime = WorkflowRuntime(RefusingStore(), RuntimeSettings(), limits=Limits(deadline=30))
    try:
        schema = {"nodes": [START, node("a", "test-nothing"), END], "edges": [edge("start_0", "a"), edge("a", "end_0")]}
        record = runtime.wait(runtime.run(json.dumps(schema), {"x": 1}), 30)
    finally:
        runtime.shutdown()
    assert record.status == "failed" and "disk full" in record.error
    assert "disk full" in record.report["messages"]["error"][-1]["message"]
    assert record.report["workflowStatus"]["status"] == "failed"


class HiccupStore(MemoryTaskStore):
    """A store whose first save of a finished task fails (a locked database...); the retry works."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def save_progress(self, task_id: str, status: str, report: Any, *args: Any, **kwargs: Any) -> None:
        if status == "succeeded" and not self.failed:
            self.failed = True
            raise OSError("database is locked")
        super().save_progress(task_id, status, report, *args, **kwargs)


def test_parts_of_a_report_whose_save_failed_are_saved_by_the_next_save() -> None:
    store = HiccupStore()
    runtime = WorkflowRuntime(store, RuntimeSettings(), limits=Limits(deadline=30))
    try:
        nodes = [START, node("a", "test-nothing"), node("b", "test-nothing"), END]
        edges = [edge("start_0", "a"), edge("a", "b"), edge("b", "end_0")]
        record = runtime.wait(runtime.run(json.dumps({"nodes": nodes, "edges": edges}), {"x": 1}), 30)
    finally:
        runtime.shutdown()
    assert store.failed and record.status == "succeeded"
    reports = record.report["reports"]
    assert {node_id: len(reports[node_id]["snapshots"]) for node_id in reports} == {
        "start_0": 1, "a": 1, "b": 1, "end_0": 1}  # none lost with the failed save
