"""``POST /api/chat`` under real gunicorn with the default configuration, next to a sync view and an asyncio peer.

Setup: a fake upstream answering after 100 ms, in its own process. gunicorn
serves ``bench.sync_view_app:app`` (which has both ``POST /api/chat`` and
``POST /bench/sync-chat``) with the repository's gunicorn.conf.py and no
override but the bind address and ``LLM_BASE_URL``: its workers, threads and
guards are whatever the defaults are when the bench runs. The asyncio peer is
``bench/asyncio_peer.py`` (FastAPI, one shared aiohttp session per worker)
under uvicorn with 2 workers, against the same upstream. 64 clients (4 load
processes x 16 threads, each thread with its own keep-alive Session), in
processes of their own so their CPU does not compete with ours.

Rounds rotate the three endpoints (A B C, B C A, C A B, ...); each round sends
a fixed number of requests. Reported per endpoint: median requests/s, median
p50 and p99 latency of the answered requests, 503s (refused: capacity), other
errors, the worker CPU per request (utime + stime of the server's workers from
/proc, divided by the requests sent), and the upstream's peak concurrency per
round; then flowbridge's async/sync throughput ratio, flowbridge against the
asyncio peer, the machine's load average, and how many "Connection pool is
full" warnings reached the gunicorn log.

Run: ``.venv/bin/python bench/chat_load.py`` (about a minute and a half);
needs the ``bench`` extra (fastapi, uvicorn, aiohttp). Writes
``bench/results/chat_load.json`` and keeps the gunicorn log next to it; exits 0.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from bench._common import (  # noqa: E402
    LOG_PROBE,
    RESULTS,
    DefaultGunicorn,
    UpstreamProcess,
    cpu_seconds,
    gunicorn_defaults,
    loadavg,
    machine,
    median,
    percentile,
    raise_nofile_limit,
    table,
    wait_for_workers,
    write_json,
)
from bench._peer import PEER_WORKERS, UvicornServer  # noqa: E402

UPSTREAM_DELAY = 0.1
LOAD_PROCESSES = 4
THREADS_PER_PROCESS = 16
ASYNC, SYNC, PEER = "flowbridge async /api/chat", "flowbridge sync /bench/sync-chat", "asyncio peer /api/chat"
#: endpoint -> (server, path)
ENDPOINTS = {ASYNC: ("flowbridge", "/api/chat"), SYNC: ("flowbridge", "/bench/sync-chat"),
             PEER: ("peer", "/api/chat")}
#: async throughput must be at least this share of sync throughput
TARGET_RATIO = 0.97
POOL_FULL = "Connection pool is full"
#: seconds a single request may take before it counts as an error
REQUEST_TIMEOUT = 30.0


# -- load generator: runs in child processes -------------------------------------------------

def _load_process(conn: Connection, threads: int) -> None:
    """Serve ``run`` commands from the parent until ``stop``; one Session per thread."""
    sessions = [requests.Session() for _ in range(threads)]
    while True:
        command = conn.recv()
        if command[0] == "stop":
            break
        _, url, payload, count, start_at = command
        latencies: list[float] = []
        errors: collections.Counter[str] = collections.Counter()
        ends: list[float] = []
        lock = threading.Lock()
        remaining = [count]

        def work(session: requests.Session) -> None:
            mine: list[float] = []
            wait = start_at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            while True:
                with lock:
                    if remaining[0] <= 0:
                        break
                    remaining[0] -= 1
                t0 = time.monotonic()
                try:
                    with session.post(url, json=payload, timeout=REQUEST_TIMEOUT) as response:
                        ok = response.status_code == 200 and "response" in response.json()
                        error = None if ok else f"HTTP {response.status_code}"
                except (requests.RequestException, ValueError) as exc:
                    error = type(exc).__name__
                elapsed = time.monotonic() - t0
                if error is None:
                    mine.append(elapsed)
                else:
                    with lock:
                        errors[error] += 1
            with lock:
                latencies.extend(mine)
                ends.append(time.monotonic())

        pool = [threading.Thread(target=work, args=(s,)) for s in sessions]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        conn.send({"latencies": latencies, "errors": dict(errors), "end": max(ends)})
    for session in sessions:
        session.close()
    conn.close()


class LoadGenerator:
    """``processes`` x ``threads`` clients in child processes, kept across rounds (keep-alive)."""

    def __init__(self, processes: int, threads: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs = []
        for _ in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_load_process, args=(child, threads), daemon=True)
            proc.start()
            self._conns.append(parent)
            self._procs.append(proc)

    def run(self, url: str, payload: dict[str, Any], count: int) -> dict[str, Any]:
        """Send ``count`` requests (split evenly), all clients starting together."""
        start_at = time.monotonic() + 0.2  # time.monotonic is system-wide on Linux
        share, extra = divmod(count, len(self._conns))
        for i, conn in enumerate(self._conns):
            conn.send(("run", url, payload, share + (i < extra), start_at))
        parts = [conn.recv() for conn in self._conns]
        latencies = [x for p in parts for x in p["latencies"]]
        errors: collections.Counter[str] = collections.Counter()
        for p in parts:
            errors.update(p["errors"])
        wall = max(p["end"] for p in parts) - start_at
        return {
            "requests": count,
            "ok": len(latencies),
            "errors": dict(errors),
            "seconds": wall,
            "rps": len(latencies) / wall,
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "max_ms": max(latencies, default=float("nan")) * 1000,
        }

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send(("stop",))
            except OSError:
                pass
        for proc in self._procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- the benchmark ---------------------------------------------------------------------------

#: one keep-alive connection for /_control/*, so the upstream's "connections"
#: counter shows only the app's new connections
_control = requests.Session()


def _upstream_reset(upstream: UpstreamProcess) -> None:
    # reset() also restores the default delay (0): set ours again.
    _control.post(upstream.root_url + "/_control/reset", timeout=5).raise_for_status()
    _control.post(upstream.root_url + "/_control/configure", json={"delay": UPSTREAM_DELAY},
                  timeout=5).raise_for_status()


def _upstream_stats(upstream: UpstreamProcess) -> dict[str, Any]:
    with _control.get(upstream.root_url + "/_control/stats", timeout=5) as response:
        stats = response.json()
    return {k: stats[k] for k in ("requests", "max_concurrency", "connections")}


def run(rounds: int, per_round: int, log_path: Path) -> dict[str, Any]:
    payload = {"message": "hello from the load generator"}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in ENDPOINTS}
    defaults = gunicorn_defaults()
    load_before = loadavg()
    with UpstreamProcess(delay=UPSTREAM_DELAY) as upstream, \
            DefaultGunicorn(upstream.base_url, app="bench.sync_view_app:app", log_path=log_path) as server, \
            UvicornServer(upstream.base_url) as peer:
        workers = {"flowbridge": wait_for_workers(server.process.pid, defaults["workers"]),
                   "peer": peer.workers}
        urls = {"flowbridge": server.url, "peer": peer.url}
        with LoadGenerator(LOAD_PROCESSES, THREADS_PER_PROCESS) as load:
            # warm-up: sessions, keep-alive connections, each worker's client and pool threads
            for target, path in ENDPOINTS.values():
                load.run(urls[target] + path, payload, LOAD_PROCESSES * THREADS_PER_PROCESS * 2)
            names = list(ENDPOINTS)
            for r in range(rounds):
                order = names[r % len(names):] + names[:r % len(names)]
                for name in order:
                    target, path = ENDPOINTS[name]
                    _upstream_reset(upstream)
                    cpu0 = cpu_seconds(workers[target])
                    result = load.run(urls[target] + path, payload, per_round)
                    result["worker_cpu_ms_per_request"] = (cpu_seconds(workers[target]) - cpu0) / per_round * 1000
                    result["upstream"] = _upstream_stats(upstream)
                    result["round"] = r
                    result["loadavg"] = loadavg()
                    results[name].append(result)
                    print(f"  round {r} {name:34s} {result['rps']:6.1f} req/s  p50 {result['p50_ms']:6.1f} ms"
                          f"  p99 {result['p99_ms']:6.1f} ms  503s {result['errors'].get('HTTP 503', 0)}"
                          f"  other errors {_other_errors(result['errors'])}"
                          f"  upstream max_concurrency {result['upstream']['max_concurrency']}"
                          f"  worker CPU {result['worker_cpu_ms_per_request']:.2f} ms/req", flush=True)
    log = log_path.read_text(errors="replace")
    flowbridge_workers = workers["flowbridge"]
    return {
        "setup": {"gunicorn_workers": defaults["workers"], "gunicorn_threads": defaults["threads"],
                  "gunicorn_reserved_threads": defaults["reserved_threads"],
                  "gunicorn_exported": defaults["exported"], "peer_workers": PEER_WORKERS,
                  "peer_server": peer.describe(), "upstream_delay_s": UPSTREAM_DELAY,
                  "clients": LOAD_PROCESSES * THREADS_PER_PROCESS, "load_processes": LOAD_PROCESSES,
                  "requests_per_round": per_round, "rounds_per_endpoint": rounds,
                  "gunicorn_capacity": defaults["capacity"],
                  # closed-loop clients, or flowbridge's work slots, each busy UPSTREAM_DELAY per request
                  "ceiling_rps": min(LOAD_PROCESSES * THREADS_PER_PROCESS, defaults["capacity"]) / UPSTREAM_DELAY,
                  "loadavg_before": load_before, "loadavg_after": loadavg()},
        "rounds": results,
        "log": {
            "path": str(log_path),
            "worker_pids": flowbridge_workers,
            # each worker logs the probe through urllib3's logger on its first request
            "probe_seen": len(flowbridge_workers) == defaults["workers"]
            and all(f"{LOG_PROBE} (pid {pid})" in log for pid in flowbridge_workers),
            "pool_full": log.count(POOL_FULL),
            "tracebacks": log.count("Traceback"),
            "worker_timeouts": log.count("WORKER TIMEOUT"),
        },
    }


def _other_errors(errors: dict[str, int]) -> int:
    return sum(v for k, v in errors.items() if k != "HTTP 503")


def summarize(data: dict[str, Any]) -> list[dict[str, Any]]:
    summary = {}
    rows = []
    for name, rounds in data["rounds"].items():
        s = {
            "rps": median([r["rps"] for r in rounds]),
            "p50_ms": median([r["p50_ms"] for r in rounds]),
            "p99_ms": median([r["p99_ms"] for r in rounds]),
            "worker_cpu_ms_per_request": median([r["worker_cpu_ms_per_request"] for r in rounds]),
            "refused_503": sum(r["errors"].get("HTTP 503", 0) for r in rounds),
            "errors": sum(_other_errors(r["errors"]) for r in rounds),
            "error_kinds": sorted({k for r in rounds for k in r["errors"] if k != "HTTP 503"}),
            "ok": sum(r["ok"] for r in rounds),
            "requests": sum(r["requests"] for r in rounds),
            "upstream_max_concurrency": [r["upstream"]["max_concurrency"] for r in rounds],
            "upstream_new_connections": [r["upstream"]["connections"] for r in rounds],
        }
        summary[name] = s
        rows.append([name, s["rps"], s["p50_ms"], s["p99_ms"], s["worker_cpu_ms_per_request"],
                     f"{s['ok']}/{s['requests']}", s["refused_503"], s["errors"],
                     " ".join(map(str, s["upstream_max_concurrency"])),
                     " ".join(map(str, s["upstream_new_connections"]))])
    data["summary"] = summary
    setup = data["setup"]
    print(f"\nPOST chat, {setup['clients']} closed-loop clients, upstream delay "
          f"{setup['upstream_delay_s'] * 1000:.0f} ms; "
          f"flowbridge: gunicorn defaults ({setup['gunicorn_workers']} workers x {setup['gunicorn_threads']} gthread "
          f"threads, {setup['gunicorn_reserved_threads']} reserved; exports {setup['gunicorn_exported']}); "
          f"asyncio peer: {setup['peer_server']}; median of {setup['rounds_per_endpoint']} rounds x "
          f"{setup['requests_per_round']} requests; ceiling {setup['ceiling_rps']:.0f} req/s; "
          f"loadavg {setup['loadavg_before']} before, {setup['loadavg_after']} after")
    print(table(["endpoint", "req/s", "p50 ms", "p99 ms", "worker CPU ms/req", "answered", "503s", "other errors",
                 "upstream max conc./round", "new upstream conns/round"], rows))
    a, s, p = summary[ASYNC], summary[SYNC], summary[PEER]
    ratio = a["rps"] / s["rps"]
    data["ratio_async_over_sync"] = ratio
    data["flowbridge_vs_peer"] = {"rps_ratio": a["rps"] / p["rps"], "p99_ratio": a["p99_ms"] / p["p99_ms"],
                                  "cpu_ratio": a["worker_cpu_ms_per_request"] / p["worker_cpu_ms_per_request"]}
    vs = data["flowbridge_vs_peer"]
    log = data["log"]
    print(f"\nratio async/sync req/s: {ratio:.3f}")
    print(f"flowbridge async /api/chat against the asyncio peer: req/s x{vs['rps_ratio']:.2f}, "
          f"p99 x{vs['p99_ratio']:.2f}, worker CPU per request x{vs['cpu_ratio']:.2f}")
    for name, m in summary.items():
        if m["error_kinds"]:
            print(f"errors of {name}: {m['error_kinds']}")
    print(f"gunicorn log: {log['pool_full']} '{POOL_FULL}', {log['tracebacks']} tracebacks, "
          f"{log['worker_timeouts']} worker timeouts; urllib3 warnings reach the log: "
          f"{'yes' if log['probe_seen'] else 'NO (the count means nothing)'} "
          f"(workers {log['worker_pids']})")
    failed = sum(m["errors"] + m["refused_503"] for m in summary.values())
    verdicts = [
        {"target": f"async/sync requests/s >= {TARGET_RATIO}", "value": round(ratio, 3),
         "pass": ratio >= TARGET_RATIO},
        {"target": f"zero '{POOL_FULL}' in the gunicorn log", "value": log["pool_full"],
         "pass": log["pool_full"] == 0 and log["probe_seen"]},
        {"target": "no failed or refused requests (defaults, 64 clients)", "value": failed, "pass": failed == 0},
    ]
    print()
    for v in verdicts:
        print(f"{'PASS' if v['pass'] else 'FAIL'}: {v['target']} (measured {v['value']})")
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per endpoint (default 5)")
    parser.add_argument("--requests", type=int, default=640, help="requests per round (default 640)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    RESULTS.mkdir(exist_ok=True)
    raise_nofile_limit()  # the servers and load processes started below inherit it
    data = run(args.rounds, args.requests, RESULTS / "chat_load_gunicorn.log")
    data["verdicts"] = summarize(data)
    data["machine"] = machine()
    data["seconds"] = round(time.perf_counter() - started, 1)
    path = write_json("chat_load.json", data)
    print(f"\nwrote {path} in {data['seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
