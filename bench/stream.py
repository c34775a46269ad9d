"""Time to first event and to first ``content`` of ``POST /api/chat`` streams, next to the upstream itself.

Setup: a fake upstream in its own process that starts answering after 100 ms;
gunicorn with 2 workers x 4 gthread threads serving ``wsgi:app`` against it.
One client, one request at a time (latency, not throughput), keep-alive.

Two variants, interleaved request by request (A B, B A, ...):

* **direct**: ``POST {upstream}/chat/completions`` with ``"stream": true``;
  time to the first chunk carrying text.
* **flowbridge**: ``POST /api/chat`` with ``"stream": true``; time to the first
  event (``start``) and to the first ``content`` event.

Added latency = median(flowbridge first content) - median(direct first
content); target under 5 ms. The round trip of ``GET /healthz`` (gunicorn
and Flask with no work) is measured alongside, for scale. A last part measures how long after a client
drops a stream the upstream sees its response closed (the design bound is
about one probe interval, 0.5 s).

Run: ``.venv/bin/python bench/stream.py`` (about 30 s). Writes
``bench/results/stream.json``; exits 0 whatever it measured.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from bench._common import UpstreamProcess, machine, median, percentile, table, write_json  # noqa: E402
from tests.servers import GunicornServer  # noqa: E402

UPSTREAM_DELAY = 0.1
TARGET_ADDED_MS = 5.0
REPLY_PROMPT = [{"role": "user", "content": "stream me a few words please"}]


def _first_times(response: requests.Response, first_marker: bytes, content_marker: bytes) -> tuple[float, float]:
    """Seconds (from now-ish: the caller subtracts its t0) to the first frame and to the first content frame."""
    first = content = float("nan")
    buffer = b""
    for chunk in response.iter_content(chunk_size=None):
        now = time.perf_counter()
        buffer += chunk
        if first != first and first_marker in buffer:
            first = now
        if content_marker in buffer:
            content = now
            break
    return first, content


def direct(session: requests.Session, upstream_url: str) -> tuple[float, float]:
    body = {"model": "fake-model", "messages": REPLY_PROMPT, "stream": True}
    t0 = time.perf_counter()
    with session.post(upstream_url + "/chat/completions", json=body, stream=True, timeout=30) as response:
        response.raise_for_status()
        first, content = _first_times(response, b"data: ", b'"content": "')
        for _ in response.iter_content(chunk_size=None):  # drain, so the connection is reused
            pass
    return first - t0, content - t0


def flowbridge(session: requests.Session, url: str) -> tuple[float, float]:
    body = {"messages": REPLY_PROMPT, "stream": True}
    t0 = time.perf_counter()
    with session.post(url + "/api/chat", json=body, stream=True, timeout=30) as response:
        response.raise_for_status()
        first, content = _first_times(response, b'"type":"start"', b'"type":"content"')
        for _ in response.iter_content(chunk_size=None):
            pass
    return first - t0, content - t0


def disconnect_delay(url: str, upstream: UpstreamProcess) -> float:
    """Seconds from a client dropping a chat stream to the upstream counting its stream closed early."""
    control = upstream.root_url + "/_control"
    requests.post(control + "/configure", json={"stream_chunk_delay": 0.05,
                                                "reply": " ".join(["word"] * 400)}, timeout=5)
    try:
        before = requests.get(control + "/stats", timeout=5).json()["streams_closed_early"]
        with requests.Session() as session:
            response = session.post(url + "/api/chat", json={"messages": REPLY_PROMPT, "stream": True},
                                    stream=True, timeout=30)
            for chunk in response.iter_content(chunk_size=None):
                if b'"type":"content"' in chunk:
                    break
            dropped = time.perf_counter()
            response.close()  # unread body: urllib3 closes the connection instead of reusing it
        for _ in range(500):  # at most 5 s
            if requests.get(control + "/stats", timeout=5).json()["streams_closed_early"] > before:
                return time.perf_counter() - dropped
            time.sleep(0.01)
        return float("nan")
    finally:
        requests.post(control + "/configure", json={"stream_chunk_delay": 0.0, "reply": None}, timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=60, help="requests per variant (default 60)")
    parser.add_argument("--disconnects", type=int, default=8, help="disconnect trials (default 8)")
    args = parser.parse_args(argv)

    samples: dict[str, list[float]] = {"direct first content": [], "flowbridge first event": [],
                                       "flowbridge first content": [], "GET /healthz (for scale)": []}
    with UpstreamProcess(delay=UPSTREAM_DELAY) as upstream:
        env = {"LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0", "FLOWBRIDGE_TASK_DB": "memory"}
        with GunicornServer(env, workers=2, threads=4) as server, requests.Session() as session:
            for _ in range(3):  # warm-up: connections, worker loops, the client's pool
                direct(session, upstream.base_url)
                flowbridge(session, server.url)
            for i in range(args.requests):
                order = (0, 1) if i % 2 == 0 else (1, 0)
                for which in order:
                    if which == 0:
                        _first, content = direct(session, upstream.base_url)
                        samples["direct first content"].append(content)
                    else:
                        first, content = flowbridge(session, server.url)
                        samples["flowbridge first event"].append(first)
                        samples["flowbridge first content"].append(content)
                t0 = time.perf_counter()
                session.get(server.url + "/healthz", timeout=10).raise_for_status()
                samples["GET /healthz (for scale)"].append(time.perf_counter() - t0)
            drops = [disconnect_delay(server.url, upstream) for _ in range(args.disconnects)]

    ms = {name: [v * 1000 for v in values] for name, values in samples.items()}
    rows = [[name, median(v), percentile(v, 90), min(v), max(v)] for name, v in ms.items()]
    print(f"Streams against an upstream that starts after {UPSTREAM_DELAY * 1000:.0f} ms "
          f"({args.requests} requests per variant, interleaved), ms:\n")
    print(table(["", "median", "p90", "min", "max"], rows))
    added = median(ms["flowbridge first content"]) - median(ms["direct first content"])
    drop_ms = [d * 1000 for d in drops]
    print(f"\nadded to the first content at the median: {added:.2f} ms (target < {TARGET_ADDED_MS} ms)")
    print(f"first event after: {median(ms['flowbridge first event']):.2f} ms (before the upstream answers)")
    print(f"client drop -> upstream response closed: median {median(drop_ms):.0f} ms, "
          f"max {max(drop_ms):.0f} ms over {len(drop_ms)} trials")
    print(("PASS" if added < TARGET_ADDED_MS else "FAIL") + f" added latency {added:.2f} ms < {TARGET_ADDED_MS} ms")
    path = write_json("stream.json", {
        "machine": machine(), "upstream_delay_s": UPSTREAM_DELAY, "requests": args.requests,
        "samples_ms": ms, "added_ms": added, "disconnect_ms": drop_ms,
        "medians_ms": {name: median(v) for name, v in ms.items()},
    })
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
