"""Loop checks with FlowGram's exact words (issue 12, items 4 and 5).

Messages and rules from upstream main's loop executor (bytedance/flowgram.ai,
packages/runtime/js-core/src/nodes/loop/index.ts) and its ``getArrayItemsType``: an object's
entries each keep their own type, and collected outputs must all have one type (strictly:
``integer`` and ``number`` differ there).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.workflow.builders import edge, node, obj, ref
from workflow import Limits, RuntimeSettings, WorkflowRuntime
from workflow.store import MemoryTaskStore


@pytest.fixture
def runtime() -> Iterator[WorkflowRuntime]:
    runtime = WorkflowRuntime(MemoryTaskStore(), RuntimeSettings(), limits=Limits(deadline=30))
    yield runtime
    runtime.shutdown()


def loop_schema(items_schema: dict[str, Any], collect: list[Any] | None = None) -> dict[str, Any]:
    """start(items) → loop over items (collecting ``collect``, default the item) → end(results)."""
    loop = node("loop_0", "loop", loopFor=ref("start_0", "items"),
                loopOutputs={"results": ref(*(collect or ["loop_0_locals", "item"]))})
    loop["blocks"] = [node("bs", "block-start"), node("be", "block-end")]
    loop["edges"] = [edge("bs", "be")]
    start = node("start_0", "start", outputs=obj(items=items_schema))
    end = node("end_0", "end", inputs=obj(results={"type": "array"}),
               inputsValues={"results": ref("loop_0", "results")})
    return {"nodes": [start, loop, end], "edges": [edge("start_0", "loop_0"), edge("loop_0", "end_0")]}


def finish(runtime: WorkflowRuntime, schema: dict[str, Any], inputs: dict[str, Any]) -> Any:
    record = runtime.wait(runtime.run(json.dumps(schema), inputs), 30)
    assert record is not None and record.status in ("succeeded", "failed"), record
    return record


def loop_errors(record: Any) -> list[str]:
    return [m["message"] for m in record.report["messages"]["error"] if m.get("nodeID") == "loop_0"]


def test_a_loop_over_an_object_of_mixed_value_types_fails_when_it_collects_them(runtime: WorkflowRuntime) -> None:
    record = finish(runtime, loop_schema({"type": "object"}), {"items": {"a": 1, "b": "two"}})
    assert record.status == "failed"
    assert loop_errors(record) == ["Array items type must be same, expect integer, but got string"]


def test_collected_integers_and_numbers_are_not_the_same_type(runtime: WorkflowRuntime) -> None:
    record = finish(runtime, loop_schema({"type": "object"}), {"items": {"a": 1, "b": 1.5}})
    assert loop_errors(record) == ["Array items type must be same, expect integer, but got number"]


def test_a_loop_over_an_object_of_one_value_type_collects_them(runtime: WorkflowRuntime) -> None:
    record = finish(runtime, loop_schema({"type": "object"}), {"items": {"a": "x", "b": "y"}})
    assert record.status == "succeeded" and record.report["outputs"] == {"results": ["x", "y"]}


def test_an_array_items_take_the_arrays_declared_items_type(runtime: WorkflowRuntime) -> None:
    schema = loop_schema({"type": "array", "items": {"type": "string"}})
    record = finish(runtime, schema, {"items": ["a", "b"]})
    assert record.status == "succeeded" and record.report["outputs"] == {"results": ["a", "b"]}


@pytest.mark.parametrize("value", ["text", 7, True])
def test_a_loop_over_something_else_says_array_or_object(runtime: WorkflowRuntime, value: Any) -> None:
    kind = {str: "string", int: "integer", bool: "boolean"}[type(value)]
    record = finish(runtime, loop_schema({"type": kind}), {"items": value})
    assert loop_errors(record) == ['Loop "loopFor" must be an array or object']


@pytest.mark.parametrize("value", ["", 0, False])
def test_a_falsy_loop_for_is_missing_as_javascript_sees_it(runtime: WorkflowRuntime, value: Any) -> None:
    kind = {str: "string", int: "integer", bool: "boolean"}[type(value)]
    record = finish(runtime, loop_schema({"type": kind}), {"items": value})
    assert loop_errors(record) == ['Loop "loopFor" is required']


def test_an_object_loop_reads_its_entries_in_javascript_key_order(runtime: WorkflowRuntime) -> None:
    record = finish(runtime, loop_schema({"type": "object"}, ["loop_0_locals", "key"]), {"items": {"b": 1, "2": 2, "a": 3, "1": 4}})
    assert record.status == "succeeded" and record.report["outputs"] == {"results": ["1", "2", "b", "a"]}


def test_a_null_value_in_an_object_is_an_item_of_type_null(runtime: WorkflowRuntime) -> None:
    record = finish(runtime, loop_schema({"type": "object"}), {"items": {"a": "x", "b": None}})
    assert loop_errors(record) == ["Array items type must be same, expect string, but got null"]
