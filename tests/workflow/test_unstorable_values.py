"""Values a task cannot hold (issue 11): refused before the task is recorded, or failing their node.

A schema or inputs nested too deeply, with a lone surrogate, NaN or a huge integer is a
:class:`WorkflowInputError` naming where, and no task row exists afterwards (no ghost
``processing`` task). A node returning such a value fails, naming itself and the problem,
and the task ends ``failed`` with that message, never stuck in ``processing``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.workflow.builders import edge, node, obj, ref
from workflow import (
    Limits,
    NodeResult,
    RuntimeSettings,
    TaskValidateAPI,
    WorkflowInputError,
    WorkflowRuntime,
    register_node_executor,
    set_default_runtime,
)
from workflow.store import SQLiteTaskStore

START = node("start_0", "start", outputs=obj(q={"type": "string"}))
END = node("end_0", "end", inputs=obj(q={"type": "string"}), inputsValues={"q": ref("start_0", "q")})
SIMPLE = {"nodes": [START, END], "edges": [edge("start_0", "end_0")]}


def nested(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[WorkflowRuntime]:
    runtime = WorkflowRuntime(SQLiteTaskStore(tmp_path / "tasks.db"), RuntimeSettings(), limits=Limits(deadline=60))
    yield runtime
    runtime.shutdown()
    runtime.store.close()


def deep_schema(levels: int) -> dict[str, Any]:
    start = node("start_0", "start", outputs=obj(q={"type": "string"}), extra=nested(levels))
    return {"nodes": [start, END], "edges": [edge("start_0", "end_0")]}


@pytest.mark.parametrize("schema, inputs, named", [
    (json.dumps(deep_schema(500)), {"q": "x"}, "nested too deeply (limit 100"),
    ("[" * 5000 + "]" * 5000, {"q": "x"}, "schema is nested too deeply (limit 100"),  # json.loads: RecursionError
    (SIMPLE, {"q": "x", "deep": nested(500)}, "nested too deeply (limit 100"),
    (SIMPLE, {"q": "\ud800"}, "inputs.q contains a lone surrogate (U+D800)"),
    (json.dumps(SIMPLE).replace('"end_0"', '"end\\udc00"'), {"q": "x"}, "lone surrogate (U+DC00)"),
    (SIMPLE, {"q": "x", "n": float("nan")}, "inputs.n is nan"),
    (SIMPLE, {"q": "x", "n": [1, float("inf")]}, "inputs.n[1] is inf"),
    (SIMPLE, {"q": "x", "n": 10**400}, "inputs.n is an integer too large"),
])
def test_a_value_no_task_can_hold_is_refused_before_anything_is_recorded(
        runtime: WorkflowRuntime, schema: Any, inputs: dict[str, Any], named: str) -> None:
    with pytest.raises(WorkflowInputError) as caught:
        runtime.run(schema, inputs)
    assert named in str(caught.value)
    assert runtime.store.count() == 0  # no ghost task
    set_default_runtime(runtime)
    with pytest.raises(WorkflowInputError, match="nested too deeply|lone surrogate|is nan|is inf|too large"):
        asyncio.run(TaskValidateAPI({"schema": schema, "inputs": inputs}))


def test_values_at_the_nesting_limit_run(runtime: WorkflowRuntime) -> None:
    record = runtime.wait(runtime.run(json.dumps(SIMPLE), {"q": "x", "deep": nested(99)}), 60)
    assert record.status == "succeeded" and record.outputs == {"q": "x"}


def _returning(value: Any) -> dict[str, Any]:
    name = f"test-returns-{id(value)}"

    async def execute(ctx: Any) -> NodeResult:
        return NodeResult({"result": value})

    register_node_executor(name, execute)
    body = node("odd", name, outputs=obj(result={"type": "object"}))
    end = node("end_0", "end", inputs=obj(r={"type": "object"}), inputsValues={"r": ref("odd", "result")})
    return {"nodes": [START, body, end], "edges": [edge("start_0", "odd"), edge("odd", "end_0")]}


@pytest.mark.parametrize("value, named", [
    (nested(500), "outputs.result.a.a"),
    ({"text": "\udfff"}, "outputs.result.text contains a lone surrogate (U+DFFF)"),
    ({1, 2}, "outputs.result is a set, which is not a JSON value"),
    (float("nan"), "outputs.result is nan"),
])
def test_a_node_returning_a_value_that_cannot_be_stored_fails_with_a_clear_message(
        runtime: WorkflowRuntime, value: Any, named: str) -> None:
    record = runtime.wait(runtime.run(json.dumps(_returning(value)), {"q": "x"}), 60)
    assert record.status == "failed"
    errors = record.report["messages"]["error"]
    assert [e.get("nodeID") for e in errors] == ["odd"]
    assert errors[0]["message"].startswith('Node "odd" returned a value that cannot be stored: ')
    assert named in errors[0]["message"] and named in record.error
    assert record.report["reports"]["odd"]["status"] == "failed"
    assert record.report["workflowStatus"]["status"] == "failed"


def test_a_code_node_returning_a_deep_value_fails_promptly_and_keeps_its_report(runtime: WorkflowRuntime) -> None:
    pytest.importorskip("quickjs")
    script = "function main() { let v = 1; for (let i = 0; i < 500; i++) v = {a: v}; return {deep: v}; }"
    code = node("code_0", "code", script={"language": "javascript", "content": script},
                outputs=obj(deep={"type": "object"}))
    end = node("end_0", "end", inputs=obj(), inputsValues={})
    schema = {"nodes": [START, code, end], "edges": [edge("start_0", "code_0"), edge("code_0", "end_0")]}
    record = runtime.wait(runtime.run(json.dumps(schema), {"q": "x"}), 60)
    assert record.status == "failed"
    (error,) = record.report["messages"]["error"]
    assert error["nodeID"] == "code_0" and "nested too deeply (limit 100 levels)" in error["message"]
    assert "stopped" not in record.error  # not the abandoned-task message of a wedged run
    assert record.report["reports"]["start_0"]["snapshots"][0]["outputs"] == {"q": "x"}


def test_a_script_error_with_a_lone_surrogate_is_stored(runtime: WorkflowRuntime) -> None:
    pytest.importorskip("quickjs")
    code = node("code_0", "code", script={"language": "javascript",
                                          "content": "function main() { throw new Error('bad \\ud800'); }"})
    end = node("end_0", "end", inputs=obj(), inputsValues={})
    schema = {"nodes": [START, code, end], "edges": [edge("start_0", "code_0"), edge("code_0", "end_0")]}
    record = runtime.wait(runtime.run(json.dumps(schema), {"q": "x"}), 60)
    assert record.status == "failed"
    assert record.report["messages"]["error"][0]["message"] == "Code execution failed: bad \\ud800"
