"""How a loop's cost grows with its iterations: it should grow linearly (issue 11).

One task per size: start -> loop over ``items`` (block-start -> one trivial node ->
block-end, the loop collecting the node's output) -> end, run in process by a
:class:`~workflow.WorkflowRuntime` on a :class:`~workflow.store.SQLiteTaskStore` in a
temporary directory (progress saved as in the server: every 0.1 s at most). The
trivial node is a registered Python executor echoing its input (``--body echo``, the
engine's own cost) or a JavaScript ``code`` node (``--body code``: QuickJS, about
1 ms an iteration more). ``Limits.max_loop_iterations`` (``FLOWBRIDGE_MAX_LOOP_ITERATIONS``
in the server, 10,000 by default) is raised to the largest size.

Reported per size: the run's seconds as the store recorded them (``finished_at -
started_at``), µs per iteration, the seconds to read the finished task back from the
store (its report holds a snapshot per iteration) and the report's size. Linear growth
means a flat µs per iteration.

Run: ``.venv/bin/python bench/loops.py`` (about a minute); ``--sizes 1000,10000``
chooses the sizes. Writes ``bench/results/loops.json``; exits 0 whatever it measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import machine, table, write_json  # noqa: E402
from workflow import Limits, NodeResult, RuntimeSettings, WorkflowRuntime, register_node_executor  # noqa: E402
from workflow.store import SQLiteTaskStore  # noqa: E402

ECHO_SCRIPT = "function main({params}) { return {y: params.x}; }"


async def _echo(ctx: Any) -> NodeResult:
    return NodeResult({"y": ctx.inputs.get("x")})


def _node(node_id: str, node_type: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, "meta": {"position": {"x": 0, "y": 0}}, "data": data}


def _edge(source: str, target: str) -> dict[str, str]:
    return {"sourceNodeID": source, "targetNodeID": target}


def _ref(*path: str) -> dict[str, Any]:
    return {"type": "ref", "content": list(path)}


def loop_schema(body_type: str) -> dict[str, Any]:
    """start -> loop_0 [block-start -> body -> block-end] -> end; outputs ``ys``, one per item."""
    body = _node("body", body_type, inputs={"type": "object", "properties": {"x": {"type": "integer"}}},
                 inputsValues={"x": _ref("loop_0_locals", "item")},
                 outputs={"type": "object", "properties": {"y": {"type": "integer"}}})
    if body_type == "code":
        body["data"]["script"] = {"language": "javascript", "content": ECHO_SCRIPT}
    loop = _node("loop_0", "loop", loopFor=_ref("start_0", "items"), loopOutputs={"ys": _ref("body", "y")})
    loop["blocks"] = [_node("bs", "block-start"), body, _node("be", "block-end")]
    loop["edges"] = [_edge("bs", "body"), _edge("body", "be")]
    start = _node("start_0", "start", outputs={"type": "object", "properties": {
        "items": {"type": "array", "items": {"type": "integer"}}}})
    end = _node("end_0", "end", inputs={"type": "object", "properties": {"ys": {"type": "array"}}},
                inputsValues={"ys": _ref("loop_0", "ys")})
    return {"nodes": [start, loop, end], "edges": [_edge("start_0", "loop_0"), _edge("loop_0", "end_0")]}


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def measure(size: int, body_type: str, limit: int, directory: Path) -> dict[str, Any]:
    """Run one loop of ``size`` iterations; what it cost."""
    store = SQLiteTaskStore(directory / f"loop-{size}.db")
    runtime = WorkflowRuntime(store, RuntimeSettings(), limits=Limits(deadline=None, max_loop_iterations=limit))
    try:
        task_id = runtime.run(json.dumps(loop_schema(body_type)), {"items": list(range(size))})
        record = runtime.wait(task_id, 3600)
        started = time.perf_counter()
        record = store.get(task_id)
        read = time.perf_counter() - started
    finally:
        runtime.shutdown()
        store.close()
    assert record is not None
    ok = record.status == "succeeded" and len((record.outputs or {}).get("ys") or []) == size
    seconds = (record.finished_at or time.time()) - (record.started_at or record.created_at)
    return {"iterations": size, "status": record.status if ok else f"{record.status}: {record.error}",
            "seconds": seconds, "us_per_iteration": seconds / size * 1e6, "read_seconds": read,
            "report_mb": len(json.dumps(record.report)) / 1e6, "loadavg": _loadavg()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated iteration counts")
    parser.add_argument("--body", choices=("echo", "code"), default="echo", help="the loop body's one node")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    register_node_executor("bench-echo", _echo)
    body_type = "bench-echo" if args.body == "echo" else "code"
    print(f"loop of start -> loop[{args.body}] -> end on SQLite; load average {_loadavg()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="flowbridge-loops-") as tmp:
        for size in sizes:
            row = measure(size, body_type, max(sizes + [10_000]), Path(tmp))
            rows.append(row)
            print(f"  {size} iterations: {row['seconds']:.2f} s ({row['status']})", flush=True)
    print(table(["iterations", "status", "run s", "µs/iteration", "read back s", "report MB", "load avg"],
                [[r["iterations"], r["status"], r["seconds"], r["us_per_iteration"], r["read_seconds"],
                  r["report_mb"], r["loadavg"]] for r in rows]))
    path = write_json("loops.json", {"machine": machine(), "body": args.body, "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
