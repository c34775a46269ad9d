"""Probes of a server under load for ``bench/capacity.py``: ``/healthz`` latency and the accept backlog."""

from __future__ import annotations

import collections
import http.client
import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

#: seconds between two /healthz probes, and the longest one may take
HEALTH_INTERVAL = 0.1
HEALTH_TIMEOUT = 10.0


def _probe_health(conn: Connection, port: int, max_seconds: float) -> None:
    """GET /healthz every HEALTH_INTERVAL on a new connection until told to stop (or max_seconds)."""
    latencies: list[float] = []
    failures: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + max_seconds
    conn.send("started")
    while time.monotonic() < deadline and not conn.poll(0):
        t0 = time.monotonic()
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=HEALTH_TIMEOUT)
        try:
            client.request("GET", "/healthz")
            response = client.getresponse()
            response.read()
            if response.status == 200:
                latencies.append(time.monotonic() - t0)
            else:
                failures[f"HTTP {response.status}"] += 1
        except OSError as exc:
            failures[type(exc).__name__] += 1
        finally:
            client.close()
        time.sleep(max(0.0, HEALTH_INTERVAL - (time.monotonic() - t0)))
    conn.send({"latencies": latencies, "failures": dict(failures)})
    conn.close()


class HealthProber:
    """``GET /healthz`` every HEALTH_INTERVAL from a process of its own, so the client's event loop cannot delay it."""

    def __init__(self, port: int, max_seconds: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_probe_health, args=(child, port, max_seconds), daemon=True)
        self.max_seconds = max_seconds

    def start(self) -> HealthProber:
        self._proc.start()
        if not self._conn.poll(30):
            raise RuntimeError("the /healthz prober did not start")
        self._conn.recv()
        return self

    def stop(self) -> dict[str, Any]:
        self._conn.send("stop")
        result = self._conn.recv() if self._conn.poll(HEALTH_TIMEOUT + 5) else {"latencies": [], "failures": {}}
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
        return result


def listen_backlog(port: int) -> int:
    """Connections waiting in the kernel for ``accept()`` on 127.0.0.1:``port`` (rx_queue of the LISTEN socket)."""
    local = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as table_file:
            for line in table_file:
                fields = line.split()
                if len(fields) > 4 and fields[1] == local and fields[3] == "0A":
                    return int(fields[4].split(":")[1], 16)
    except OSError:
        pass
    return -1
