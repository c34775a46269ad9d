"""The examples of the user's runtime document run as plain Python scripts (issue 12, item 7).

Fixture data source: ``seeds/003_9c24919555af1b7a.txt`` ("FlowGram Python Runtime"): its curl
example's workflow and the snippets of "API 文档" (``seed003/api_functions.py``), the kernel
example of "内核使用说明（高级）" (``seed003/kernel_example.py``) and its "用法"
(``seed003/application_usage.py``), and FAQ 3's class-based custom node (``seed003/custom_node.py``),
copied into ``tests/workflow/seed003/`` with only their import lines changed. Each runs in its own
interpreter with nothing but the environment to configure it, as a user's script would: the
default runtime must read ``LLM_BASE_URL`` and ``FLOWBRIDGE_ALLOWED_HOSTS`` itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fake_upstream import FakeUpstream
from workflow import (
    BaseNodeExecutor,
    NodeResult,
    RuntimeSettings,
    WorkflowApplication,
    WorkflowConfigError,
    WorkflowRuntime,
    register_node_executor,
)
from workflow.document import normalise_schema
from workflow.store import MemoryTaskStore

SCRIPTS = Path(__file__).parent / "seed003"
ROOT = Path(__file__).resolve().parents[2]
PROMPT = "Just give me the answer of '1+1=?', just one number, no other words"
NORMALISED = ("The schema was normalised to FlowGram's format (2 nodes, 1 edge in the kernel format: top-level "
              '"position"/"ports" became "meta.position", edges\' "source"/"target" objects became '
              '"sourceNodeID"/"targetNodeID"/"sourcePortID")')
#: what the kernel example's start node (no "data") adds to the warning
EMPTY_START = '; start node "start" had no "data.outputs": it declares no variables'


def run_script(name: str, *, settle: bool = False, **env: str) -> list[str]:
    """Run ``seed003/<name>.py`` in a fresh interpreter (through ``settle.py`` if ``settle``); its stdout lines.

    The environment is this one without any LLM or flowbridge setting, plus ``env``.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "OPENAI_", "FLOWBRIDGE_", "SEED003_"))}
    clean.update(PYTHONPATH=str(ROOT), LLM_MAX_RETRIES="0", **env)
    args = [str(SCRIPTS / "settle.py"), str(SCRIPTS / f"{name}.py")] if settle else [str(SCRIPTS / f"{name}.py")]
    done = subprocess.run([sys.executable, *args], cwd=SCRIPTS, env=clean, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def json_lines(lines: list[str]) -> dict[str, Any]:
    """``{"key": value}`` lines merged into one dict."""
    merged: dict[str, Any] = {}
    for line in lines:
        merged.update(json.loads(line))
    return merged


def test_the_api_functions_run_the_seeds_curl_workflow_on_the_configured_llm_server(upstream: FakeUpstream) -> None:
    out = json_lines(run_script("api_functions", LLM_BASE_URL=upstream.base_url))
    report = out["report"]
    assert report["id"] == out["taskID"]
    assert report["workflowStatus"]["status"] == "succeeded", report["messages"]["error"]
    assert out["result"] == {"answer": f"echo: {PROMPT}"}
    assert out["cancel"] == {"success": True}
    assert report["inputs"]["api_key"] == "******"  # the seed's secret is masked in the report
    assert upstream.stats()["last_request"]["json"]["model"] == "ep-20250206192339-nnr9m"  # the node's modelName


def test_the_default_runtime_reads_flowbridge_allowed_hosts(upstream: FakeUpstream) -> None:
    port = upstream.base_url.split(":")[2].split("/")[0]
    other_host = {"LLM_BASE_URL": "http://127.0.0.1:9/v1", "SEED003_API_HOST": f"http://localhost:{port}/v1"}
    refused = json_lines(run_script("api_functions", **other_host))
    assert refused["report"]["workflowStatus"]["status"] == "failed"
    assert [m["message"] for m in refused["report"]["messages"]["error"]] == [
        f'Invalid API host: host "localhost:{port}" is not allowed; add it to FLOWBRIDGE_ALLOWED_HOSTS '
        "to let workflows reach it"]
    allowed = json_lines(run_script("api_functions", FLOWBRIDGE_ALLOWED_HOSTS=f"localhost:{port}", **other_host))
    assert allowed["report"]["workflowStatus"]["status"] == "succeeded", allowed["report"]["messages"]["error"]
    assert allowed["result"] == {"answer": f"echo: {PROMPT}"}


def test_the_kernel_example_runs_its_own_schema_format(upstream: FakeUpstream) -> None:
    lines = run_script("kernel_example", settle=True, LLM_BASE_URL=upstream.base_url)
    assert re.fullmatch(r"Task ID: [0-9a-f-]{36}", lines[0])
    # FlowGram's TaskResult answers nothing until the task has ended, and the example asks at once
    assert lines[1] in ("Task Result: None", "Task Result: {}")
    assert lines[2].startswith("Task Report: {'id': ") and NORMALISED.replace("'", "\\'") in lines[2]
    settled = json.loads(lines[3])["settled"]
    assert settled == {"status": "succeeded", "outputs": {}, "warnings": [NORMALISED + EMPTY_START], "errors": []}


def test_the_usage_example_runs_on_the_application_instance(upstream: FakeUpstream) -> None:
    lines = run_script("application_usage", settle=True, LLM_BASE_URL=upstream.base_url)
    settled = json.loads(lines[-1])["settled"]
    # app.run({"schema", "inputs"}) took the seed's dict; its app.cancel(task_id) may come before the end
    assert settled["status"] in ("succeeded", "canceled")
    assert settled == {**settled, "outputs": {}, "warnings": [NORMALISED + EMPTY_START], "errors": []}


def test_the_faqs_class_based_custom_node_runs(upstream: FakeUpstream) -> None:
    out = json_lines(run_script("custom_node", LLM_BASE_URL=upstream.base_url))
    assert out["result"] == {"answer": "处理结果", "seen": "echo_0 got hello"}
    assert out["report"]["workflowStatus"]["status"] == "succeeded"
    custom = out["report"]["reports"]["custom_0"]["snapshots"][0]
    assert custom["inputs"] == {"text": "hello"} and custom["outputs"] == {"result": "处理结果"}


# -- the pieces, in process ------------------------------------------------------------------------


def kernel_node(node_id: str, node_type: str, outs: list[str] | None = None, **rest: Any) -> dict[str, Any]:
    ports = {"out": [{"id": p, "type": "out"} for p in outs or ["out"]], "in": [{"id": "in", "type": "in"}]}
    return {"id": node_id, "type": node_type, "position": {"x": 1, "y": 2}, "ports": ports, **rest}


def kernel_edge(source: str, target: str, port: str = "out") -> dict[str, Any]:
    return {"id": f"{source}-{target}", "source": {"nodeId": source, "portId": port},
            "target": {"nodeId": target, "portId": "in"}}


def test_normalise_keeps_a_port_only_where_a_node_has_several_and_leaves_flowgram_alone() -> None:
    condition = {"conditions": [{"key": "if_a", "value": {"left": {"type": "constant", "content": 1},
                                                         "operator": "eq", "right": {"type": "constant", "content": 1}}}]}
    schema = {"nodes": [kernel_node("start", "start"), kernel_node("cond", "condition", ["if_a", "else"], data=condition),
                        kernel_node("end", "end", [])],
              "edges": [kernel_edge("start", "cond"), kernel_edge("cond", "end", "if_a"), kernel_edge("cond", "end", "else")]}
    before = json.dumps(schema)
    normalised, warnings = normalise_schema(schema)
    assert json.dumps(schema) == before  # the caller's dict is not changed
    assert warnings == [NORMALISED.replace("2 nodes, 1 edge", "3 nodes, 3 edges") + EMPTY_START]
    assert normalised["edges"] == [{"sourceNodeID": "start", "targetNodeID": "cond"},
                                   {"sourceNodeID": "cond", "targetNodeID": "end", "sourcePortID": "if_a"},
                                   {"sourceNodeID": "cond", "targetNodeID": "end", "sourcePortID": "else"}]
    assert normalised["nodes"][0] == {"id": "start", "type": "start", "meta": {"position": {"x": 1, "y": 2}},
                                      "data": {"outputs": {"type": "object", "properties": {}}}}
    assert normalised["nodes"][1]["data"] == condition and "ports" not in normalised["nodes"][1]
    flowgram = {"nodes": [{"id": "s", "type": "start", "meta": {}, "data": {}}], "edges": []}
    assert normalise_schema(flowgram) == (flowgram, [])


def test_normalise_reaches_loop_bodies() -> None:
    loop = {"id": "loop", "type": "loop", "meta": {"position": {"x": 0, "y": 0}}, "data": {},
            "blocks": [kernel_node("bs", "block-start"), kernel_node("be", "block-end")],
            "edges": [kernel_edge("bs", "be")]}
    normalised, warnings = normalise_schema({"nodes": [loop], "edges": []})
    assert warnings and normalised["nodes"][0]["edges"] == [{"sourceNodeID": "bs", "targetNodeID": "be"}]
    assert [b["meta"] for b in normalised["nodes"][0]["blocks"]] == [{"position": {"x": 1, "y": 2}}] * 2


def test_a_class_executor_must_give_an_object_of_outputs() -> None:
    class Wrong(BaseNodeExecutor):
        async def execute(self, node: Any, context: Any) -> Any:
            return ["not", "outputs"]

    class Quiet(BaseNodeExecutor):
        async def execute(self, node: Any, context: Any) -> Any:
            return None  # and sets nothing: no outputs

    register_node_executor("seed003-wrong", Wrong())
    register_node_executor("seed003-quiet", Quiet())
    runtime = WorkflowRuntime(MemoryTaskStore(), RuntimeSettings())
    try:
        app = WorkflowApplication(runtime)
        for node_type, status, error in (("seed003-wrong", "failed", "Wrong.execute returned list, not an object of "
                                          "outputs"), ("seed003-quiet", "succeeded", None)):
            schema = {"nodes": [kernel_node("start", "start"), kernel_node("x", node_type), kernel_node("end", "end")],
                      "edges": [kernel_edge("start", "x"), kernel_edge("x", "end")]}
            record = runtime.get(app.run(schema, {}, wait=30))
            assert record is not None and record.status == status
            assert [m["message"] for m in record.report["messages"]["error"]] == ([error] if error else [])
    finally:
        runtime.shutdown()
    assert asyncio.run(Quiet()(FakeContext())) == NodeResult({})


class FakeContext:
    node = None
    inputs: dict[str, Any] = {}


def test_settings_from_the_environment_name_a_bad_variable() -> None:
    settings = RuntimeSettings.from_env({"LLM_BASE_URL": "http://llm.internal:9/v1", "LLM_MODEL": "m",
                                         "FLOWBRIDGE_ALLOWED_HOSTS": "a.example, B.example:8080"})
    assert settings == RuntimeSettings(allowed_hosts=frozenset({"a.example", "b.example:8080"}),
                                       llm_base_url="http://llm.internal:9/v1", llm_model="m")
    with pytest.raises(WorkflowConfigError, match="FLOWBRIDGE_ALLOWED_HOSTS entries are host or host:port"):
        RuntimeSettings.from_env({"FLOWBRIDGE_ALLOWED_HOSTS": "http://a.example/"})
    with pytest.raises(WorkflowConfigError, match="LLM_BASE_URL"):
        RuntimeSettings.from_env({"LLM_BASE_URL": "ftp://x"})


def test_one_class_executor_serves_nodes_running_at_once() -> None:
    """Outputs set by one node's run never leak into another's, however their awaits interleave."""

    class Slow(BaseNodeExecutor):
        async def execute(self, node: Any, context: Any) -> None:
            inputs = await self._get_node_inputs(node, context)
            await asyncio.sleep(0 if node.id == "a" else 0.01)
            await self._set_node_outputs(node, {"out": f"{node.id}:{inputs['n']}"}, context)
            await asyncio.sleep(0.05 if node.id == "a" else 0)  # "b" sets its outputs and ends while "a" waits

    register_node_executor("seed003-slow", Slow())
    string = {"type": "object", "properties": {"out": {"type": "string"}}}

    def slow(node_id: str, n: int) -> dict[str, Any]:
        return {"id": node_id, "type": "seed003-slow", "meta": {}, "data": {
            "inputsValues": {"n": {"type": "constant", "content": n}},
            "inputs": {"type": "object", "properties": {"n": {"type": "integer"}}}, "outputs": string}}

    ref = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
    schema = {"nodes": [{"id": "s", "type": "start", "meta": {}, "data": {"outputs": {"type": "object"}}},
                        slow("a", 1), slow("b", 2),
                        {"id": "e", "type": "end", "meta": {}, "data": {"inputs": ref, "inputsValues": {
                            "a": {"type": "ref", "content": ["a", "out"]}, "b": {"type": "ref", "content": ["b", "out"]}}}}],
              "edges": [{"sourceNodeID": "s", "targetNodeID": "a"}, {"sourceNodeID": "s", "targetNodeID": "b"},
                        {"sourceNodeID": "a", "targetNodeID": "e"}, {"sourceNodeID": "b", "targetNodeID": "e"}]}
    runtime = WorkflowRuntime(MemoryTaskStore(), RuntimeSettings())
    try:
        record = runtime.get(WorkflowApplication(runtime).run(schema, {}, wait=30))
    finally:
        runtime.shutdown()
    assert record is not None and record.status == "succeeded", record.report["messages"]["error"]
    assert record.outputs == {"a": "a:1", "b": "b:2"}
