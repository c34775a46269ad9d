"""The gunicorn worker starts all its request threads when it boots (a burst does not wait for thread starts
on the worker's main loop) and sets the GIL's switch interval from FLOWBRIDGE_SWITCH_INTERVAL."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer
from webapp.config import ConfigError
from webapp.server.worker import DEFAULT_SWITCH_INTERVAL, switch_interval

THREADS = 24


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def test_every_request_thread_is_started_at_boot(tmp_path: Path, upstream: FakeUpstream) -> None:
    env = {"LLM_BASE_URL": upstream.base_url, "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db")}
    with GunicornServer(env, workers=1, threads=THREADS, log_path=tmp_path / "gunicorn.log") as server:
        (pid,) = server.worker_pids
        # the main thread and the request threads at least, though only a health check or two was served
        assert threads_of(pid) >= THREADS + 1
        with requests.get(server.url + "/healthz", timeout=10) as r:
            assert r.status_code == 200


def test_the_switch_interval_has_a_default_and_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWBRIDGE_SWITCH_INTERVAL", raising=False)
    assert switch_interval() == DEFAULT_SWITCH_INTERVAL
    monkeypatch.setenv("FLOWBRIDGE_SWITCH_INTERVAL", "0.005")
    assert switch_interval() == 0.005


@pytest.mark.parametrize("bad", ["soon", "0", "-1", "nan", "2"])
def test_a_bad_switch_interval_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("FLOWBRIDGE_SWITCH_INTERVAL", bad)
    with pytest.raises(ConfigError, match="FLOWBRIDGE_SWITCH_INTERVAL"):
        switch_interval()
