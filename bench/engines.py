"""Our workflow engine against FlowGram's published one (runtime-js 1.0.9 under Node), same workflows.

Four workflows, built only of nodes both engines ship (no LLM, no code sandbox: the engines' own cost):

- ``chain``: start -> 1,000 condition nodes in a row (each tests ``start_0.n >= 0`` and goes on) -> end;
- ``fanout``: start -> 50 parallel condition nodes -> one end node joining them all;
- ``loop``: a loop over 10,000 items (block-start -> block-end), collecting every item;
- ``conditions``: 100 diamonds in a row: a condition of four rules (string, integer, boolean, array
  operators) picks one of five pass-through nodes (a port each, ``else`` too), the other four are
  skipped, a join follows.

Each engine runs in its own process (ours: this script with ``--child``, a :class:`~workflow.WorkflowRuntime`
on the in-memory store; theirs: ``tests/flowgram_node/run.mjs``), one workflow per process, ``--repeats``
runs back to back (the first is a warm-up). Reported per workflow and engine: median ms per run, ms per node
run (snapshots taken), tasks/s (1,000 / median ms: one task at a time), the process's peak RSS, and our
figure divided by Node's. Both engines' outputs and statuses must agree, or the row says so.

Run: ``.venv/bin/python bench/engines.py`` (about a minute; needs ``node`` and ``npm ci`` in
tests/flowgram_node). Writes ``bench/results/engines.json``; exits 0 whatever it measured.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import ROOT, loadavg, machine, table, write_json  # noqa: E402

HARNESS = ROOT / "tests" / "flowgram_node" / "run.mjs"


def _node(node_id: str, node_type: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, "meta": {"position": {"x": 0, "y": 0}}, "data": data}


def _edge(source: str, target: str, port: str | None = None) -> dict[str, Any]:
    edge: dict[str, Any] = {"sourceNodeID": source, "targetNodeID": target}
    if port:
        edge["sourcePortID"] = port
    return edge


def _ref(*path: str) -> dict[str, Any]:
    return {"type": "ref", "content": list(path)}


def _const(value: Any) -> dict[str, Any]:
    return {"type": "constant", "content": value}


def _rule(key: str, left: list[str], operator: str, right: Any = None) -> dict[str, Any]:
    value: dict[str, Any] = {"left": _ref(*left), "operator": operator}
    if right is not None:
        value["right"] = _const(right)
    return {"key": key, "value": value}


START_OUTPUTS = {"type": "object", "properties": {
    "n": {"type": "integer"}, "s": {"type": "string"}, "b": {"type": "boolean"},
    "items": {"type": "array", "items": {"type": "integer"}}}}


def _start_end(end_ref: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    start = _node("start_0", "start", outputs=START_OUTPUTS)
    end = _node("end_0", "end", inputs={"type": "object", "properties": {"out": {"type": "integer"}}},
                inputsValues={"out": _ref(*end_ref)})
    return start, end


def _pass(node_id: str) -> dict[str, Any]:
    """A condition with no rules: it always takes ``else`` (a pass-through both engines run cheaply)."""
    return _node(node_id, "condition", conditions=[])


def chain(length: int = 1000) -> dict[str, Any]:
    start, end = _start_end(["start_0", "n"])
    nodes, edges, previous, port = [start], [], "start_0", None
    for i in range(length):
        nodes.append(_node(f"c_{i}", "condition", conditions=[_rule("if_0", ["start_0", "n"], "gte", 0)]))
        edges.append(_edge(previous, f"c_{i}", port))
        previous, port = f"c_{i}", "if_0"
    edges.append(_edge(previous, "end_0", port))
    return {"nodes": nodes + [end], "edges": edges}


def fanout(width: int = 50) -> dict[str, Any]:
    start, end = _start_end(["start_0", "n"])
    nodes, edges = [start], []
    for i in range(width):
        nodes.append(_pass(f"b_{i}"))
        edges += [_edge("start_0", f"b_{i}"), _edge(f"b_{i}", "end_0", "else")]
    return {"nodes": nodes + [end], "edges": edges}


def loop(_: int = 0) -> dict[str, Any]:
    start, end = _start_end(["start_0", "n"])
    end["data"]["inputs"]["properties"]["items"] = {"type": "array", "items": {"type": "integer"}}
    end["data"]["inputsValues"]["items"] = _ref("loop_0", "items")
    body = [_node("bs_0", "block-start"), _node("be_0", "block-end")]
    loop_node = {**_node("loop_0", "loop", loopFor=_ref("start_0", "items"),
                         loopOutputs={"items": _ref("loop_0_locals", "item")}),
                 "blocks": body, "edges": [_edge("bs_0", "be_0")]}
    return {"nodes": [start, loop_node, end], "edges": [_edge("start_0", "loop_0"), _edge("loop_0", "end_0")]}


def conditions(diamonds: int = 100) -> dict[str, Any]:
    start, end = _start_end(["start_0", "n"])
    nodes, edges, previous, port = [start], [], "start_0", None
    for i in range(diamonds):
        rules = [_rule("if_0", ["start_0", "s"], "eq", f"v{i % 7}"),
                 _rule("if_1", ["start_0", "n"], "gt", i % 5),
                 _rule("if_2", ["start_0", "b"], "is_true"),
                 _rule("if_3", ["start_0", "items"], "is_not_empty")]
        nodes.append(_node(f"d_{i}", "condition", conditions=rules))
        edges.append(_edge(previous, f"d_{i}", port))
        for branch, target in (("if_0", "a"), ("if_1", "b"), ("if_2", "c"), ("if_3", "d"), ("else", "e")):
            nodes.append(_pass(f"d_{i}_{target}"))
            edges += [_edge(f"d_{i}", f"d_{i}_{target}", branch), _edge(f"d_{i}_{target}", f"j_{i}", "else")]
        nodes.append(_pass(f"j_{i}"))
        previous, port = f"j_{i}", "else"
    edges.append(_edge(previous, "end_0", port))
    return {"nodes": nodes + [end], "edges": edges}


WORKFLOWS = {
    "chain": (chain, {"n": 2, "s": "v0", "b": False, "items": []}),
    "fanout": (fanout, {"n": 2, "s": "v0", "b": False, "items": []}),
    "loop": (loop, {"n": 2, "s": "v0", "b": False, "items": list(range(10_000))}),
    "conditions": (conditions, {"n": 2, "s": "v3", "b": True, "items": [1]}),
}


def case(name: str) -> dict[str, Any]:
    build, inputs = WORKFLOWS[name]
    return {"id": name, "schema": build(), "inputs": inputs, "timeoutMs": 600_000}


def _summary(name: str, times_ms: list[float], reports: list[dict[str, Any]], outputs: Any,
             max_rss_kb: int) -> dict[str, Any]:
    report = reports[-1] or {}
    runs = sum(len(n.get("snapshots") or []) for n in (report.get("reports") or {}).values())
    median = statistics.median(times_ms[1:] or times_ms)
    return {"workflow": name, "status": (report.get("workflowStatus") or {}).get("status"),
            "outputs_digest": json.dumps(outputs, sort_keys=True)[:200], "outputs_size": len(json.dumps(outputs)),
            "node_runs": runs, "median_ms": median, "ms_per_node": median / max(runs, 1),
            "tasks_per_s": 1000 / median if median else None, "peak_rss_mb": max_rss_kb / 1024,
            "runs_ms": times_ms}


def child_ours(name: str, repeats: int) -> dict[str, Any]:
    """Ours, in this (child) process: ``repeats`` runs of one workflow."""
    from workflow import Limits, WorkflowRuntime

    runtime = WorkflowRuntime(limits=Limits(deadline=None, max_loop_iterations=10_000))
    item = case(name)
    text = json.dumps(item["schema"])
    times, reports, outputs = [], [], None
    try:
        for _ in range(repeats):
            began = time.perf_counter()
            task_id = runtime.run(text, item["inputs"])
            record = runtime.wait(task_id, 600)
            times.append((time.perf_counter() - began) * 1000)
            reports.append(record.report if record else {})
            outputs = record.outputs if record else None
    finally:
        runtime.shutdown()
    return _summary(name, times, reports[-1:], outputs, _peak_rss_kb())


def _peak_rss_kb() -> int:
    """This process's peak RSS: VmHWM (``ru_maxrss`` also counts the parent's size before exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def theirs(name: str, repeats: int) -> dict[str, Any]:
    """runtime-js under Node: ``repeats`` runs of one workflow in one process."""
    text = "\n".join(json.dumps({**case(name), "id": f"{name}-{i}"}) for i in range(repeats))
    proc = subprocess.run(["node", str(HARNESS)], input=text, capture_output=True, text=True, check=True,
                          cwd=HARNESS.parent, timeout=3600)
    answers = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return _summary(name, [a["timeMs"] for a in answers], [answers[-1].get("report")], answers[-1].get("result"),
                    max(a["maxRssKB"] for a in answers))


def ours(name: str, repeats: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--child", name, "--repeats", str(repeats)],
                          capture_output=True, text=True, check=True, cwd=ROOT, timeout=3600)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=6, help="runs per workflow and engine (first: warm-up)")
    parser.add_argument("--workflows", default=",".join(WORKFLOWS), help="comma-separated: " + ", ".join(WORKFLOWS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_ours(args.child, args.repeats)))
        return 0
    if not (HARNESS.parent / "node_modules" / "@flowgram.ai" / "runtime-js").exists():
        print("FlowGram's engine is not installed: run `npm ci` in tests/flowgram_node", file=sys.stderr)
        return 0
    print(f"ours vs runtime-js 1.0.9 under Node, {args.repeats} runs each; load average {loadavg()}", flush=True)
    rows = []
    for name in [w for w in args.workflows.split(",") if w]:
        a, b = ours(name, args.repeats), theirs(name, args.repeats)
        agree = all(a[k] == b[k] for k in ("status", "outputs_digest", "outputs_size"))
        rows.append({"workflow": name, "ours": a, "node": b, "same_result": agree,
                     "ratio_ms_per_run": a["median_ms"] / b["median_ms"],
                     "ratio_peak_rss": a["peak_rss_mb"] / b["peak_rss_mb"], "loadavg": loadavg()})
        print(f"  {name}: ours {a['median_ms']:.1f} ms, node {b['median_ms']:.1f} ms ({a['status']}/{b['status']})",
              flush=True)
    print(table(["workflow", "node runs", "ours ms", "node ms", "ours ms/node", "node ms/node", "ours tasks/s",
                 "node tasks/s", "ours MB", "node MB", "ratio ms", "same result"],
                [[r["workflow"], r["ours"]["node_runs"], r["ours"]["median_ms"], r["node"]["median_ms"],
                  r["ours"]["ms_per_node"], r["node"]["ms_per_node"], r["ours"]["tasks_per_s"],
                  r["node"]["tasks_per_s"], r["ours"]["peak_rss_mb"], r["node"]["peak_rss_mb"],
                  r["ratio_ms_per_run"], r["same_result"]] for r in rows]))
    path = write_json("engines.json", {"machine": machine(), "repeats": args.repeats, "rows": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
