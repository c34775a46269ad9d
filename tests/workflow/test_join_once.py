"""A join node runs once per run (issue 12): however close together its predecessors finish.

Each branch ends in two next nodes (the join and a side node), so the engine hands the join to
several concurrent paths; the branches finish in the same event-loop tick. Before the fix the join
and everything after it ran 2-20 times in most runs. An ``http`` node after the join counts the
requests on a real local server: a duplicated side effect is what the fix prevents.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.workflow.builders import edge, node, obj, ref
from workflow import Limits, NodeResult, RuntimeSettings, WorkflowRuntime, register_node_executor
from workflow.store import MemoryTaskStore

RUNS = 200
BRANCHES = 20
JOIN_RUNS: Counter[str] = Counter()  # run id -> how many times the join executor ran


async def _tick(ctx: Any) -> NodeResult:
    """A branch step: yields once, so every branch finishes in the same event-loop tick."""
    await asyncio.sleep(0)
    return NodeResult({})


async def _join(ctx: Any) -> NodeResult:
    JOIN_RUNS[ctx.inputs["run"]] += 1
    return NodeResult({"run": ctx.inputs["run"]})


register_node_executor("test-tick", _tick)
register_node_executor("test-join", _join)


class _Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:  # type: ignore[attr-defined]
            self.server.hits[json.loads(body)["run"]] += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def counter() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    server.hits = Counter()  # type: ignore[attr-defined]
    server.lock = threading.Lock()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def runtime(counter: ThreadingHTTPServer) -> Iterator[WorkflowRuntime]:
    settings = RuntimeSettings(allowed_hosts=frozenset({f"127.0.0.1:{counter.server_port}"}))
    runtime = WorkflowRuntime(MemoryTaskStore(), settings, limits=Limits(deadline=60))
    yield runtime
    runtime.shutdown()


def _http(port: int) -> dict[str, Any]:
    return node("http_0", "http", api={"method": "POST", "url": {"type": "constant",
                                                               "content": f"http://127.0.0.1:{port}/hit"}},
                body={"bodyType": "JSON", "json": {"type": "template", "content": '{"run": "{{join.run}}"}'}},
                headers={}, params={}, timeout={"timeout": 10000, "retryTimes": 1},
                outputs=obj(body={"type": "string"}, statusCode={"type": "integer"}))


def _fan_in(first: str, join_inputs_from: str, lengths: list[int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Branches of the given lengths from ``first`` into a join; each branch's last node also feeds a
    side node (so the join is one of two next nodes). Returns (nodes, edges) without the join itself."""
    nodes, edges = [], []
    for b, length in enumerate(lengths):
        previous = first
        for step in range(length):
            nodes.append(node(f"b{b}_{step}", "test-tick"))
            edges.append(edge(previous, f"b{b}_{step}"))
            previous = f"b{b}_{step}"
        nodes.append(node(f"side{b}", "test-tick"))
        edges += [edge(previous, "join"), edge(previous, f"side{b}")]
    return nodes, edges


def _join_node(run_ref: dict[str, Any]) -> dict[str, Any]:
    return node("join", "test-join", inputs=obj(run={"type": "string"}), inputsValues={"run": run_ref},
                outputs=obj(run={"type": "string"}))


def _schema(port: int, lengths: list[int]) -> dict[str, Any]:
    start = node("start_0", "start", outputs=obj(run={"type": "string"}))
    end = node("end_0", "end", inputs=obj(), inputsValues={})
    nodes, edges = _fan_in("start_0", "start_0", lengths)
    nodes += [start, _join_node(ref("start_0", "run")), _http(port), end]
    edges += [edge("join", "http_0"), edge("http_0", "end_0")] + [edge(f"side{b}", "end_0") for b in range(len(lengths))]
    return {"nodes": nodes, "edges": edges}


def _run_all(runtime: WorkflowRuntime, schema: dict[str, Any], runs: int) -> list[str]:
    """Run ``runs`` tasks, ``runtime.max_running`` at a time; each must succeed."""
    text = json.dumps(schema)
    names = [f"r{i}" for i in range(runs)]
    for first in range(0, runs, runtime.max_running):
        ids = [runtime.run(text, {"run": name}) for name in names[first:first + runtime.max_running]]
        for task_id in ids:
            record = runtime.wait(task_id, 60)
            assert record is not None and record.status == "succeeded", record and record.report["messages"]
    return names


@pytest.mark.parametrize("lengths", [[1] * BRANCHES, [1 + b % 4 for b in range(BRANCHES)]],
                         ids=["equal-branches", "branches-of-different-lengths"])
def test_a_join_after_20_branches_runs_once_and_its_http_node_sends_one_request(
        runtime: WorkflowRuntime, counter: ThreadingHTTPServer, lengths: list[int]) -> None:
    JOIN_RUNS.clear()
    counter.hits.clear()  # type: ignore[attr-defined]
    runs = _run_all(runtime, _schema(counter.server_port, lengths), RUNS)
    assert {r: JOIN_RUNS[r] for r in runs if JOIN_RUNS[r] != 1} == {}
    assert {r: counter.hits[r] for r in runs if counter.hits[r] != 1} == {}  # type: ignore[attr-defined]


def test_a_join_inside_a_loop_body_runs_once_per_iteration(runtime: WorkflowRuntime) -> None:
    JOIN_RUNS.clear()
    branches, edges = _fan_in("bs", "bs", [1] * BRANCHES)
    loop = node("loop_0", "loop", loopFor=ref("start_0", "items"))
    loop["blocks"] = [node("bs", "block-start"), *branches, _join_node(ref("loop_0_locals", "item")),
                      node("be", "block-end")]
    loop["edges"] = edges + [edge("join", "be")] + [edge(f"side{b}", "be") for b in range(BRANCHES)]
    start = node("start_0", "start", outputs=obj(items={"type": "array", "items": {"type": "string"}}))
    end = node("end_0", "end", inputs=obj(), inputsValues={})
    schema = {"nodes": [start, loop, end], "edges": [edge("start_0", "loop_0"), edge("loop_0", "end_0")]}
    items = [f"it{i}" for i in range(20)]
    record = runtime.wait(runtime.run(json.dumps(schema), {"items": items}), 60)
    assert record is not None and record.status == "succeeded", record and record.report["messages"]
    assert {item: JOIN_RUNS[item] for item in items} == {item: 1 for item in items}
