"""A loop iteration costs the same however many ran before it (issue 11).

Time is not asserted (benchmarks measure it: ``bench/loops.py``); what made long loops
quadratic is: every progress save exported and stored the whole report, whose snapshots
grow by one per iteration. Here progress is saved at every status change, and what
each save hands to the store is measured in bytes: it must not grow with the loop.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.workflow.builders import edge, node, obj, ref
from workflow import Limits, NodeResult, RuntimeSettings, WorkflowRuntime, register_node_executor
from workflow.progress import ProgressSaver
from workflow.store import MemoryTaskStore, SQLiteTaskStore, TaskStore


async def _echo(ctx: Any) -> NodeResult:
    return NodeResult({"y": ctx.inputs.get("x")})


register_node_executor("test-loop-echo", _echo)


def loop_schema() -> dict[str, Any]:
    """start -> loop (block-start -> echo -> block-end) -> end; the loop collects the echoes."""
    body = node("body", "test-loop-echo", inputs=obj(x={"type": "integer"}),
                inputsValues={"x": ref("loop_0_locals", "item")}, outputs=obj(y={"type": "integer"}))
    loop = node("loop_0", "loop", loopFor=ref("start_0", "items"), loopOutputs={"ys": ref("body", "y")})
    loop["blocks"] = [node("bs", "block-start"), body, node("be", "block-end")]
    loop["edges"] = [edge("bs", "body"), edge("body", "be")]
    start = node("start_0", "start", outputs=obj(items={"type": "array", "items": {"type": "integer"}}))
    end = node("end_0", "end", inputs=obj(ys={"type": "array"}), inputsValues={"ys": ref("loop_0", "ys")})
    return {"nodes": [start, loop, end], "edges": [edge("start_0", "loop_0"), edge("loop_0", "end_0")]}


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


class Measured:
    """Wraps a store's ``save_progress``: bytes handed over per call (the report, plus any new parts)."""

    def __init__(self, store: TaskStore) -> None:
        self.sizes: list[int] = []
        save = store.save_progress

        def save_progress(task_id: str, status: str, report: Any, *args: Any, **kwargs: Any) -> None:
            self.sizes.append(_size(report) + sum(_size(part) for part in kwargs.get("parts") or ()))
            save(task_id, status, report, *args, **kwargs)

        store.save_progress = save_progress  # type: ignore[method-assign]


class EverySaveRuntime(WorkflowRuntime):
    """Saves progress at every status change (no time-based coalescing), so the counts are deterministic."""

    def _saver(self, task_id: str) -> Any:
        return ProgressSaver(self.store, task_id, interval=0)


def _make_store(kind: str, path: Path) -> TaskStore:
    return SQLiteTaskStore(path, progress_interval=0) if kind == "sqlite" else MemoryTaskStore()


def _run_loop(kind: str, tmp_path: Path, n: int) -> tuple[list[int], Any]:
    store = _make_store(kind, tmp_path / f"tasks-{n}.db")
    measured = Measured(store)
    runtime = EverySaveRuntime(store, RuntimeSettings(), limits=Limits(deadline=None, max_loop_iterations=n))
    try:
        task_id = runtime.run(json.dumps(loop_schema()), {"items": list(range(n))})
        record = runtime.wait(task_id, 300)
    finally:
        runtime.shutdown()
    assert record is not None and record.status == "succeeded", record and record.report["messages"]
    store.close()
    return measured.sizes, record


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_bytes_saved_per_iteration_do_not_grow_with_the_loop(kind: str, tmp_path: Path) -> None:
    small_sizes, _ = _run_loop(kind, tmp_path, 40)
    big_sizes, record = _run_loop(kind, tmp_path, 400)
    # every status change was saved: 2 per node run, 3 body nodes per iteration
    assert len(big_sizes) >= 6 * 400
    # no save during the loop depends on how many iterations ran before it (the first save holds the
    # inputs, the last ones the loop's collected outputs: those are as long as the loop, once)...
    small, big = max(small_sizes[10:-10]), max(big_sizes[10:-10])
    assert big < 1.5 * small, f"largest save: {small} bytes at 40 iterations, {big} at 400"
    # ...so neither does the total per iteration (the whole report re-saved every time made it grow ~10x here)
    assert sum(big_sizes) / 400 < 1.5 * sum(small_sizes) / 40, (sum(small_sizes), sum(big_sizes))
    # and the report read back is whole: every iteration's snapshot, in order
    snapshots = record.report["reports"]["body"]["snapshots"]
    assert [s["inputs"]["x"] for s in snapshots] == list(range(400))
    assert [s["outputs"]["y"] for s in snapshots] == list(range(400))
    assert record.report["inputs"] == {"items": list(range(400))}
    assert record.outputs == {"ys": list(range(400))}


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteTaskStore]:
    store = SQLiteTaskStore(tmp_path / "tasks.db")
    yield store
    store.close()


def test_ten_thousand_iterations_finish_well_within_the_default_deadline(sqlite_store: SQLiteTaskStore) -> None:
    runtime = WorkflowRuntime(sqlite_store, RuntimeSettings())  # default Limits: 600 s, 10,000 iterations
    try:
        task_id = runtime.run(json.dumps(loop_schema()), {"items": list(range(10_000))})
        record = runtime.wait(task_id, 590)
    finally:
        runtime.shutdown()
    assert record is not None and record.status == "succeeded", record and record.report["messages"]["error"]
    assert len(record.outputs["ys"]) == 10_000
    assert len(record.report["reports"]["body"]["snapshots"]) == 10_000
