"""Start real servers for tests and benchmarks: gunicorn running the app, on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def terminate(process: subprocess.Popen, wait: float = 60) -> None:
    """SIGTERM ``process`` and wait for it (``wait`` s), then SIGKILL; nothing when it already ended."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(wait)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)

class GunicornServer:
    """``gunicorn -c gunicorn.conf.py <app>`` in a subprocess, stopped with SIGTERM.

    :meth:`start` returns once every worker has answered ``/healthz`` (their pids are in
    :attr:`worker_pids`): on a loaded machine the second worker can still be importing the app
    long after the first answers, and a test that counts on both would see only one.

    :param env: extra environment (e.g. ``LLM_BASE_URL`` of a fake upstream).
    :param app: the WSGI target, ``wsgi:app`` unless a test serves another.
    """

    def __init__(self, env: Mapping[str, str], *, workers: int = 2, threads: int = 4,
                 app: str = "wsgi:app", log_path: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "FLOWBRIDGE_BIND": f"127.0.0.1:{self.port}",
                    "WEB_CONCURRENCY": str(workers), "GUNICORN_THREADS": str(threads)}
        self.app = app
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.worker_pids: set[int] = set()
        self._log = None

    def start(self, timeout: float = 180.0) -> GunicornServer:
        self._log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), self.app],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=self._log,
        )
        # A subclass may replace self.env without WEB_CONCURRENCY: then one worker answering is enough.
        workers = int(self.env.get("WEB_CONCURRENCY") or 1)
        self.worker_pids = set()
        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(2 * workers) as pool:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"gunicorn exited with {self.process.returncode}; log: {self.log_path}")
                # A burst of fresh connections, so that every worker ready to accept gets some.
                self.worker_pids.update(pid for pid in pool.map(self._healthz_pid, range(2 * workers)) if pid)
                if len(self.worker_pids) >= workers:
                    return self
                time.sleep(0.2)
        answered = sorted(self.worker_pids)
        self.stop()
        raise RuntimeError(f"gunicorn: {len(answered)} of {workers} workers answered /healthz within {timeout}s "
                           f"(pids {answered}); log: {self.log_path}")

    def _healthz_pid(self, _: int) -> int | None:
        """The pid of the worker that answers one ``/healthz`` on a new connection, None if none does."""
        try:
            with requests.get(self.url + "/healthz", headers={"Connection": "close"}, timeout=2) as response:
                return int(response.json()["pid"]) if response.ok else None
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return None

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)
        self.process = None
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()  # type: ignore[union-attr]
            self._log = None

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def two_servers_on_one_store(folder: Path, upstream_url: str, first_workers: int = 2,
                             second_workers: int = 1, task_db: str | None = None,
                             ) -> Iterator[tuple[GunicornServer, GunicornServer]]:
    """Two gunicorn masters sharing one task store: what one runs, the other reports.

    :param task_db: ``FLOWBRIDGE_TASK_DB`` (e.g. a ``postgresql://`` URL); default a SQLite file in ``folder``.
    """
    env = {"LLM_BASE_URL": upstream_url, "LLM_MAX_RETRIES": "0",
           "FLOWBRIDGE_TASK_DB": task_db or str(folder / "tasks.db")}
    with GunicornServer(env, workers=first_workers, threads=4, log_path=folder / "first.log") as first, \
            GunicornServer(env, workers=second_workers, threads=4, log_path=folder / "second.log") as second:
        yield first, second


class QueueWorker:
    """``python -m webapp.cli worker`` in a subprocess (what ``flowbridge worker`` runs), ready once it says so.

    :param args: more command-line arguments (``--loglevel WARNING``...).
    """

    def __init__(self, env: Mapping[str, str], log_path: Path, concurrency: int = 2, args: tuple[str, ...] = ()) -> None:
        self.env, self.log_path, self.concurrency, self.args = dict(env), log_path, concurrency, args
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> QueueWorker:
        """Start the process; :meth:`wait_ready` waits for it (start several, then wait for each)."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "webapp.cli", "worker", "--concurrency", str(self.concurrency), *self.args],
                cwd=ROOT, env={**os.environ, **self.env}, stdout=log, stderr=log)
        return self

    def wait_ready(self, timeout: float = 120) -> QueueWorker:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # it says so once it consumes the queue
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log()}")
            if b" ready: " in self.log_path.read_bytes():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready within {timeout}s: {self.log()}")

    def start(self, timeout: float = 120) -> QueueWorker:
        return self.launch().wait_ready(timeout)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)
