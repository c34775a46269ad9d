"""Capacity of the default configuration: many concurrent streamed chats against slow upstream streams.

Setup: ``bench/stream_upstream.py`` in its own process (asyncio; every stream
sends its first token at once, then one every 0.5 s, 17 tokens in 8 s); a fresh
gunicorn per run with the repository's gunicorn.conf.py and **no override** but
the bind address and ``LLM_BASE_URL`` (``bench._common.DefaultGunicorn``: every
other configuration variable is dropped from the environment). Capacity is what
that configuration provides: workers x work slots (request threads minus the
ones reserved for health checks and the wait queue), read from gunicorn.conf.py
before each run, as gunicorn would read it.

Each run opens N streams (``POST /api/chat`` with ``"stream": true``) at once
from one asyncio + aiohttp client and follows each to its end, while

* another process probes ``GET /healthz`` every 100 ms, a new connection each
  time as a load balancer does, and records its latency;
* the client samples the workers' resident memory (/proc) every 250 ms.

Runs: N = 100, N = 1000 and a burst of 2 x capacity. Per run: completed (a
``done`` event after every token), refused (HTTP 503), errors (anything else:
other statuses, connection errors, timeouts, ``error`` events, streams cut
short; listed by kind), p50/p99 time to the first ``content`` event, ``/healthz``
p99 and max during the run, worker RSS idle and at peak, memory per open
stream ((peak - idle) / most streams open at once), the workers' CPU per
stream and the kernel's accept backlog. The upstream's and the client's CPU
are reported too, and a first run sends the largest N straight to the
upstream: the harness's own time to first content, the floor of the others.

Run: ``.venv/bin/python bench/capacity.py`` (about 2 min); ``--sizes 100,1000``,
``--burst-factor 2`` (0: no burst run) and ``--no-direct`` choose the runs.
Needs the ``bench`` extra (aiohttp). Writes ``bench/results/capacity.json`` and
keeps each gunicorn log next to it; 127.0.0.1 only; exits 0 whatever it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import http.client
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402

from bench._common import (  # noqa: E402
    RESULTS,
    DefaultGunicorn,
    UpstreamProcess,
    cpu_seconds,
    gunicorn_defaults,
    loadavg,
    machine,
    percentile,
    raise_nofile_limit,
    rss_bytes,
    table,
    wait_for_workers,
    write_json,
)
from bench._probes import HealthProber, listen_backlog  # noqa: E402

UPSTREAM_TOKENS = 17
UPSTREAM_INTERVAL = 0.5
#: seconds one stream may take, from the request to its last event (8 s of upstream plus any wait)
STREAM_TIMEOUT = 90.0
#: seconds without a byte before a stream counts as stalled (the app sends a heartbeat every 15 s)
READ_TIMEOUT = 30.0
RSS_INTERVAL = 0.25
LOG_MARKERS = {"tracebacks": "Traceback", "worker_timeouts": "WORKER TIMEOUT", "errors": "[ERROR]",
               "critical": "[CRITICAL]"}


# -- the streaming client ---------------------------------------------------------------------

class Streams:
    """What one run's streams did, and how many are open right now."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.open = 0
        self.max_open = 0


def _request(url: str, message: str, direct: bool) -> tuple[str, dict[str, Any]]:
    """flowbridge's ``POST /api/chat``, or with ``direct`` the upstream's own ``/chat/completions``."""
    if direct:
        return url + "/chat/completions", {"model": "fake-model", "stream": True,
                                           "messages": [{"role": "user", "content": message}]}
    return url + "/api/chat", {"message": message, "stream": True}


def _event_kind(event: dict[str, Any], direct: bool) -> str | None:
    """``content``, ``done`` or ``error`` for flowbridge's events and the upstream's chunks alike."""
    if not direct:
        return event.get("type")
    delta = (event.get("choices") or [{}])[0].get("delta") or {}
    return "content" if delta.get("content") else None


async def _one_stream(session: aiohttp.ClientSession, url: str, i: int, quick: bool, state: Streams,
                      direct: bool = False) -> None:
    record: dict[str, Any] = {"status": None, "ttft": None, "done": False, "contents": 0, "error": None}
    state.records.append(record)
    target, body = _request(url, f"capacity stream {i}" + (" [quick]" if quick else ""), direct)
    t0 = time.monotonic()
    opened = False
    try:
        async with session.post(target, json=body) as response:
            record["status"] = response.status
            record["t_status"] = time.monotonic() - t0
            if response.status != 200:
                body = await response.read()
                record["retry_after"] = response.headers.get("Retry-After")
                try:
                    record["error_type"] = json.loads(body)["error"]["type"]
                except (ValueError, KeyError, TypeError):
                    record["error_type"] = "?"
                return
            opened = True
            state.open += 1
            state.max_open = max(state.max_open, state.open)
            async for line in response.content:
                if not line.startswith(b"data: "):
                    continue  # blank lines between frames, heartbeat comments
                if line.startswith(b"data: [DONE]"):  # the upstream's end (direct)
                    record["done"] = True
                    continue
                event = json.loads(line[6:])
                kind = _event_kind(event, direct)
                if kind == "content":
                    record["contents"] += 1
                    if record["ttft"] is None:
                        record["ttft"] = time.monotonic() - t0
                elif kind == "done":
                    record["done"] = True
                elif kind == "error":
                    record["error"] = f"error event {event.get('error_code') or event.get('data')}"
    except TimeoutError as exc:
        if record["status"] is None:
            record["error"] = f"no response within {READ_TIMEOUT:g} s ({type(exc).__name__})"
        else:
            record["error"] = f"stream stalled ({type(exc).__name__})"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None)  # e.g. "Connection reset by peer": what kind of OSError
        record["error"] = type(exc).__name__ + (f" ({why})" if why else "")
    finally:
        if opened:
            state.open -= 1
        record["t_end"] = time.monotonic() - t0


async def _sampler(workers: list[int], port: int, state: Streams, samples: list[tuple[float, int, int, int]]) -> None:
    """(seconds, worker RSS, open streams, listen backlog) every RSS_INTERVAL."""
    t0 = time.monotonic()
    while True:
        samples.append((time.monotonic() - t0, rss_bytes(workers), state.open, listen_backlog(port)))
        await asyncio.sleep(RSS_INTERVAL)


async def run_streams(url: str, n: int, workers: list[int], quick: bool = False,
                      direct: bool = False) -> dict[str, Any]:
    """``n`` streams at once; their records, the samples and the wall time."""
    state = Streams()
    samples: list[tuple[float, int, int, int]] = []
    timeout = aiohttp.ClientTimeout(total=STREAM_TIMEOUT, sock_read=READ_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        sampler = asyncio.create_task(_sampler(workers, urlsplit(url).port or 80, state, samples))
        t0 = time.monotonic()
        tasks = [asyncio.create_task(_one_stream(session, url, i, quick, state, direct)) for i in range(n)]
        _, pending = await asyncio.wait(tasks, timeout=STREAM_TIMEOUT + 30)
        for task in pending:  # bounded: aiohttp's own timeout should have ended them already
            task.cancel()
        wall = time.monotonic() - t0
        sampler.cancel()
        await asyncio.gather(sampler, *pending, return_exceptions=True)
    return {"records": state.records, "samples": samples, "max_open": state.max_open, "seconds": wall}


# -- one run ----------------------------------------------------------------------------------

def classify(record: dict[str, Any]) -> str:
    """completed, refused or an error label."""
    if record["status"] == 503:
        return "refused"
    if record["error"]:
        return record["error"]
    if record["status"] != 200:
        return f"HTTP {record['status']} {record.get('error_type', '')}".strip()
    if not record["done"]:
        return "stream ended without done"
    if record["contents"] != UPSTREAM_TOKENS:
        return f"{record['contents']} of {UPSTREAM_TOKENS} tokens"
    return "completed"


def _upstream_stats(upstream: UpstreamProcess, reset_peak: bool = False) -> dict[str, Any]:
    host, port = upstream.root_url.removeprefix("http://").split(":")
    client = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        client.request("POST", "/_stats/reset-peak") if reset_peak else client.request("GET", "/_stats")
        return json.loads(client.getresponse().read())
    except (OSError, ValueError):
        return {}
    finally:
        client.close()


def run_once(label: str, n: int, upstream: UpstreamProcess, workers_expected: int) -> dict[str, Any]:
    log_path = RESULTS / f"capacity_{label.replace(' ', '_').replace('=', '')}_gunicorn.log"
    with DefaultGunicorn(upstream.base_url, log_path=log_path) as server:
        workers = wait_for_workers(server.process.pid, workers_expected)
        # warm-up: each worker's client, LLM pool and a few request threads
        asyncio.run(run_streams(server.url, 4 * len(workers), workers, quick=True))
        time.sleep(0.5)
        idle_rss = rss_bytes(workers)
        load_before = loadavg()  # other work on the machine; the run's own threads count in the one after
        up_before = _upstream_stats(upstream, reset_peak=True)
        up_cpu0 = cpu_seconds([upstream.process.pid])
        work_cpu0 = cpu_seconds(workers)
        own0 = resource.getrusage(resource.RUSAGE_SELF)
        prober = HealthProber(server.port, STREAM_TIMEOUT + 60).start()
        try:
            time.sleep(0.5)  # a few probes at rest first
            result = asyncio.run(run_streams(server.url, n, workers))
        finally:
            health = prober.stop()
        own1 = resource.getrusage(resource.RUSAGE_SELF)
        up_after = _upstream_stats(upstream)
        up_cpu = cpu_seconds([upstream.process.pid]) - up_cpu0
        work_cpu = cpu_seconds(workers) - work_cpu0
        workers_alive = worker_pids_alive(workers)
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    records = result["records"]
    outcomes = collections.Counter(classify(r) for r in records)
    errors = {k: v for k, v in outcomes.items() if k not in ("completed", "refused")}
    ttft = [r["ttft"] for r in records if classify(r) == "completed"]
    refused_after = [r["t_status"] for r in records if r["status"] == 503]
    peak = max(result["samples"], key=lambda s: s[1], default=(0.0, idle_rss, 0, 0))
    peak_rss = max(peak[1], idle_rss)
    wall = result["seconds"]
    return {
        "label": label, "n": n, "workers": workers, "workers_alive_at_end": workers_alive,
        "completed": outcomes.get("completed", 0), "refused": outcomes.get("refused", 0),
        "errors": sum(errors.values()), "error_kinds": errors,
        "refusal_types": dict(collections.Counter(r.get("error_type") for r in records if r["status"] == 503)),
        "retry_after": dict(collections.Counter(r.get("retry_after") for r in records if r["status"] == 503)),
        "ttft_p50_ms": percentile(ttft, 50) * 1000, "ttft_p99_ms": percentile(ttft, 99) * 1000,
        "ttft_max_ms": max(ttft, default=float("nan")) * 1000,
        "refused_after_p50_ms": percentile(refused_after, 50) * 1000,
        "refused_after_p99_ms": percentile(refused_after, 99) * 1000,
        "healthz_probes": len(health["latencies"]), "healthz_failures": health["failures"],
        "healthz_p50_ms": percentile(health["latencies"], 50) * 1000,
        "healthz_p99_ms": percentile(health["latencies"], 99) * 1000,
        "healthz_max_ms": max(health["latencies"], default=float("nan")) * 1000,
        "max_open_streams": result["max_open"],
        "max_listen_backlog": max((s[3] for s in result["samples"]), default=-1),
        "rss_idle_mb": idle_rss / 2**20, "rss_peak_mb": peak_rss / 2**20,
        "kb_per_open_stream": ((peak_rss - idle_rss) / 1024 / result["max_open"]) if result["max_open"]
        else float("nan"),
        "seconds": wall,
        "worker_cpu_s": work_cpu, "worker_cpu_ms_per_stream": work_cpu / n * 1000,
        "upstream": {"cpu_s": up_cpu, "cpu_share": up_cpu / wall,
                     "max_in_flight": up_after.get("max_in_flight"),
                     "streams_completed": up_after.get("streams_completed", 0) - up_before.get("streams_completed", 0),
                     "streams_closed_early": (up_after.get("streams_closed_early", 0)
                                              - up_before.get("streams_closed_early", 0))},
        "client_cpu_s": (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime),
        "log": {name: log.count(marker) for name, marker in LOG_MARKERS.items()},
        "loadavg_before": load_before, "loadavg": loadavg(),
    }


def run_direct(n: int, upstream: UpstreamProcess) -> dict[str, Any]:
    """The harness alone: ``n`` streams from this client straight to the upstream (no flowbridge)."""
    own0 = resource.getrusage(resource.RUSAGE_SELF)
    result = asyncio.run(run_streams(upstream.base_url, n, [], direct=True))
    own1 = resource.getrusage(resource.RUSAGE_SELF)
    records = result["records"]
    outcomes = collections.Counter(classify(r) for r in records)
    ttft = [r["ttft"] for r in records if classify(r) == "completed"]
    return {"n": n, "completed": outcomes.get("completed", 0),
            "errors": {k: v for k, v in outcomes.items() if k != "completed"},
            "ttft_p50_ms": percentile(ttft, 50) * 1000, "ttft_p99_ms": percentile(ttft, 99) * 1000,
            "seconds": result["seconds"],
            "client_cpu_s": (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime),
            "loadavg": loadavg()}


def worker_pids_alive(pids: list[int]) -> int:
    return sum(1 for pid in pids if os.path.exists(f"/proc/{pid}"))


# -- report -----------------------------------------------------------------------------------

def _config(d: dict[str, Any]) -> str:
    return (f"{d['workers']} workers x {d['threads']} threads ({d['reserved_threads']} reserved, "
            f"{d['queue_depth']} queue) = {d['capacity']} work slots")


def report(data: dict[str, Any]) -> None:
    configs = sorted({r["config"] for r in data["runs"]})
    print(f"\nCapacity of the default configuration: {'; '.join(configs)}; upstream streams {UPSTREAM_TOKENS} "
          f"tokens over {(UPSTREAM_TOKENS - 1) * UPSTREAM_INTERVAL:g} s; {data['machine']['cpus']} CPUs")
    for r in data["runs"]:
        print(f"  {r['label']}: gunicorn.conf.py exports {r['defaults']['exported']}")
    print()
    headers = ["run", "streams", "completed", "refused (503)", "errors", "TTFT p50 ms", "TTFT p99 ms",
               "/healthz p99 ms", "/healthz max ms", "worker RSS idle MB", "worker RSS peak MB", "KB / open stream",
               "loadavg before", "loadavg after"]
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for r in data["runs"]:
        cells = [r["label"], r["n"], r["completed"], r["refused"], r["errors"], r["ttft_p50_ms"], r["ttft_p99_ms"],
                 r["healthz_p99_ms"], r["healthz_max_ms"], r["rss_idle_mb"], r["rss_peak_mb"],
                 r["kb_per_open_stream"], r["loadavg_before"], r["loadavg"]]
        print("| " + " | ".join(_cell(c) for c in cells) + " |")
    print()
    print(table(["run", "max open streams", "max accept backlog", "503 after p50 ms", "503 after p99 ms",
                 "Retry-After", "healthz probes", "healthz failures", "upstream CPU share", "upstream max in flight",
                 "client CPU s", "worker CPU s", "worker CPU ms/stream", "log"],
                [[r["label"], r["max_open_streams"], r["max_listen_backlog"], r["refused_after_p50_ms"],
                  r["refused_after_p99_ms"],
                  " ".join(f"{k}:{v}" for k, v in r["retry_after"].items()) or "-", r["healthz_probes"],
                  " ".join(f"{k}:{v}" for k, v in r["healthz_failures"].items()) or "-",
                  r["upstream"]["cpu_share"], r["upstream"]["max_in_flight"], r["client_cpu_s"], r["worker_cpu_s"],
                  r["worker_cpu_ms_per_stream"],
                  " ".join(f"{k}:{v}" for k, v in r["log"].items() if v) or "clean"] for r in data["runs"]]))
    d = data.get("direct")
    if d:
        print(f"\nthe harness alone: {d['n']} streams from this client straight to the upstream: {d['completed']} "
              f"completed, TTFT p50 {d['ttft_p50_ms']:.0f} ms p99 {d['ttft_p99_ms']:.0f} ms, client CPU "
              f"{d['client_cpu_s']:.2f} s, loadavg {d['loadavg']}" + (f"; errors {d['errors']}" if d["errors"] else ""))
    for r in data["runs"]:
        if r["error_kinds"]:
            print(f"errors in {r['label']}: {r['error_kinds']}")
        if r["workers_alive_at_end"] != len(r["workers"]):
            print(f"{r['label']}: only {r['workers_alive_at_end']} of {len(r['workers'])} workers alive at the end")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if value != value else (f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}")
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000", help="stream counts, comma-separated (default 100,1000)")
    parser.add_argument("--burst-factor", type=float, default=2.0,
                        help="a last run of this many times capacity (default 2; 0: none)")
    parser.add_argument("--no-direct", dest="direct", action="store_false",
                        help="skip the run of the harness alone (client straight to the upstream)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    RESULTS.mkdir(exist_ok=True)
    nofile = raise_nofile_limit()
    runs: list[tuple[str, int | None]] = [(f"N={n}", n) for n in (int(x) for x in args.sizes.split(",") if x.strip())]
    if args.burst_factor > 0:
        runs.append((f"burst {args.burst_factor:g}x capacity", None))  # sized from the defaults of its start
    data: dict[str, Any] = {"nofile": nofile, "runs": []}
    command = ["bench/stream_upstream.py", "--port", "0", "--tokens", str(UPSTREAM_TOKENS),
               "--interval", str(UPSTREAM_INTERVAL)]
    with UpstreamProcess(command=command) as upstream:
        if args.direct:
            n = max((size for _, size in runs if size is not None), default=100)
            print(f"the harness alone: {n} streams straight to the upstream ...", flush=True)
            data["direct"] = run_direct(n, upstream)
        for label, size in runs:
            # read before each run: the run reports the configuration it really measured
            defaults = gunicorn_defaults()
            n = size if size is not None else round(args.burst_factor * defaults["capacity"])
            if 2 * n + 200 > nofile:
                print(f"warning: RLIMIT_NOFILE is {nofile}; {n} streams need about {2 * n} open files")
            print(f"{label}: {n} streams against {_config(defaults)} ...", flush=True)
            try:
                result = run_once(label, n, upstream, defaults["workers"])
            except RuntimeError as exc:  # e.g. gunicorn did not start: say so, go on with the other runs
                print(f"  {label} failed: {exc}", flush=True)
                data.setdefault("failed_runs", []).append({"label": label, "n": n, "error": str(exc)})
                continue
            result["defaults"] = defaults
            result["config"] = _config(defaults)
            print(f"  completed {result['completed']}, refused {result['refused']}, errors {result['errors']} "
                  f"{result['error_kinds'] or ''}; TTFT p50 {result['ttft_p50_ms']:.0f} ms p99 "
                  f"{result['ttft_p99_ms']:.0f} ms; /healthz p99 {result['healthz_p99_ms']:.1f} ms; "
                  f"loadavg {result['loadavg']}", flush=True)
            data["runs"].append(result)
    data["machine"] = machine()
    data["seconds"] = round(time.perf_counter() - started, 1)
    report(data)
    path = write_json("capacity.json", data)
    print(f"\nwrote {path} in {data['seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
