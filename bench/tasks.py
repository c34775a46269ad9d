"""The workflow Task API under real gunicorn, with the SQLite task store against the memory one.

Setup: a fake upstream answering after 20 ms, in its own process; two gunicorn
servers, each 2 workers x 16 gthread threads serving ``wsgi:app`` with
``LLM_BASE_URL`` = the fake and ``FLOWBRIDGE_MAX_RUNNING_TASKS`` = 1000 (so no
503; any 503 would be retried after a short pause and counted). One uses
``FLOWBRIDGE_TASK_DB`` = a SQLite file in a temporary directory, the other
``FLOWBRIDGE_TASK_DB=memory``. Every task is the same start -> llm -> end
workflow (``{"q": ...}`` in, ``{"answer": "echo: ..."}`` out); the llm node
uses the configured LLM server, i.e. the fake.

Three measurements:

1. **Submit, then poll (SQLite only).** 16 client threads submit the tasks with
   ``POST /api/task/run`` (no wait); 8 poller threads take the task IDs in
   submission order and call ``GET /api/task/result?taskID=...&wait=10`` until
   each task has finished. Reported: tasks/s (completed / wall time from the
   first submit to the last completion), p50/p99 of completion latency as the
   client sees it (submit -> result 200) and as the store records it
   (``finishedAt - createdAt`` from ``GET /api/tasks``), submit latency, and
   failures. The memory store is per process, so a poll landing on the other
   worker would not find the task: this part runs on SQLite only.
2. **One call, SQLite against memory.** ``POST /api/task/run?wait=30`` (answers
   ``{taskID, status, outputs}`` once the task finished, in the worker that
   ran it) from 16 closed-loop client threads; rounds alternate the order
   (SQLite memory, memory SQLite, ...). Per store: median over rounds of the
   p50/p99 latency, tasks/s and the workers' CPU ms per task (``/proc``); then
   the differences SQLite - memory in ms per task.
3. **The store alone, in process.** The calls one start -> llm -> end task
   makes on its store (create, 3 x is_cancel_requested, 2 x save_progress
   processing, save_progress succeeded, update to the terminal state, get), with
   the report a real task produced in part 1, for ``SQLiteTaskStore`` (a file in a
   temporary directory) and ``MemoryTaskStore``; µs per task and per call,
   median over rounds.

Run: ``.venv/bin/python bench/tasks.py`` (about 30 s); ``--tasks N`` sets
the tasks of part 1 (default 500), ``--rounds N`` the rounds of parts 2 and 3
(default 6 per store), ``--per-round N`` the tasks per round of part 2
(default 300), ``--store-tasks N`` the tasks per round of part 3 (default
1000). Writes ``bench/results/tasks.json`` and keeps both gunicorn logs next
to it; everything is on 127.0.0.1; exits 0 whatever it measured.
"""

from __future__ import annotations

import argparse
import collections
import json
import queue
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from bench._common import (  # noqa: E402
    RESULTS,
    UpstreamProcess,
    cpu_seconds,
    machine,
    median,
    percentile,
    table,
    worker_pids,
    write_json,
)
from tests.servers import GunicornServer  # noqa: E402
from workflow.store import MemoryTaskStore, SQLiteTaskStore, TaskRecord, TaskStore  # noqa: E402

WORKERS = 2
THREADS = 16
UPSTREAM_DELAY = 0.02
MAX_RUNNING = 1000
SUBMITTERS = 16
POLLERS = 8
CLIENTS = 16
#: seconds one ``?wait=`` poll may block; a task gets at most POLL_ATTEMPTS polls
POLL_WAIT = 10
POLL_ATTEMPTS = 6
#: seconds one HTTP request may take before it counts as an error
REQUEST_TIMEOUT = 45.0
#: a 503 (this process already runs MAX_RUNNING tasks) is retried after this pause, at most this often
RETRY_PAUSE = 0.1
MAX_RETRIES = 50
LOG_MARKERS = {"tracebacks": "Traceback", "worker_timeouts": "WORKER TIMEOUT", "errors": "[ERROR]",
               "database_locked": "database is locked"}


def task_schema() -> dict[str, Any]:
    """start -> llm -> end, as tests/webapp/test_tasks_api.py builds it; the llm node uses LLM_BASE_URL."""
    pos = {"position": {"x": 0, "y": 0}}
    return {
        "nodes": [
            {"id": "start_0", "type": "start", "meta": pos,
             "data": {"outputs": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}},
            {"id": "llm_0", "type": "llm", "meta": pos, "data": {
                "inputs": {"type": "object",
                           "properties": {"prompt": {"type": "string"}, "temperature": {"type": "number"}}},
                "inputsValues": {"prompt": {"type": "ref", "content": ["start_0", "q"]},
                                 "temperature": {"type": "constant", "content": 0}},
                "outputs": {"type": "object", "properties": {"result": {"type": "string"}}}}},
            {"id": "end_0", "type": "end", "meta": pos,
             "data": {"inputs": {"type": "object", "properties": {"answer": {"type": "string"}}},
                      "inputsValues": {"answer": {"type": "ref", "content": ["llm_0", "result"]}}}},
        ],
        "edges": [{"sourceNodeID": "start_0", "targetNodeID": "llm_0"},
                  {"sourceNodeID": "llm_0", "targetNodeID": "end_0"}],
    }


SCHEMA = task_schema()


# -- HTTP helpers ------------------------------------------------------------------------------

def _wait_for_workers(server: GunicornServer) -> list[int]:
    workers = worker_pids(server.process.pid)
    for _ in range(50):  # /healthz answered, so one worker is up; wait for the others
        if len(workers) >= WORKERS:
            break
        time.sleep(0.2)
        workers = worker_pids(server.process.pid)
    return workers


def submit(session: requests.Session, base: str, q: str, wait: float | None,
           counters: collections.Counter[str]) -> tuple[dict[str, Any] | None, str | None]:
    """``POST /api/task/run`` (``?wait=`` if given); retries a 503 after RETRY_PAUSE, counting it.

    :returns: (the JSON body, None) or (None, an error label)
    """
    url = base + "/api/task/run" + (f"?wait={wait:g}" if wait else "")
    for _ in range(MAX_RETRIES + 1):
        try:
            with session.post(url, json={"schema": SCHEMA, "inputs": {"q": q}}, timeout=REQUEST_TIMEOUT) as response:
                if response.status_code == 503:
                    counters["503"] += 1
                    time.sleep(RETRY_PAUSE)
                    continue
                if response.status_code != 200:
                    return None, f"run HTTP {response.status_code}"
                return response.json(), None
        except (requests.RequestException, ValueError) as exc:
            return None, f"run {type(exc).__name__}"
    return None, "run 503 retries exhausted"


def _run_threads(count: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT * (POLL_ATTEMPTS + 2))


def _log_counts(path: Path) -> dict[str, int]:
    try:
        log = path.read_text(errors="replace")
    except OSError:
        return {}
    return {name: log.count(marker) for name, marker in LOG_MARKERS.items()}


# -- 1. submit, then poll ------------------------------------------------------------------

def submit_then_poll(server: GunicornServer, n: int) -> dict[str, Any]:
    base = server.url
    tasks: list[dict[str, Any]] = [{"q": f"task {i}"} for i in range(n)]
    counters: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    next_index = [0]
    ids: queue.Queue[int | None] = queue.Queue()
    submit_sessions = [requests.Session() for _ in range(SUBMITTERS)]
    poll_sessions = [requests.Session() for _ in range(POLLERS)]

    def submitter(k: int) -> None:
        session = submit_sessions[k]
        while True:
            with lock:
                i = next_index[0]
                if i >= n:
                    return
                next_index[0] += 1
            task = tasks[i]
            task["t_submit"] = time.monotonic()
            body, error = submit(session, base, task["q"], None, counters)
            task["t_submitted"] = time.monotonic()
            if error is not None or not body or "taskID" not in body:
                with lock:
                    errors[error or "run: no taskID"] += 1
                continue
            task["task_id"] = body["taskID"]
            ids.put(i)

    def poller(k: int) -> None:
        session = poll_sessions[k]
        while True:
            i = ids.get()
            if i is None:
                return
            task = tasks[i]
            url = f"{base}/api/task/result?taskID={task['task_id']}&wait={POLL_WAIT}"
            error = "result: not finished after all polls"
            for _ in range(POLL_ATTEMPTS):
                try:
                    with session.get(url, timeout=REQUEST_TIMEOUT) as response:
                        status, data = response.status_code, response.json()
                except (requests.RequestException, ValueError) as exc:
                    error = f"result {type(exc).__name__}"
                    break
                if status == 202:
                    counters["202 (polled again)"] += 1
                    continue
                if status == 200 and data == {"answer": f"echo: {task['q']}"}:
                    task["t_done"], error = time.monotonic(), None
                elif status == 200:
                    error = "result: wrong outputs"
                else:
                    error = f"result HTTP {status} {(data.get('error') or {}).get('type', '')}".strip()
                break
            if error is not None:
                with lock:
                    errors[error] += 1

    try:
        poll_threads = [threading.Thread(target=poller, args=(k,), daemon=True) for k in range(POLLERS)]
        for thread in poll_threads:
            thread.start()
        started = time.monotonic()
        _run_threads(SUBMITTERS, submitter)
        submitted = time.monotonic()
        for _ in poll_threads:
            ids.put(None)
        for thread in poll_threads:
            thread.join(REQUEST_TIMEOUT * (POLL_ATTEMPTS + 2))
        records = _listed_tasks(submit_sessions[0], base, {t["task_id"] for t in tasks if "task_id" in t})
    finally:
        for session in submit_sessions + poll_sessions:
            session.close()
    done = [t for t in tasks if "t_done" in t]
    latencies = [t["t_done"] - t["t_submit"] for t in done]
    submit_latencies = [t["t_submitted"] - t["t_submit"] for t in tasks if "task_id" in t]
    server_latencies = [r["finishedAt"] - r["createdAt"] for r in records.values()
                        if r.get("finishedAt") is not None and r["status"] == "succeeded"]
    wall = max((t["t_done"] for t in done), default=float("nan")) - started
    sample_id = done[len(done) // 2]["task_id"] if done else None
    return {
        "tasks": n, "ok": len(done), "failures": n - len(done), "errors": dict(errors),
        "responses": dict(counters),
        "submit_seconds": submitted - started, "seconds": wall,
        "tasks_per_s": len(done) / wall if done else float("nan"),
        "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies, default=float("nan")) * 1000,
        "server_p50_ms": percentile(server_latencies, 50) * 1000,
        "server_p99_ms": percentile(server_latencies, 99) * 1000,
        "server_listed": len(records),
        "submit_p50_ms": percentile(submit_latencies, 50) * 1000,
        "submit_p99_ms": percentile(submit_latencies, 99) * 1000,
        "sample_task_id": sample_id,
    }


def _listed_tasks(session: requests.Session, base: str, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """Our tasks from ``GET /api/tasks`` (500 a page), by ID."""
    found: dict[str, dict[str, Any]] = {}
    for page in range(len(wanted) // 500 + 20):  # bounded; the store may hold other tasks too
        try:
            with session.get(f"{base}/api/tasks?limit=500&offset={page * 500}", timeout=REQUEST_TIMEOUT) as response:
                listed = response.json().get("tasks", []) if response.ok else []
        except (requests.RequestException, ValueError):
            break
        found.update({t["taskID"]: t for t in listed if t.get("taskID") in wanted})
        if len(listed) < 500 or len(found) == len(wanted):
            break
    return found


# -- 2. one call, SQLite against memory ------------------------------------------------------

class OneCallLoad:
    """CLIENTS closed-loop threads, one keep-alive Session each, kept across rounds."""

    def __init__(self, server: GunicornServer, workers: list[int]) -> None:
        self.server = server
        self.workers = workers
        self.sessions = [requests.Session() for _ in range(CLIENTS)]

    def run(self, count: int) -> dict[str, Any]:
        latencies: list[float] = []
        errors: collections.Counter[str] = collections.Counter()
        counters: collections.Counter[str] = collections.Counter()
        lock = threading.Lock()
        remaining = [count]

        def client(k: int) -> None:
            session, mine = self.sessions[k], []
            while True:
                with lock:
                    if remaining[0] <= 0:
                        break
                    remaining[0] -= 1
                    q = f"one call {remaining[0]}"
                t0 = time.monotonic()
                body, error = submit(session, self.server.url, q, 30, counters)
                elapsed = time.monotonic() - t0
                if error is None and body is not None:
                    if body.get("status") != "succeeded":
                        error = f"status {body.get('status')}"
                    elif body.get("outputs") != {"answer": f"echo: {q}"}:
                        error = "wrong outputs"
                if error is None:
                    mine.append(elapsed)
                else:
                    with lock:
                        errors[error] += 1
            with lock:
                latencies.extend(mine)

        cpu0 = cpu_seconds(self.workers)
        t0 = time.monotonic()
        _run_threads(CLIENTS, client)
        wall = time.monotonic() - t0
        cpu = cpu_seconds(self.workers) - cpu0
        return {
            "tasks": count, "ok": len(latencies), "errors": dict(errors), "responses": dict(counters),
            "seconds": wall, "tasks_per_s": len(latencies) / wall,
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "worker_cpu_ms_per_task": cpu / count * 1000,
        }

    def close(self) -> None:
        for session in self.sessions:
            session.close()


def one_call_rounds(loads: dict[str, OneCallLoad], rounds: int, per_round: int) -> dict[str, list[dict[str, Any]]]:
    for load in loads.values():  # warm-up: sessions, connections, each worker's runtime loop and LLM client
        load.run(CLIENTS * 4)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in loads}
    names = list(loads)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            result = loads[name].run(per_round)
            result["round"] = r
            results[name].append(result)
            print(f"  round {r} {name:6s} {result['tasks_per_s']:6.1f} tasks/s  p50 {result['p50_ms']:6.1f} ms"
                  f"  p99 {result['p99_ms']:6.1f} ms  worker CPU {result['worker_cpu_ms_per_task']:5.2f} ms/task"
                  f"  errors {sum(result['errors'].values())}  503s {result['responses'].get('503', 0)}", flush=True)
    return results


# -- 3. the store alone ------------------------------------------------------------------------

STORE_OPS = ("create", "is_cancel_requested", "save_progress processing", "save_progress succeeded",
             "update terminal", "get")


def store_lifecycle(store: TaskStore, count: int, report: dict[str, Any], owner: str) -> dict[str, float]:
    """Run ``count`` tasks through the store calls of one start -> llm -> end task; seconds per op kind."""
    spent = dict.fromkeys(STORE_OPS, 0.0)
    clock = time.perf_counter
    outputs = {"answer": "echo: hello"}
    for _ in range(count):
        task_id, now = str(uuid.uuid4()), time.time()
        record = TaskRecord(task_id=task_id, status="processing", schema=SCHEMA, inputs={"q": "hello"},
                            outputs=None, report=report, error=None, created_at=now, started_at=now,
                            finished_at=None, cancel_requested=False, owner=owner, heartbeat_at=now,
                            title="bench")
        t0 = clock()
        store.create(record)
        t1 = clock()
        for _ in range(3):  # the engine polls the flag before each node
            store.is_cancel_requested(task_id)
        t2 = clock()
        store.save_progress(task_id, "processing", report)
        store.save_progress(task_id, "processing", report)  # SQLite coalesces this one
        t3 = clock()
        store.save_progress(task_id, "succeeded", report, outputs=outputs)
        t4 = clock()
        store.update(task_id, status="succeeded", outputs=outputs, report=report, error=None, finished_at=time.time())
        t5 = clock()
        store.get(task_id)
        t6 = clock()
        for name, seconds in zip(STORE_OPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
            spent[name] += seconds
    return spent


def store_rounds(rounds: int, count: int, report: dict[str, Any], tmp: Path) -> dict[str, Any]:
    stores: dict[str, TaskStore] = {"sqlite": SQLiteTaskStore(tmp / "store-bench.db"), "memory": MemoryTaskStore()}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in stores}
    try:
        for store in stores.values():
            store_lifecycle(store, max(count // 5, 20), report, "bench:warm-up")
        names = list(stores)
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                spent = store_lifecycle(stores[name], count, report, "bench")
                per_task = {op: s / count * 1e6 for op, s in spent.items()}
                per_task["total"] = sum(spent.values()) / count * 1e6
                results[name].append(per_task)
    finally:
        for store in stores.values():
            store.close()
    return {name: {op: median([r[op] for r in rs]) for op in (*STORE_OPS, "total")} | {"rounds": rs}
            for name, rs in results.items()}


# -- the benchmark ------------------------------------------------------------------------------

def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    logs = {"sqlite": RESULTS / "tasks_gunicorn_sqlite.log", "memory": RESULTS / "tasks_gunicorn_memory.log"}
    dbs = {"sqlite": str(tmp / "tasks.db"), "memory": "memory"}
    data: dict[str, Any] = {}
    report: dict[str, Any] | None = None
    with UpstreamProcess(delay=UPSTREAM_DELAY) as upstream:
        servers: dict[str, GunicornServer] = {}
        loads: dict[str, OneCallLoad] = {}
        try:
            for name in ("sqlite", "memory"):
                env = {"LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0", "LLM_TIMEOUT": "30",
                       "GUNICORN_LOGLEVEL": "info", "FLOWBRIDGE_TASK_DB": dbs[name],
                       "FLOWBRIDGE_MAX_RUNNING_TASKS": str(MAX_RUNNING)}
                servers[name] = GunicornServer(env, workers=WORKERS, threads=THREADS, log_path=logs[name]).start()
                loads[name] = OneCallLoad(servers[name], _wait_for_workers(servers[name]))

            print(f"1. submit {args.tasks} tasks, then poll (SQLite store)", flush=True)
            loads["sqlite"].run(CLIENTS * 4)  # warm-up
            data["submit_poll"] = submit_then_poll(servers["sqlite"], args.tasks)
            sample = data["submit_poll"].pop("sample_task_id")
            if sample:
                with requests.get(f"{servers['sqlite'].url}/api/task/report?taskID={sample}", timeout=10) as response:
                    report = response.json() if response.ok else None

            print(f"2. one call (?wait=30), {args.rounds} rounds x {args.per_round} tasks per store", flush=True)
            data["one_call"] = one_call_rounds(loads, args.rounds, args.per_round)
            data["workers"] = {name: load.workers for name, load in loads.items()}
        finally:
            for load in loads.values():
                load.close()
            for server in servers.values():
                server.stop()
    data["logs"] = {name: {"path": str(path), **_log_counts(path)} for name, path in logs.items()}

    print(f"3. the store alone, {args.rounds} rounds x {args.store_tasks} tasks per store", flush=True)
    if report is None:
        report = {"note": "no real report was fetched"}
    data["report_bytes"] = len(json.dumps(report, separators=(",", ":")))
    data["store"] = store_rounds(args.rounds, args.store_tasks, report, tmp)
    return data


def summarize(data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    summary: dict[str, Any] = {}

    sp = data["submit_poll"]
    print(f"\n1. submit then poll, SQLite store: gunicorn {WORKERS} workers x {THREADS} threads, upstream delay "
          f"{UPSTREAM_DELAY * 1000:.0f} ms, {SUBMITTERS} submitting + {POLLERS} polling client threads")
    print(table(["tasks", "tasks/s", "p50 ms", "p99 ms", "max ms", "server p50 ms", "server p99 ms",
                 "submit p50 ms", "submit p99 ms", "failures", "responses"],
                [[sp["tasks"], sp["tasks_per_s"], sp["p50_ms"], sp["p99_ms"], sp["max_ms"], sp["server_p50_ms"],
                  sp["server_p99_ms"], sp["submit_p50_ms"], sp["submit_p99_ms"], sp["failures"],
                  " ".join(f"{k}:{v}" for k, v in sp["responses"].items()) or "-"]]))
    line = (f"submit+poll (SQLite): {sp['tasks_per_s']:.1f} tasks/s, completion p50 {sp['p50_ms']:.1f} ms, "
            f"p99 {sp['p99_ms']:.1f} ms, {sp['failures']} failures of {sp['tasks']}"
            f"{' ' + str(sp['errors']) if sp['errors'] else ''}, {sp['responses'].get('503', 0)} 503s")
    print(line)
    summary["submit_poll"] = line

    oc = data["one_call"]
    med = {name: {key: median([r[key] for r in rounds]) for key in
                  ("tasks_per_s", "p50_ms", "p99_ms", "worker_cpu_ms_per_task")}
           | {"errors": sum(sum(r["errors"].values()) for r in rounds),
              "tasks": sum(r["tasks"] for r in rounds),
              "503s": sum(r["responses"].get("503", 0) for r in rounds)}
           for name, rounds in oc.items()}
    data["one_call_median"] = med
    print(f"\n2. POST /api/task/run?wait=30, {CLIENTS} closed-loop clients; median of {args.rounds} rounds x "
          f"{args.per_round} tasks per store")
    print(table(["store", "tasks/s", "ms/task (1/throughput)", "p50 ms", "p99 ms", "worker CPU ms/task", "errors",
                 "503s"],
                [[name, m["tasks_per_s"], 1000 / m["tasks_per_s"], m["p50_ms"], m["p99_ms"],
                  m["worker_cpu_ms_per_task"], f"{m['errors']}/{m['tasks']}", m["503s"]] for name, m in med.items()]))
    # paired by round (the two runs of a round are adjacent in time), so drift of the machine cancels out
    pairs = list(zip(oc["sqlite"], oc["memory"]))
    paired = {
        "p50_ms": [a["p50_ms"] - b["p50_ms"] for a, b in pairs],
        "p99_ms": [a["p99_ms"] - b["p99_ms"] for a, b in pairs],
        "wall_ms_per_task": [1000 / a["tasks_per_s"] - 1000 / b["tasks_per_s"] for a, b in pairs],
        "worker_cpu_ms_per_task": [a["worker_cpu_ms_per_task"] - b["worker_cpu_ms_per_task"] for a, b in pairs],
    }
    diff = {key: median(values) for key, values in paired.items()}
    data["one_call_sqlite_minus_memory"] = {"median_of_paired_rounds": diff, "per_round": paired}
    print(table(["SQLite - memory, per round", *(f"round {r}" for r in range(len(pairs))), "median"],
                [[key, *values, diff[key]] for key, values in paired.items()]))
    line = (f"one call, SQLite - memory (median of {len(pairs)} paired rounds): p50 {diff['p50_ms']:+.2f} ms/task, "
            f"p99 {diff['p99_ms']:+.2f} ms, wall time {diff['wall_ms_per_task']:+.2f} ms/task (1/throughput), "
            f"worker CPU {diff['worker_cpu_ms_per_task']:+.2f} ms/task; medians {med['sqlite']['tasks_per_s']:.1f} "
            f"vs {med['memory']['tasks_per_s']:.1f} tasks/s")
    print(line)
    summary["one_call"] = line

    st = data["store"]
    print(f"\n3. the store alone, in process: µs per task (per call kind), median of {args.rounds} rounds x "
          f"{args.store_tasks} tasks; report {data['report_bytes']} bytes of JSON")
    print(table(["store", *STORE_OPS, "total"],
                [[name, *(st[name][op] for op in STORE_OPS), st[name]["total"]] for name in st]))
    line = (f"store alone: SQLite {st['sqlite']['total']:.1f} µs/task, memory {st['memory']['total']:.1f} µs/task, "
            f"difference {st['sqlite']['total'] - st['memory']['total']:+.1f} µs/task")
    print(line)
    summary["store"] = line

    for name, counts in data["logs"].items():
        line = f"gunicorn log ({name}): " + ", ".join(f"{v} {k}" for k, v in counts.items() if k != "path")
        print(line)
        summary[f"log_{name}"] = line
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=500, help="tasks of part 1, submit then poll (default 500)")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per store in parts 2 and 3 (default 6)")
    parser.add_argument("--per-round", type=int, default=300, help="tasks per round in part 2 (default 300)")
    parser.add_argument("--store-tasks", type=int, default=1000, help="tasks per round in part 3 (default 1000)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="flowbridge-bench-tasks-") as tmp:
        data = run(args, Path(tmp))
    data["summary"] = summarize(data, args)
    data["setup"] = {"gunicorn_workers": WORKERS, "gunicorn_threads": THREADS, "upstream_delay_s": UPSTREAM_DELAY,
                     "max_running_tasks": MAX_RUNNING, "submitters": SUBMITTERS, "pollers": POLLERS,
                     "one_call_clients": CLIENTS, "tasks": args.tasks, "rounds": args.rounds,
                     "per_round": args.per_round, "store_tasks": args.store_tasks}
    data["machine"] = machine()
    data["seconds"] = round(time.perf_counter() - started, 1)
    path = write_json("tasks.json", data)
    print(f"\nwrote {path} in {data['seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
