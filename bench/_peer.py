"""The asyncio peer (``bench/asyncio_peer.py``) under uvicorn in a subprocess, for ``bench/chat_load.py``."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from bench._common import ROOT, default_env, wait_for_workers
from tests.servers import free_port

#: uvicorn worker processes, as in the comparison of issue 11
PEER_WORKERS = 2
_START_TIMEOUT = 60.0


def _is_worker(pid: int) -> bool:
    """uvicorn's children are its workers and, with the spawn start method, multiprocessing's resource tracker."""
    try:
        return b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class UvicornServer:
    """``uvicorn --app-dir bench asyncio_peer:app --workers 2`` on 127.0.0.1, stopped with SIGTERM.

    Its environment is :func:`bench._common.default_env` plus ``LLM_BASE_URL``; no access log,
    like gunicorn.conf.py's default.
    """

    def __init__(self, llm_base_url: str, workers: int = PEER_WORKERS) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = default_env(LLM_BASE_URL=llm_base_url)
        self.worker_count = workers
        self.workers: list[int] = []
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> UvicornServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", "bench", "asyncio_peer:app", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(self.worker_count), "--log-level", "warning",
             "--no-access-log"],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _START_TIMEOUT
        pids: set[int] = set()
        while time.monotonic() < deadline and len(pids) < self.worker_count:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.process.returncode}")
            try:  # a new connection each time, so each worker gets to answer one
                with requests.get(self.url + "/healthz", timeout=1, headers={"Connection": "close"}) as response:
                    if response.ok:
                        pids.add(response.json()["pid"])
            except (requests.RequestException, ValueError, KeyError):
                pass
            time.sleep(0.05)
        self.workers = wait_for_workers(self.process.pid, self.worker_count, accept=_is_worker)
        if len(self.workers) < self.worker_count:
            self.stop()
            raise RuntimeError(f"uvicorn started {len(self.workers)} of {self.worker_count} workers")
        return self

    def describe(self) -> str:
        """uvicorn's version, event loop and HTTP parser ("auto" picks uvloop and httptools when installed)."""
        import uvicorn

        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
        return f"uvicorn {uvicorn.__version__} ({loop}, {parser}), {self.worker_count} workers"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def __enter__(self) -> UvicornServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
