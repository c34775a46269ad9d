"""Helpers shared by the benchmarks: a fake upstream in a subprocess, statistics, output."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

#: what ``GET /bench/log-probe`` (bench/sync_view_app.py) logs through urllib3's logger
LOG_PROBE = "flowbridge-bench log probe"

#: seconds to wait for the fake upstream to print READY
_READY_TIMEOUT = 30.0


class UpstreamProcess:
    """``python -m tests.fake_upstream`` in its own process, so its CPU never shares our GIL.

    :param delay: seconds the fake waits before answering each API request.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:port`` (where ``/_control/*`` lives)."""
        return self.base_url.removesuffix("/v1")

    def start(self) -> UpstreamProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_upstream", "--port", "0", "--delay", str(self.delay)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(_READY_TIMEOUT)
        if not line or not line[0].startswith("READY "):
            self.stop()
            raise RuntimeError(f"fake upstream did not start: {line!r}")
        self.base_url = line[0].split()[1]
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def __enter__(self) -> UpstreamProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def worker_pids(master: int) -> list[int]:
    """gunicorn's workers: the master's children (Linux /proc)."""
    try:
        return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    except OSError:
        return []


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` (Linux /proc); 0 where unavailable."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by the nearest-rank method."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def machine() -> dict[str, Any]:
    """Where and when the numbers were taken."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with right-aligned columns (the first one left-aligned)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(parts))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # nan
            return "-"
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path
