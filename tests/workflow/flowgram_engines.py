"""Run the same workflow cases through both engines and bring their reports to one comparable shape.

Theirs: FlowGram's published engine under Node, through ``tests/flowgram_node/run.mjs`` (ONE process for
all cases). Ours: :class:`workflow.WorkflowRuntime`. Used by ``test_differential.py`` and ``bench/engines.py``.

A case is ``{"id": str, "schema": dict, "inputs": dict}``. :func:`comparable` turns either engine's answer
into ``{"valid", "validationErrors", "status", "outputs", "nodes", "errors", "snapshots"}``: ids and times
dropped, snapshots grouped by node (FlowGram lists them in creation order, we group them per node).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).resolve().parent.parent / "flowgram_node"
HARNESS = NODE_DIR / "run.mjs"
RUNTIME_PACKAGE = NODE_DIR / "node_modules" / "@flowgram.ai" / "runtime-js" / "package.json"


def node_missing() -> str | None:
    """Why the Node harness cannot run here (``None`` when it can)."""
    if shutil.which("node") is None:
        return "`node` is not installed (Debian: apt-get install nodejs npm)"
    if not RUNTIME_PACKAGE.exists():
        return f"FlowGram's runtime is not installed: run `npm ci` in {NODE_DIR}"
    return None


def run_theirs(cases: list[dict[str, Any]], timeout: float = 600.0) -> list[dict[str, Any]]:
    """Each case's answer from runtime-js (see run.mjs for its fields), in order, from one Node process."""
    text = "\n".join(json.dumps(case) for case in cases) + "\n"
    proc = subprocess.run(["node", str(HARNESS)], input=text, capture_output=True, text=True,
                          timeout=timeout, cwd=NODE_DIR, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the Node harness failed ({proc.returncode}): {proc.stderr[-2000:]}")
    answers = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    if len(answers) != len(cases):
        raise RuntimeError(f"the Node harness answered {len(answers)} of {len(cases)} cases: {proc.stderr[-2000:]}")
    return answers


def run_ours(runtime: Any, cases: list[dict[str, Any]], batch: int = 16,
             timeout: float = 60.0) -> list[dict[str, Any]]:
    """Each case's answer from our runtime, in the shape of run.mjs's (``batch`` tasks at a time)."""
    from workflow.validation import validate_task

    answers: list[dict[str, Any]] = []
    for first in range(0, len(cases), batch):
        chunk = cases[first:first + batch]
        started = []
        for case in chunk:
            errors = validate_task(case["schema"], case.get("inputs") or {})
            answer: dict[str, Any] = {"id": case.get("id"), "validation": {"valid": not errors}}
            if errors:
                answer["validation"]["errors"] = errors
            begin = time.perf_counter()
            try:
                answer["taskID"] = runtime.run(json.dumps(case["schema"]), case.get("inputs") or {})
            except Exception as exc:  # a request refused before a task exists
                answer["harnessError"] = f"{type(exc).__name__}: {exc}"
            started.append((answer, begin))
        for answer, begin in started:
            if "taskID" in answer:
                record = runtime.wait(answer["taskID"], timeout)
                answer["timeMs"] = (time.perf_counter() - begin) * 1000
                answer["report"] = record.report if record else None
                answer["result"] = (record.outputs or {}) if record and record.terminated else None
                if record is None or not record.terminated:
                    answer["harnessError"] = f"not terminated after {timeout} s"
            answers.append(answer)
    return answers


def _snapshot(snap: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in snap.items() if k in ("inputs", "outputs", "branch", "error")}


def comparable(answer: dict[str, Any]) -> dict[str, Any]:
    """One engine's answer without ids, times or anything else that differs between two runs; secrets
    masked as our reports mask them (documented difference ``masked-secrets``)."""
    from workflow.report import mask_secrets

    validation = answer.get("validation") or {}
    report = mask_secrets(answer.get("report") or {})
    nodes = report.get("reports") or {}
    return {
        "valid": bool(validation.get("valid")),
        "validationErrors": list(validation.get("errors") or []),
        "harnessError": answer.get("harnessError"),
        "status": (report.get("workflowStatus") or {}).get("status"),
        "outputs": answer.get("result"),
        "nodes": {node_id: node.get("status") for node_id, node in nodes.items()},
        "errors": [{"nodeID": m.get("nodeID"), "message": m.get("message")}
                   for m in (report.get("messages") or {}).get("error") or []],
        "snapshots": {node_id: [_snapshot(s) for s in node.get("snapshots") or []]
                      for node_id, node in nodes.items()},
    }


def differences(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Where two comparable values differ, as ``path: ours != theirs`` lines (lists and dicts walked)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        found = []
        for key in sorted(set(ours) | set(theirs), key=str):
            if key not in ours or key not in theirs:
                side = "ours" if key in ours else "theirs"
                value = (ours if key in ours else theirs)[key]
                found.append(f"{path}/{key}: only in {side}: {json.dumps(value)[:300]}")
            else:
                found += differences(ours[key], theirs[key], f"{path}/{key}")
        return found
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        return [d for i, (a, b) in enumerate(zip(ours, theirs)) for d in differences(a, b, f"{path}[{i}]")]
    if ours == theirs and type(ours) is type(theirs) or (_number(ours) and _number(theirs) and ours == theirs):
        return []
    return [f"{path}: ours {json.dumps(ours)[:300]} != theirs {json.dumps(theirs)[:300]}"]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_cases(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Cases from JSON files (a list of cases or one case each), for replaying a saved set by hand."""
    cases: list[dict[str, Any]] = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        cases += data if isinstance(data, list) else [data]
    return cases


def in_ci() -> bool:
    """CI sets ``CI``: there a missing engine fails the test instead of skipping it."""
    return bool(os.environ.get("CI"))
