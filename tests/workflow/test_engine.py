"""Engine behaviour beyond FlowGram's own cases: nesting, joins, op nodes, cancel, limits, scale."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ops import OpApp
from tests.fake_upstream import FakeUpstream
from tests.workflow.builders import edge, node, obj, ref
from workflow import (
    Limits,
    NodeResult,
    RuntimeSettings,
    TaskRunAPI,
    TaskValidateAPI,
    WorkflowApplication,
    WorkflowRuntime,
    register_node_executor,
    set_default_runtime,
)
from workflow.store import MemoryTaskStore


START = node("start_0", "start", outputs=obj(items={"type": "array", "items": {"type": "array",
                                                                                "items": {"type": "integer"}}},
                                             user={"type": "object"}))


@pytest.fixture
def runtime() -> Iterator[WorkflowRuntime]:
    runtime = WorkflowRuntime(MemoryTaskStore(), RuntimeSettings(), limits=Limits(deadline=30, max_loop_iterations=50))
    yield runtime
    runtime.shutdown()


def run(runtime: WorkflowRuntime, schema: dict[str, Any], inputs: dict[str, Any] | None = None):
    task_id = runtime.run(json.dumps(schema), inputs or {})
    return runtime.wait(task_id, 60)


def test_nested_loops_collect_per_level(runtime: WorkflowRuntime) -> None:
    inner = node("inner", "loop", loopFor=ref("outer_locals", "item"),
                 loopOutputs={"values": ref("inner_locals", "item")})
    inner["blocks"] = [node("ibs", "block-start"), node("ibe", "block-end")]
    inner["edges"] = [edge("ibs", "ibe")]
    outer = node("outer", "loop", loopFor=ref("start_0", "items"), loopOutputs={"rows": ref("inner", "values")})
    outer["blocks"] = [node("obs", "block-start"), inner, node("obe", "block-end")]
    outer["edges"] = [edge("obs", "inner"), edge("inner", "obe")]
    end = node("end_0", "end", inputs=obj(rows={"type": "array"}), inputsValues={"rows": ref("outer", "rows")})
    schema = {"nodes": [START, outer, end], "edges": [edge("start_0", "outer"), edge("outer", "end_0")]}
    record = run(runtime, schema, {"items": [[1, 2], [3], [4, 5, 6]]})
    assert record.status == "succeeded", record.report["messages"]["error"]
    assert record.outputs == {"rows": [[1, 2], [3], [4, 5, 6]]}
    assert len(record.report["reports"]["ibs"]["snapshots"]) == 6


def test_branch_join_and_template_with_nested_path(runtime: WorkflowRuntime) -> None:
    async def shout(ctx: Any) -> NodeResult:
        return NodeResult({"text": ctx.inputs["text"].upper()})

    register_node_executor("shout", shout)
    text_in = {"text": {"type": "template", "content": "hi {{start_0.user.name}} ({{start_0.user.tags.1}})"}}
    schema = {
        "nodes": [
            START,
            node("a", "shout", inputs=obj(text={"type": "string"}), inputsValues=text_in,
                 outputs=obj(text={"type": "string"})),
            node("b", "shout", inputs=obj(text={"type": "string"}),
                 inputsValues={"text": {"type": "constant", "content": "b"}}, outputs=obj(text={"type": "string"})),
            node("end_0", "end", inputs=obj(a={"type": "string"}, b={"type": "string"}),
                 inputsValues={"a": ref("a", "text"), "b": ref("b", "text")}),
        ],
        "edges": [edge("start_0", "a"), edge("start_0", "b"), edge("a", "end_0"), edge("b", "end_0")],
    }
    record = run(runtime, schema, {"user": {"name": "ada", "tags": ["x", "y"]}})
    assert record.outputs == {"a": "HI ADA (Y)", "b": "B"}
    assert len(record.report["reports"]["end_0"]["snapshots"]) == 1  # the join ran once


def test_unresolved_inputs_are_dropped_with_a_warning(runtime: WorkflowRuntime) -> None:
    schema = {"nodes": [START, node("end_0", "end", inputs=obj(x={"type": "string"}),
                                    inputsValues={"x": ref("start_0", "missing")})],
              "edges": [edge("start_0", "end_0")]}
    record = run(runtime, schema)
    assert record.status == "succeeded" and record.outputs == {}
    warnings = [m["message"] for m in record.report["messages"]["warning"]]
    assert any("end_0" in w and '"x"' in w for w in warnings)


def test_op_node_runs_a_registered_op(runtime: WorkflowRuntime, upstream: FakeUpstream) -> None:
    schema = {"nodes": [
        node("start_0", "start", outputs=obj(text={"type": "string"})),
        node("op_0", "op", opName="echo_tool", inputs=obj(text={"type": "string"}),
             inputsValues={"text": ref("start_0", "text")}, outputs=obj(echo_tool_result={"type": "string"})),
        node("end_0", "end", inputs=obj(out={"type": "string"}), inputsValues={"out": ref("op_0", "echo_tool_result")}),
    ], "edges": [edge("start_0", "op_0"), edge("op_0", "end_0")]}
    with OpApp(env={"LLM_BASE_URL": upstream.base_url}):
        record = run(runtime, schema, {"text": "hi"})
    assert record.outputs == {"out": "Echo: hi"}


def test_unknown_node_type_fails_before_any_node_runs(runtime: WorkflowRuntime) -> None:
    schema = {"nodes": [START, node("x", "teleport"), node("end_0", "end")],
              "edges": [edge("start_0", "x"), edge("x", "end_0")]}
    record = run(runtime, schema)
    assert record.status == "failed" and record.report["reports"] == {}
    assert record.report["messages"]["error"][0]["message"] == "No executor found for node type teleport"
    validation = asyncio.run(TaskValidateAPI({"schema": json.dumps(schema), "inputs": {}}))
    assert validation["valid"] is True and "teleport" in validation["warnings"][0]


def slow_loop_schema() -> dict[str, Any]:
    loop = node("loop_0", "loop", loopFor=ref("start_0", "items"), loopOutputs={"done": ref("loop_0_locals", "index")})
    loop["blocks"] = [node("bs", "block-start"), node("nap", "nap"), node("be", "block-end")]
    loop["edges"] = [edge("bs", "nap"), edge("nap", "be")]
    return {"nodes": [node("start_0", "start", outputs=obj(items={"type": "array", "items": {"type": "integer"}})),
                      loop, node("end_0", "end")],
            "edges": [edge("start_0", "loop_0"), edge("loop_0", "end_0")]}


async def nap(ctx: Any) -> NodeResult:
    await asyncio.sleep(0.05)
    return NodeResult({})


def test_cancel_mid_loop(runtime: WorkflowRuntime) -> None:
    register_node_executor("nap", nap)
    task_id = runtime.run(slow_loop_schema(), {"items": list(range(40))})
    for _ in range(200):
        report = runtime.report(task_id)
        if len(report["reports"].get("nap", {}).get("snapshots", [])) >= 2:
            break
        runtime.wait(task_id, 0.02)
    assert runtime.cancel(task_id) is True
    record = runtime.wait(task_id, 30)
    assert record.status == "canceled"
    report = record.report
    assert report["workflowStatus"]["status"] == "canceled"
    assert report["messages"]["error"] == []  # no stray errors
    assert all(n["status"] in ("succeeded", "canceled") for n in report["reports"].values())
    assert report["reports"]["loop_0"]["status"] == "canceled"
    assert len(report["reports"]["nap"]["snapshots"]) < 40
    assert runtime.cancel("no-such-task") is False


def test_loop_iteration_limit(runtime: WorkflowRuntime) -> None:
    register_node_executor("nap", nap)
    record = run(runtime, slow_loop_schema(), {"items": list(range(51))})
    assert record.status == "failed"
    assert "limit is 50" in record.report["messages"]["error"][0]["message"]


def test_deadline_ends_a_runaway_task() -> None:
    register_node_executor("nap", nap)
    runtime = WorkflowRuntime(MemoryTaskStore(), limits=Limits(deadline=0.2))
    try:
        record = run(runtime, slow_loop_schema(), {"items": list(range(40))})
    finally:
        runtime.shutdown()
    assert record.status == "failed"
    assert any("deadline" in m["message"] for m in record.report["messages"]["error"])


def test_a_5000_node_chain(runtime: WorkflowRuntime) -> None:
    async def step(ctx: Any) -> NodeResult:
        return NodeResult({"n": ctx.inputs.get("n", 0) + 1})

    register_node_executor("step", step)
    nodes = [node("start_0", "start", outputs=obj())]
    edges = []
    previous = "start_0"
    for i in range(5000):
        values = {"n": ref(previous, "n")} if i else {}
        nodes.append(node(f"s{i}", "step", inputs=obj(n={"type": "integer"}), inputsValues=values,
                          outputs=obj(n={"type": "integer"})))
        edges.append(edge(previous, f"s{i}"))
        previous = f"s{i}"
    nodes.append(node("end_0", "end", inputs=obj(n={"type": "integer"}), inputsValues={"n": ref(previous, "n")}))
    edges.append(edge(previous, "end_0"))
    record = run(runtime, {"nodes": nodes, "edges": edges})
    assert record.status == "succeeded", record.report["messages"]["error"][:1]
    assert record.outputs == {"n": 5000}


def test_secrets_are_masked_in_reports(runtime: WorkflowRuntime) -> None:
    schema = {"nodes": [node("start_0", "start", outputs=obj(apiKey={"type": "string"})),
                        node("end_0", "end", inputs=obj(apiKey={"type": "string"}),
                             inputsValues={"apiKey": ref("start_0", "apiKey")})],
              "edges": [edge("start_0", "end_0")]}
    record = run(runtime, schema, {"apiKey": "sk-very-secret"})
    assert "sk-very-secret" not in json.dumps(record.report)


def test_async_api_and_sync_facade() -> None:
    runtime = WorkflowRuntime(MemoryTaskStore())
    set_default_runtime(runtime)
    schema = {"nodes": [node("start_0", "start", outputs=obj(q={"type": "string"})),
                        node("end_0", "end", inputs=obj(q={"type": "string"}), inputsValues={"q": ref("start_0", "q")})],
              "edges": [edge("start_0", "end_0")]}
    try:
        task = asyncio.run(TaskRunAPI({"schema": json.dumps(schema), "inputs": {"q": "x"}}))
        app = WorkflowApplication(runtime)
        runtime.wait(task["taskID"], 10)
        assert app.result(task["taskID"]) == {"q": "x"}
        assert app.report(task["taskID"])["id"] == task["taskID"]
        second = app.run(schema, {"q": "y"}, wait=10)
        assert app.result(second) == {"q": "y"}
    finally:
        runtime.shutdown()


@pytest.mark.parametrize(("script", "named"), [
    ("function main({params}) { while (true) {} }", "timeout"),
    ("function main({params}) { const a = []; while (true) a.push(new Array(1e6).fill(1)); }", "memory"),
])
def test_a_runaway_code_node_is_stopped_and_fails(script: str, named: str) -> None:
    runtime = WorkflowRuntime(MemoryTaskStore(), RuntimeSettings(code_timeout=1.0))
    schema = {"nodes": [node("start_0", "start", outputs=obj()),
                        node("code_0", "code", script={"language": "javascript", "content": script},
                             outputs=obj(result={"type": "string"})),
                        node("end_0", "end")],
              "edges": [edge("start_0", "code_0"), edge("code_0", "end_0")]}
    try:
        record = run(runtime, schema)
    finally:
        runtime.shutdown()
    assert record.status == "failed"
    assert record.report["reports"]["code_0"]["status"] == "failed"
    message = record.report["messages"]["error"][0]["message"]
    assert message.startswith("Code execution failed") and named in message


def test_a_task_of_a_dead_process_ends_failed(tmp_path) -> None:
    import time

    from workflow.store import SQLiteTaskStore, TaskRecord

    store = SQLiteTaskStore(tmp_path / "tasks.db")
    old = time.time() - 3600
    store.create(TaskRecord(task_id="orphan", status="processing", schema={}, inputs={}, outputs=None, report=None,
                            error=None, created_at=old, started_at=old, finished_at=None, cancel_requested=False,
                            owner="gone-host:1:dead", heartbeat_at=old))
    runtime = WorkflowRuntime(store)
    try:
        runtime.run({"nodes": [], "edges": []})  # any call starts this process's housekeeping
        record = None
        for _ in range(100):
            record = store.get("orphan")
            if record.terminated:
                break
            time.sleep(0.05)
    finally:
        runtime.shutdown()
    assert record.status == "failed" and "gone-host:1:dead" in record.error


def test_wait_returns_once_the_store_says_canceled_even_while_a_node_holds_on(runtime: WorkflowRuntime) -> None:
    """A node that ignores cancellation for a while must not hold up a caller waiting for the outcome."""
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def blocking_call() -> None:
        release.wait(10)
        finished.set()

    async def stubborn(ctx: Any) -> NodeResult:
        started.set()
        # A blocking call in a thread, like an LLM request in flight: cancelling the task
        # does not interrupt it, so the node gives up only when it returns.
        await asyncio.shield(asyncio.get_running_loop().run_in_executor(None, blocking_call))
        return NodeResult({})

    register_node_executor("stubborn", stubborn)
    schema = {"nodes": [node("start_0", "start", outputs=obj()), node("s", "stubborn"), node("end_0", "end")],
              "edges": [edge("start_0", "s"), edge("s", "end_0")]}
    task_id = runtime.run(json.dumps(schema), {})
    try:
        assert started.wait(10)
        assert runtime.cancel(task_id) is True
        record = runtime.wait(task_id, 30)
        assert record is not None and record.status == "canceled"
        assert not finished.is_set(), "wait should not wait for the node in flight"
    finally:
        release.set()
