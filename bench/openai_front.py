"""The OpenAI front door: ``POST /v1/chat/completions`` next to ``POST /api/chat`` and the upstream itself.

Setup: a fake upstream in its own process answering after 50 ms; gunicorn with the repository's
defaults (:class:`bench._common.DefaultGunicorn`) serving ``wsgi:app`` against it. One run measures
the three endpoints side by side:

* **throughput**: ``CLIENTS`` client threads (each with its own keep-alive Session) send
  non-streamed chats (temperature 0.7: no cache) for a fixed number of requests per round; rounds
  rotate the endpoints (A B C, B C A, C A B...). Reported: median requests/s and p50/p99 latency.
* **time to first token**: one client, one streamed chat at a time, interleaved; the time from
  sending to the first frame carrying text (the upstream's first ``content`` chunk, ``/api/chat``'s
  first ``content`` event, ``/v1``'s first chunk with ``content``).

Then the ratios /v1 : /api/chat and /v1 : direct, with the machine's load average before and after.

Run: ``.venv/bin/python bench/openai_front.py`` (about a minute). Writes
``bench/results/openai_front.json``; exits 0 whatever it measured.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from bench._common import (  # noqa: E402
    DefaultGunicorn,
    UpstreamProcess,
    loadavg,
    machine,
    median,
    percentile,
    table,
    write_json,
)

UPSTREAM_DELAY = 0.05
CLIENTS = 16
DIRECT, API, V1 = "upstream direct", "flowbridge /api/chat", "flowbridge /v1/chat/completions"
PROMPT = [{"role": "user", "content": "say a few words about rivers please"}]
#: what marks the first text of each kind of stream
CONTENT_MARKERS = {DIRECT: b'"content": "', API: b'"type":"content"', V1: b'"content":"'}


def request_for(endpoint: str, urls: dict[str, str], model: str, stream: bool) -> tuple[str, dict[str, Any]]:
    """URL and JSON body of one chat on ``endpoint``."""
    if endpoint == API:
        return urls["app"] + "/api/chat", {"messages": PROMPT, "temperature": 0.7, "max_tokens": 64,
                                           "stream": stream}
    body = {"model": model, "messages": PROMPT, "temperature": 0.7, "max_tokens": 64, "stream": stream}
    return (urls["upstream"] if endpoint == DIRECT else urls["app"] + "/v1") + "/chat/completions", body


def throughput_round(endpoint: str, urls: dict[str, str], model: str, count: int,
                     sessions: list[requests.Session]) -> dict[str, Any]:
    """``count`` non-streamed chats from :data:`CLIENTS` threads; requests/s and latencies."""
    url, body = request_for(endpoint, urls, model, stream=False)
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    left = iter(range(count))

    def work(session: requests.Session) -> None:
        nonlocal errors
        while True:
            with lock:
                if next(left, None) is None:
                    return
            t0 = time.perf_counter()
            try:
                with session.post(url, json=body, timeout=30) as response:
                    ok = response.status_code == 200
                    response.content  # noqa: B018 - read the whole body
            except requests.RequestException:
                ok = False
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(len(sessions)) as pool:
        list(pool.map(work, sessions))
    elapsed = time.perf_counter() - started
    return {"endpoint": endpoint, "rps": len(latencies) / elapsed, "latencies": latencies, "errors": errors}


def first_token(session: requests.Session, endpoint: str, urls: dict[str, str], model: str) -> float:
    """Seconds to the first frame carrying text of one streamed chat (nan if none came)."""
    url, body = request_for(endpoint, urls, model, stream=True)
    marker = CONTENT_MARKERS[endpoint]
    t0 = time.perf_counter()
    found = float("nan")
    with session.post(url, json=body, stream=True, timeout=30) as response:
        buffer = b""
        for chunk in response.iter_content(chunk_size=None):
            buffer += chunk
            if found != found and marker in buffer:
                found = time.perf_counter() - t0
        # drained, so the connection is reused
    return found


def run(rounds: int, per_round: int, streams: int) -> dict[str, Any]:
    load_before = loadavg()
    with UpstreamProcess(delay=UPSTREAM_DELAY) as upstream, DefaultGunicorn(upstream.base_url) as server:
        urls = {"upstream": upstream.base_url, "app": server.url}
        model = requests.get(server.url + "/v1/models", timeout=10).json()["data"][0]["id"]
        endpoints = [DIRECT, API, V1]
        sessions = [requests.Session() for _ in range(CLIENTS)]
        try:
            for endpoint in endpoints:  # warm-up: connections, worker loops, the pools
                throughput_round(endpoint, urls, model, CLIENTS * 2, sessions)
            results: dict[str, list[dict[str, Any]]] = {e: [] for e in endpoints}
            for r in range(rounds):
                for endpoint in endpoints[r % 3:] + endpoints[:r % 3]:
                    results[endpoint].append(throughput_round(endpoint, urls, model, per_round, sessions))
        finally:
            for session in sessions:
                session.close()
        ttft: dict[str, list[float]] = {e: [] for e in endpoints}
        with requests.Session() as session:
            for e in endpoints:
                first_token(session, e, urls, model)
            for i in range(streams):
                for endpoint in endpoints[i % 3:] + endpoints[:i % 3]:
                    ttft[endpoint].append(first_token(session, endpoint, urls, model))
    return {"results": results, "ttft": ttft, "loadavg_before": load_before, "loadavg_after": loadavg(),
            "model": model}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="throughput rounds per endpoint (default 6)")
    parser.add_argument("--requests", type=int, default=400, help="requests per round (default 400)")
    parser.add_argument("--streams", type=int, default=40, help="streamed chats per endpoint (default 40)")
    args = parser.parse_args(argv)
    data = run(args.rounds, args.requests, args.streams)

    summary: dict[str, dict[str, float]] = {}
    for endpoint, rounds in data["results"].items():
        latencies = [v * 1000 for r in rounds for v in r["latencies"]]
        first = [v * 1000 for v in data["ttft"][endpoint] if v == v]
        summary[endpoint] = {"rps": median([r["rps"] for r in rounds]), "p50_ms": median(latencies),
                             "p99_ms": percentile(latencies, 99), "errors": sum(r["errors"] for r in rounds),
                             "ttft_ms": median(first), "ttft_p90_ms": percentile(first, 90)}
    print(f"Chats against an upstream answering after {UPSTREAM_DELAY * 1000:.0f} ms: {CLIENTS} clients, "
          f"{args.rounds} rounds x {args.requests} requests per endpoint; {args.streams} streams each for "
          f"the first token\n")
    print(table(["", "req/s", "p50 ms", "p99 ms", "errors", "first token ms", "p90"],
                [[e, s["rps"], s["p50_ms"], s["p99_ms"], s["errors"], s["ttft_ms"], s["ttft_p90_ms"]]
                 for e, s in summary.items()]))
    v1, api, direct = summary[V1], summary[API], summary[DIRECT]
    ratios = {"rps_v1_over_api": v1["rps"] / api["rps"], "rps_v1_over_direct": v1["rps"] / direct["rps"],
              "ttft_v1_minus_api_ms": v1["ttft_ms"] - api["ttft_ms"],
              "ttft_v1_minus_direct_ms": v1["ttft_ms"] - direct["ttft_ms"]}
    print(f"\nrequests/s: /v1 is {ratios['rps_v1_over_api']:.2f}x /api/chat and "
          f"{ratios['rps_v1_over_direct']:.2f}x the upstream directly")
    print(f"first token: /v1 {ratios['ttft_v1_minus_api_ms']:+.2f} ms against /api/chat, "
          f"{ratios['ttft_v1_minus_direct_ms']:+.2f} ms against the upstream directly")
    print(f"loadavg {data['loadavg_before']} before, {data['loadavg_after']} after")
    path = write_json("openai_front.json", {
        "machine": machine(), "upstream_delay_s": UPSTREAM_DELAY, "clients": CLIENTS, "rounds": args.rounds,
        "requests_per_round": args.requests, "streams": args.streams, "summary": summary, "ratios": ratios,
        "loadavg_before": data["loadavg_before"], "loadavg_after": data["loadavg_after"],
        "rps_per_round": {e: [r["rps"] for r in rounds] for e, rounds in data["results"].items()},
    })
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
