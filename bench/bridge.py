"""What the sync-to-async bridges cost per call, with 1 and with 16 concurrent callers.

a. ``await client.chat_async(...)`` against ``client.chat(...)``, talking to a
   zero-delay fake upstream in a subprocess (so its CPU does not share our GIL).
b. an ``async_route`` view, and the seed's new-loop-per-request decorator,
   against a plain sync view doing the same trivial work, called through
   ``app.wsgi_app`` directly (an HTTP client would drown the difference).
   Also counts the event loops and threads each variant creates.

Every variant is measured in the same run, interleaved in rounds whose order
rotates, and each figure is the median over rounds: the machine is shared and
noisy, so only side-by-side numbers mean anything.

Run: ``.venv/bin/python bench/bridge.py`` (about a minute). Prints tables and a
PASS/FAIL line per target, writes ``bench/results/bridge.json``, exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import itertools
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask, jsonify  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

import async_utils  # noqa: E402
from bench._common import UpstreamProcess, machine, median, table, write_json  # noqa: E402
from llm_client import LLMClient  # noqa: E402

CALLERS = 16
#: async_route's overhead with 16 callers must be at most this share of the seed decorator's
TARGET_SHARE_OF_SEED = 0.5

# -- counters for the bench only -------------------------------------------------------------
# Counting with itertools.count costs ~0.1 us, far below what is measured.
_loop_counter = itertools.count()
_thread_counter = itertools.count()
_original_new_event_loop = asyncio.new_event_loop
_original_thread_start = threading.Thread.start


def _counting_new_event_loop() -> asyncio.AbstractEventLoop:
    next(_loop_counter)
    return _original_new_event_loop()


def _counting_thread_start(self: threading.Thread) -> None:
    next(_thread_counter)
    _original_thread_start(self)


def _count(counter: itertools.count) -> int:
    """Current value of an itertools.count without advancing it."""
    return int(repr(counter)[6:-1])


asyncio.new_event_loop = _counting_new_event_loop  # async_utils._loops calls asyncio.new_event_loop too
threading.Thread.start = _counting_thread_start  # type: ignore[method-assign]


# -- the seed's decorator, verbatim (seeds/002) ------------------------------------------------

def seed_async_route(f):  # type: ignore[no-untyped-def]
    @functools.wraps(f)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(f(*args, **kwargs))
        finally:
            loop.close()
    return wrapper


# -- running jobs on persistent threads -------------------------------------------------------

class Gang:
    """``n`` persistent threads; :meth:`run` starts ``job(i)`` on all of them at once.

    Persistent so that thread-local state (HTTP sessions, async_route's loop)
    is built once, in the warm-up, as in a gunicorn worker.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self._start = threading.Barrier(n + 1)
        self._done = threading.Barrier(n + 1)
        self._job: Callable[[int], object] | None = None
        self._errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True, name=f"caller-{i}")
                         for i in range(n)]
        for thread in self._threads:
            thread.start()

    def _loop(self, i: int) -> None:
        while True:
            self._start.wait()
            job = self._job
            if job is None:
                return
            try:
                job(i)
            except BaseException as exc:  # reported by run()
                self._errors.append(exc)
            self._done.wait()

    def run(self, job: Callable[[int], object]) -> float:
        """Run ``job(i)`` on every thread; return the wall time in seconds."""
        self._job = job
        self._start.wait()
        t0 = time.perf_counter()
        self._done.wait()
        elapsed = time.perf_counter() - t0
        if self._errors:
            raise self._errors[0]
        return elapsed

    def stop(self) -> None:
        self._job = None
        self._start.wait()
        for thread in self._threads:
            thread.join()


def interleave(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run every variant once per round, rotating the order; collect what each returns."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            samples[name].append(variants[name]())
    return samples


# -- a. chat_async vs chat ---------------------------------------------------------------------

def bench_client(rounds: int, calls_1: int, calls_16: int, gang: Gang) -> dict[str, Any]:
    with UpstreamProcess(delay=0.0) as upstream:
        client = LLMClient(base_url=upstream.base_url, model="fake-model", max_retries=0,
                           max_workers=CALLERS, timeout=30, env={})
        loop = asyncio.new_event_loop()
        per_thread = calls_16 // CALLERS

        def sync_1() -> float:
            t0 = time.perf_counter()
            for _ in range(calls_1):
                client.chat("hi")
            return (time.perf_counter() - t0) / calls_1 * 1e6

        async def _seq(n: int) -> None:
            for _ in range(n):
                await client.chat_async("hi")

        def async_1() -> float:
            t0 = time.perf_counter()
            loop.run_until_complete(_seq(calls_1))
            return (time.perf_counter() - t0) / calls_1 * 1e6

        def sync_16() -> float:
            elapsed = gang.run(lambda i: [client.chat("hi") for _ in range(per_thread)])
            return elapsed / (per_thread * CALLERS) * 1e6

        async def _workers() -> None:
            await asyncio.gather(*(_seq(per_thread) for _ in range(CALLERS)))

        def async_16() -> float:
            t0 = time.perf_counter()
            loop.run_until_complete(_workers())
            return (time.perf_counter() - t0) / (per_thread * CALLERS) * 1e6

        async def _chunks() -> None:
            for _ in range(per_thread):
                await asyncio.gather(*(client.chat_async("hi") for _ in range(CALLERS)))

        def async_16_chunks() -> float:
            t0 = time.perf_counter()
            loop.run_until_complete(_chunks())
            return (time.perf_counter() - t0) / (per_thread * CALLERS) * 1e6

        bridge = getattr(client, "_bridge", None)  # private; only for the decomposition row

        async def _hops(n: int) -> None:
            for _ in range(n):
                await bridge.run(_noop)

        def hop_1() -> float:
            t0 = time.perf_counter()
            loop.run_until_complete(_hops(calls_1))
            return (time.perf_counter() - t0) / calls_1 * 1e6

        variants = {"sync_1": sync_1, "async_1": async_1, "sync_16": sync_16, "async_16": async_16,
                    "async_16_chunks": async_16_chunks}
        if bridge is not None:
            variants["bridge_noop_1"] = hop_1
        # warm-up: every thread opens its session and keep-alive connection
        for fn in variants.values():
            fn()
        samples = interleave(variants, rounds)
        loop.close()
        client.close()
    med = {name: median(values) for name, values in samples.items()}
    return {
        "calls_per_sample": {"1": calls_1, "16": per_thread * CALLERS},
        "rounds": rounds,
        "samples_us_per_call": samples,
        "median_us_per_call": med,
        "callers": {
            "1": _pair(med["sync_1"], med["async_1"]),
            "16": _pair(med["sync_16"], med["async_16"]),
            "16_gather_chunks": _pair(med["sync_16"], med["async_16_chunks"]),
        },
    }


def _noop() -> None:
    return None


def _pair(sync_us: float, async_us: float) -> dict[str, float]:
    return {"sync_us": sync_us, "async_us": async_us, "overhead_us": async_us - sync_us,
            "ratio": async_us / sync_us}


# -- b. async_route vs the seed decorator vs a sync view ---------------------------------------

def make_app() -> Flask:
    """Three views doing the same trivial work; the async ones yield to the loop once."""
    app = Flask("bench_bridge")

    @app.get("/sync")
    def sync_view() -> Any:
        return jsonify({"ok": True})

    @app.get("/async")
    @async_utils.async_route
    async def async_view() -> Any:
        await asyncio.sleep(0)
        return jsonify({"ok": True})

    @app.get("/seed")
    @seed_async_route
    async def seed_view() -> Any:
        await asyncio.sleep(0)
        return jsonify({"ok": True})

    return app


def _caller(app: Flask, path: str) -> Callable[[int], None]:
    """``call(n)`` makes ``n`` requests to ``path`` through the WSGI interface."""
    base = EnvironBuilder(path=path, method="GET").get_environ()
    statuses: list[str] = []

    def start_response(status: str, headers: list, exc_info: object = None) -> None:
        statuses.append(status)

    def call(n: int) -> None:
        for _ in range(n):
            environ = dict(base)
            environ["wsgi.input"] = io.BytesIO(b"")
            body = app(environ, start_response)
            try:
                b"".join(body)
            finally:
                body.close()
        if statuses[-1] != "200 OK":
            raise RuntimeError(f"{path} answered {statuses[-1]}")
        statuses.clear()

    return call


def bench_views(rounds: int, requests_1: int, requests_16: int, gang: Gang) -> dict[str, Any]:
    app = make_app()
    paths = {"sync": "/sync", "async_route": "/async", "seed": "/seed"}
    callers = {name: _caller(app, path) for name, path in paths.items()}
    per_thread = requests_16 // CALLERS
    counts: dict[str, dict[str, int]] = {}

    def counted(name: str, fn: Callable[[], float], n: int) -> Callable[[], float]:
        def run() -> float:
            loops0, ours0, threads0 = _count(_loop_counter), async_utils.loops_created(), _count(_thread_counter)
            active0 = threading.active_count()
            result = fn()
            c = counts.setdefault(name, {"requests": 0, "new_event_loop": 0, "loops_created": 0,
                                         "threads_started": 0, "active_threads_before": active0})
            c["requests"] += n
            c["new_event_loop"] += _count(_loop_counter) - loops0
            c["loops_created"] += async_utils.loops_created() - ours0
            c["threads_started"] += _count(_thread_counter) - threads0
            c["active_threads_after"] = threading.active_count()
            return result
        return run

    variants: dict[str, Callable[[], float]] = {}
    for name, call in callers.items():
        def one(call: Callable[[int], None] = call) -> float:
            t0 = time.perf_counter()
            call(requests_1)
            return (time.perf_counter() - t0) / requests_1 * 1e6

        def many(call: Callable[[int], None] = call) -> float:
            return gang.run(lambda i: call(per_thread)) / (per_thread * CALLERS) * 1e6

        variants[f"{name}_1"] = one
        variants[f"{name}_16"] = many

    # warm-up (not counted): each thread gets its async_route loop here
    warm_loops0 = async_utils.loops_created()
    for name, call in callers.items():
        call(50)
        gang.run(lambda i, call=call: call(20))
    warm_loops = async_utils.loops_created() - warm_loops0

    timed = {name: counted(name, fn, requests_1 if name.endswith("_1") else per_thread * CALLERS)
             for name, fn in variants.items()}
    samples = interleave(timed, rounds)
    med = {name: median(values) for name, values in samples.items()}
    result: dict[str, Any] = {
        "requests_per_sample": {"1": requests_1, "16": per_thread * CALLERS},
        "rounds": rounds,
        "samples_us_per_request": samples,
        "median_us_per_request": med,
        "warmup_loops_created": warm_loops,
        "counts": counts,
        "callers": {},
    }
    for n in ("1", "16"):
        sync = med[f"sync_{n}"]
        row = {"sync_us": sync}
        for view in ("async_route", "seed"):
            row[f"{view}_us"] = med[f"{view}_{n}"]
            row[f"{view}_overhead_us"] = med[f"{view}_{n}"] - sync
        row["async_route_share_of_seed_overhead"] = row["async_route_overhead_us"] / row["seed_overhead_us"]
        result["callers"][n] = row
    return result


# -- report ------------------------------------------------------------------------------------

def report(client: dict[str, Any], views: dict[str, Any]) -> list[dict[str, Any]]:
    print("\na. chat_async vs chat, zero-delay fake upstream (median of %d rounds, us per call)"
          % client["rounds"])
    rows = []
    for key, label in (("1", "1 caller (sequential)"), ("16", "16 callers (threads vs gather of 16 workers)"),
                       ("16_gather_chunks", "16 callers (threads vs gather in chunks of 16)")):
        c = client["callers"][key]
        rows.append([label, c["sync_us"], c["async_us"], c["overhead_us"], f"{c['ratio']:.3f}"])
    print(table(["callers", "chat us", "chat_async us", "overhead us", "ratio"], rows))
    hop = client["median_us_per_call"].get("bridge_noop_1")
    if hop is not None:
        print(f"   for scale: one empty hop through the bridge (await bridge.run(noop)), 1 caller: {hop:.1f} us")

    print("\nb. views through app.wsgi_app (median of %d rounds, us per request)" % views["rounds"])
    rows = []
    for n in ("1", "16"):
        c = views["callers"][n]
        rows.append([f"{n} caller{'s' if n != '1' else ''}", c["sync_us"], c["async_route_us"],
                     c["seed_us"], c["async_route_overhead_us"], c["seed_overhead_us"],
                     f"{c['async_route_share_of_seed_overhead']:.2f}"])
    print(table(["callers", "sync", "async_route", "seed", "async_route ovh", "seed ovh", "share"], rows))

    print("\n   loops and threads created during the timed runs (after warm-up)")
    rows = []
    for name in ("sync_1", "sync_16", "async_route_1", "async_route_16", "seed_1", "seed_16"):
        c = views["counts"][name]
        rows.append([name, c["requests"], c["new_event_loop"], c["loops_created"],
                     f"{c['new_event_loop'] / c['requests']:.3f}", c["threads_started"],
                     f"{c['active_threads_before']}->{c['active_threads_after']}"])
    print(table(["variant", "requests", "new_event_loop", "async_utils loops", "loops/req",
                 "threads started", "active threads"], rows))
    print(f"   warm-up: async_utils created {views['warmup_loops_created']} loops "
          f"(one per calling thread: main + {CALLERS})")

    verdicts = []
    share = views["callers"]["16"]["async_route_share_of_seed_overhead"]
    verdicts.append({"target": f"16 callers: async_route overhead <= {TARGET_SHARE_OF_SEED} x seed overhead",
                     "value": round(share, 3), "pass": share <= TARGET_SHARE_OF_SEED})
    route_loops = sum(views["counts"][k]["loops_created"] for k in ("async_route_1", "async_route_16"))
    verdicts.append({"target": "async_route creates no event loop per request after warm-up",
                     "value": route_loops, "pass": route_loops == 0})
    route_threads = sum(views["counts"][k]["threads_started"] for k in ("async_route_1", "async_route_16"))
    verdicts.append({"target": "async_route starts no thread per request",
                     "value": route_threads, "pass": route_threads == 0})
    print()
    for v in verdicts:
        print(f"{'PASS' if v['pass'] else 'FAIL'}: {v['target']} (measured {v['value']})")
    seed = views["counts"]["seed_16"]
    print(f"info: seed decorator created {seed['new_event_loop'] / seed['requests']:.2f} event loops per request")
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per part (default 7)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the calls per sample")
    args = parser.parse_args(argv)
    s = args.scale
    started = time.perf_counter()
    gang = Gang(CALLERS)
    try:
        client = bench_client(args.rounds, int(300 * s), int(960 * s), gang)
        views = bench_views(args.rounds, int(2000 * s), int(4800 * s), gang)
    finally:
        gang.stop()
    verdicts = report(client, views)
    path = write_json("bridge.json", {
        "machine": machine(), "seconds": round(time.perf_counter() - started, 1),
        "client": client, "views": views, "verdicts": verdicts,
    })
    print(f"\nwrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path} "
          f"in {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
