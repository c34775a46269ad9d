"""A long chain of conditions costs in proportion to its length (issue 11).

Time is not asserted; what made such a chain quadratic is counted instead: for every condition
that took its branch, the engine walked the whole rest of the graph from the taken branch to
work out which nodes the other branches skip, even when there were no other branches.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.workflow.builders import edge, node, obj, ref
from workflow import Limits, RuntimeSettings, WorkflowRuntime
from workflow.document import WorkflowDocument
from workflow.store import MemoryTaskStore

N = 300


def chain_of_conditions(n: int) -> dict[str, Any]:
    """start -> c0 -> c1 -> ... -> end, every condition true, with only its "if" port wired."""
    rule = {"left": ref("start_0", "x"), "operator": "eq", "right": {"type": "constant", "content": 1}}
    nodes = [node("start_0", "start", outputs=obj(x={"type": "integer"}))]
    nodes += [node(f"c{i}", "condition", conditions=[{"key": "if_yes", "value": rule}]) for i in range(n)]
    nodes.append(node("end_0", "end", inputs=obj(), inputsValues={}))
    ids = ["start_0", *(f"c{i}" for i in range(n)), "end_0"]
    edges = [edge(ids[0], ids[1])] + [edge(a, b, "if_yes") for a, b in zip(ids[1:-1], ids[2:])]
    return {"nodes": nodes, "edges": edges}


@pytest.fixture
def walked(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many nodes each call of ``WorkflowDocument.reachable`` walked."""
    sizes: list[int] = []
    original = WorkflowDocument.reachable

    def reachable(self: WorkflowDocument, starts: list[str]) -> set[str]:
        found = original(self, starts)
        sizes.append(len(found))
        return found

    monkeypatch.setattr(WorkflowDocument, "reachable", reachable)
    yield sizes


def test_a_chain_of_conditions_walks_the_graph_a_bounded_number_of_times(walked: list[int]) -> None:
    runtime = WorkflowRuntime(MemoryTaskStore(), RuntimeSettings(), limits=Limits(deadline=120))
    try:
        record = runtime.wait(runtime.run(json.dumps(chain_of_conditions(N)), {"x": 1}), 120)
    finally:
        runtime.shutdown()
    assert record is not None and record.status == "succeeded", record
    assert sum(walked) <= 4 * (N + 2)  # before: about N * N / 2 nodes walked
