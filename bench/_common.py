"""Helpers shared by the benchmarks: a fake upstream in a subprocess, statistics, output."""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

sys.path.insert(0, str(ROOT))
from tests.servers import GunicornServer  # noqa: E402

#: what ``GET /bench/log-probe`` (bench/sync_view_app.py) logs through urllib3's logger
LOG_PROBE = "flowbridge-bench log probe"

#: seconds to wait for the fake upstream to print READY
_READY_TIMEOUT = 30.0


class UpstreamProcess:
    """``python -m tests.fake_upstream`` in its own process, so its CPU never shares our GIL.

    :param delay: seconds the fake waits before answering each API request.
    :param command: another upstream to run instead (arguments after the interpreter); it
        must print ``READY <base_url>`` once listening, like the fake.
    """

    def __init__(self, delay: float = 0.0, command: Sequence[str] | None = None) -> None:
        self.delay = delay
        self.command = list(command) if command is not None else [
            "-m", "tests.fake_upstream", "--port", "0", "--delay", str(delay)]
        self.process: subprocess.Popen[str] | None = None
        self.base_url = ""

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:port`` (where ``/_control/*`` lives)."""
        return self.base_url.removesuffix("/v1")

    def start(self) -> UpstreamProcess:
        self.process = subprocess.Popen(
            [sys.executable, *self.command],
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
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    def __enter__(self) -> UpstreamProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


#: variables that configure the app or gunicorn: dropped from our environment when a bench
#: measures "the default configuration", so a developer's shell cannot change what it measures
_CONFIG_PREFIXES = ("WEB_CONCURRENCY", "GUNICORN_", "FLOWBRIDGE_", "LLM_", "OPENAI_", "LOG_FORMAT", "LOG_LEVEL")


def default_env(**extra: str) -> dict[str, str]:
    """Our environment without any configuration variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CONFIG_PREFIXES)}
    return env | extra


class DefaultGunicorn(GunicornServer):
    """``gunicorn -c gunicorn.conf.py <app>`` with the repository's defaults.

    Only the bind address and ``LLM_BASE_URL`` are set: no worker or thread count, no
    guard switched off. Whatever gunicorn.conf.py says when the bench runs is measured.
    """

    def __init__(self, llm_base_url: str, *, app: str = "wsgi:app", log_path: Path | None = None) -> None:
        super().__init__({}, app=app, log_path=log_path)
        self.env = default_env(FLOWBRIDGE_BIND=f"127.0.0.1:{self.port}", LLM_BASE_URL=llm_base_url)


_CONFIG_PROBE = """
import json, os, runpy
before = dict(os.environ)
conf = runpy.run_path("gunicorn.conf.py")
settings = {k: v for k, v in conf.items()
            if not k.startswith("_") and isinstance(v, (bool, int, float, str)) and k != "bind"}
exported = {k: v for k, v in os.environ.items() if before.get(k) != v}
flowbridge = {k: v for k, v in os.environ.items() if k.startswith("FLOWBRIDGE_")}
print(json.dumps({"settings": settings, "exported": exported, "flowbridge_env": flowbridge}))
"""


def gunicorn_defaults() -> dict[str, Any]:
    """What gunicorn.conf.py configures in :func:`default_env`: its settings and the variables it exports.

    Adds ``workers``, ``threads``, ``reserved_threads``, ``queue_depth`` and ``work_slots``: the
    request threads of a worker that run requests, as webapp.guards.capacity splits them (threads
    minus the reserved ones and the wait queue), and ``capacity`` = workers x work slots.
    """
    env = default_env(LLM_BASE_URL="http://127.0.0.1:9/v1")
    out = subprocess.run([sys.executable, "-c", _CONFIG_PROBE], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    seen = probe["flowbridge_env"]  # what the workers see, whether gunicorn.conf.py set it or not
    workers = int(probe["settings"].get("workers", 1))
    threads = int(probe["settings"].get("threads", 1))
    reserved = int(seen.get("FLOWBRIDGE_RESERVED_THREADS", 0))
    queue = int(seen.get("FLOWBRIDGE_QUEUE_DEPTH", 0))
    slots = threads - reserved - queue
    return {**probe, "workers": workers, "threads": threads, "reserved_threads": reserved, "queue_depth": queue,
            "work_slots": slots, "capacity": workers * slots}


def wait_for_workers(master: int, expected: int, timeout: float = 30.0,
                     accept: Callable[[int], bool] | None = None) -> list[int]:
    """The master's children once there are ``expected`` of them (those ``accept`` takes), or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [p for p in worker_pids(master) if accept is None or accept(p)]
        if len(pids) >= expected or time.monotonic() >= deadline:
            return pids
        time.sleep(0.1)


def rss_bytes(pids: Sequence[int]) -> int:
    """Resident memory of ``pids`` (VmRSS, Linux /proc); 0 for a process that is gone."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


def raise_nofile_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def loadavg() -> str:
    """``/proc/loadavg``'s first three fields."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


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
