"""FlowGram's own test cases (tests/workflow/flowgram) run through our runtime.

The LLM node is replaced, through the public ``register_node_executor``, by
FlowGram's mock: the same input checks, 10 ms, then a text naming the inputs.
(``test_conformance_llm.py`` runs the same LLM cases through the real llm node.)
HTTP cases run our real http executor against a local server that answers
like FlowGram's mocked ``fetch``; the host in inputs and expectations is
rewritten to that server's address.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from workflow import NodeResult, RuntimeSettings, WorkflowRuntime, get_node_executor, register_node_executor
from workflow.nodes.llm import llm_inputs
from workflow.report import mask_secrets
from workflow.store import MemoryTaskStore
from workflow.values import js_number_text

CONFORMANCE = Path(__file__).resolve().parent / "flowgram"  # FlowGram's own cases, copied in: see its README.md
EXPECTED = json.loads((CONFORMANCE / "expected-results.json").read_text())
CASES = {case["id"]: case for case in EXPECTED["cases"]}


async def mock_llm(ctx: Any) -> NodeResult:
    """FlowGram's MockLLMExecutor: checkInputs, delay(10), then describe the inputs."""
    inputs = llm_inputs(ctx)
    await asyncio.sleep(0.01)
    system = inputs.get("systemPrompt")
    system_text = "undefined" if system is None else str(system)
    return NodeResult({"result": (
        f"Hi, I am an AI model, my name is {inputs['modelName']}, temperature is "
        f"{js_number_text(inputs['temperature'])}, system prompt is \"{system_text}\", "
        f"prompt is \"{inputs['prompt']}\""
    )})


class FetchMock(BaseHTTPRequestHandler):
    """Answers like the upstream tests' fetch mock: echo url, json and headers."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        status = int(self.headers.get("X-Test-Status") or 200)
        payload = self.headers.get("X-Test-Body") or json.dumps({"url": self.server.public_url + self.path,  # type: ignore[attr-defined]
                              "json": json.loads(body) if body else {},
                              "headers": {"Content-Type": self.headers.get("Content-Type")}},
                             separators=(",", ":"))
        data = payload.encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def fetch_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FetchMock)
    server.public_url = "https://api.example.com"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class RecordingStore(MemoryTaskStore):
    """Remembers each task's status when it was created: FlowGram's "status right after invoke"."""

    def __init__(self) -> None:
        super().__init__()
        self.created: dict[str, str] = {}

    def create(self, record: Any) -> None:
        self.created[record.task_id] = record.status
        super().create(record)


@pytest.fixture
def runtime(fetch_server: ThreadingHTTPServer) -> Iterator[WorkflowRuntime]:
    original = get_node_executor("llm")
    register_node_executor("llm", mock_llm)
    port = fetch_server.server_address[1]
    settings = RuntimeSettings(allowed_hosts=frozenset({"mock-ai-url", f"127.0.0.1:{port}"}))
    runtime = WorkflowRuntime(RecordingStore(), settings)
    yield runtime
    runtime.shutdown()
    register_node_executor("llm", original)


def run_case(runtime: WorkflowRuntime, schema: dict[str, Any], inputs: dict[str, Any]) -> tuple[str, Any]:
    original = copy.deepcopy(schema)
    task_id = runtime.run(json.dumps(schema), inputs)
    after = runtime.store.created[task_id]  # type: ignore[attr-defined]
    record = runtime.wait(task_id, 30)
    assert schema == original  # the caller's schema is never changed
    return after, record


def observed(record: Any) -> dict[str, Any]:
    report = record.report
    snapshots = [
        {k: v for k, v in snap.items() if k != "id"}
        for node in report["reports"].values() for snap in node["snapshots"]
    ]
    return {
        "workflowStatus": report["workflowStatus"]["status"],
        "outputs": record.outputs or {},
        "nodeStatuses": {node_id: node["status"] for node_id, node in report["reports"].items()},
        "snapshotCounts": {node_id: len(node["snapshots"]) for node_id, node in report["reports"].items()},
        "snapshots": snapshots,
        "errorMessages": [{k: v for k, v in m.items() if k in ("nodeID", "message")}
                          for m in report["messages"]["error"]],
    }


def by_creation(snapshots: list[dict[str, Any]], expected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our report groups snapshots by node; FlowGram's list is in creation order: compare per node."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for snap in snapshots:
        grouped.setdefault(snap["nodeID"], []).append(snap)
    ordered = []
    for snap in expected:
        ordered.append(grouped[snap["nodeID"]].pop(0) if grouped.get(snap["nodeID"]) else None)
    return ordered


NON_HTTP = [case_id for case_id, case in CASES.items() if not case_id.startswith("http")]


@pytest.mark.parametrize("case_id", NON_HTTP)
def test_run_case(runtime: WorkflowRuntime, case_id: str) -> None:
    case = CASES[case_id]
    schema = json.loads((CONFORMANCE / case["fixture"]).read_text())
    expect = case["expect"]
    after, record = run_case(runtime, schema, case["inputs"])
    got = observed(record)
    assert after == expect["statusAfterInvoke"]
    assert got["workflowStatus"] == expect["workflowStatus"]
    assert got["outputs"] == expect["outputs"]
    assert got["nodeStatuses"] == expect["nodeStatuses"]
    assert got["snapshotCounts"] == expect["snapshotCounts"]
    if "snapshots" in expect:
        wanted = mask_secrets(expect["snapshots"])
        assert by_creation(got["snapshots"], wanted) == wanted
    if "errorMessages" in expect:
        assert got["errorMessages"] == expect["errorMessages"]


HTTP = [case_id for case_id in CASES if case_id.startswith("http") and case_id != "http_network_error"]


@pytest.mark.parametrize("case_id", HTTP)
def test_http_case(runtime: WorkflowRuntime, fetch_server: ThreadingHTTPServer, case_id: str) -> None:
    case = CASES[case_id]
    port = fetch_server.server_address[1]
    local = f"127.0.0.1:{port}"
    text = (CONFORMANCE / case["fixture"]).read_text().replace("https://", "http://")
    schema = json.loads(text)
    host = case["inputs"]["host"]
    inputs = {**case["inputs"], "host": local}
    expect = json.loads(json.dumps(case["expect"]).replace(host, local).replace("https://", "http://"))
    status = expect["outputs"]["code"]
    if status != 200:  # the upstream mock's canned answer for this case
        canned = {"X-Test-Status": str(status), "X-Test-Body": expect["outputs"]["res"]}
        for node in schema["nodes"]:
            if node["type"] == "http":
                node["data"]["headersValues"] = {k: {"type": "constant", "content": v} for k, v in canned.items()}
                node["data"]["headers"] = {"type": "object", "properties": {k: {"type": "string"} for k in canned}}
    fetch_server.public_url = f"http://{local}"  # type: ignore[attr-defined]
    after, record = run_case(runtime, schema, inputs)
    got = observed(record)
    assert after == expect["statusAfterInvoke"]
    assert got["workflowStatus"] == expect["workflowStatus"], got["errorMessages"]
    assert got["outputs"] == expect["outputs"]
    assert got["nodeStatuses"] == expect["nodeStatuses"]


def test_http_network_error_fails_the_node(runtime: WorkflowRuntime) -> None:
    """FlowGram's case mocks fetch to return nothing ("Cannot read properties of undefined"); a real
    unreachable server fails the same node, with our own message."""
    case = CASES["http_network_error"]
    schema = json.loads((CONFORMANCE / case["fixture"]).read_text().replace("https://", "http://"))
    after, record = run_case(runtime, schema, {"host": "127.0.0.1:9", "path": "/x"})
    got = observed(record)
    assert got["workflowStatus"] == "failed" and got["nodeStatuses"] == case["expect"]["nodeStatuses"]
    assert got["errorMessages"][0]["nodeID"] == "http_0"


@pytest.mark.parametrize("case", EXPECTED["validationCases"], ids=lambda c: c["id"])
def test_validation_case(runtime: WorkflowRuntime, case: dict[str, Any]) -> None:
    from workflow.validation import validate_task

    errors = validate_task(case["schema"], case.get("inputs") or {})
    expected = case["expected"]
    assert (not errors) == expected["valid"]
    if "errors" in expected:
        assert errors == expected["errors"]


def test_loop_over_object_entries(runtime: WorkflowRuntime) -> None:
    case = EXPECTED["upstreamNewer_loopObjectEntries"]
    schema = json.loads((CONFORMANCE / case["fixture"]).read_text())
    _, record = run_case(runtime, schema, case["inputs"])
    assert record.status == case["expect"]["workflowStatus"]
    assert record.outputs == case["expect"]["outputs"]


@pytest.mark.parametrize("case", EXPECTED["upstreamNewer_conditionString"]["cases"],
                         ids=lambda c: f"{c['operator']}-{c['text']!r}")
def test_string_conditions(runtime: WorkflowRuntime, case: dict[str, Any]) -> None:
    schema = json.loads((CONFORMANCE / "branch.json").read_text())
    text_schema: dict[str, Any] = {"type": "string"}
    if case["text"] != "__undefined__":
        text_schema["default"] = case["text"]
    schema["globalVariable"] = {"type": "object", "properties": {"text": text_schema}}
    for node in schema["nodes"]:
        if node["type"] == "condition":
            condition = {"key": "if_1", "value": {"left": {"type": "ref", "content": ["global", "text"]},
                                                  "operator": case["operator"]}}
            if "right" in case:
                condition["value"]["right"] = case["right"]
            node["data"]["conditions"] = [condition]
    _, record = run_case(runtime, schema, {"model_id": 1, "prompt": "hello"})
    branch = next(s["branch"] for n in record.report["reports"].values() for s in n["snapshots"] if "branch" in s)
    assert branch == case["expectedBranchUpstream"]
