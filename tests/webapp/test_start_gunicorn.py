"""tests.servers.GunicornServer: ``start()`` returns only when every worker serves, not just the first.

On a loaded machine a second worker can still be importing the app well after the first answers;
tests that count on both workers (spread requests, shared caches, metrics across workers) then
saw only one. ``slow_boot_app`` makes that late worker happen every time.
"""

from __future__ import annotations

from pathlib import Path

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer


def test_start_waits_for_every_worker(tmp_path: Path, _upstream_server: FakeUpstream) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {"LLM_BASE_URL": _upstream_server.base_url, "FLOWBRIDGE_TEST_MARKER_DIR": str(markers),
           "FLOWBRIDGE_TEST_BOOT_DELAY": "2"}
    with GunicornServer(env, workers=2, threads=2, app="tests.webapp.slow_boot_app:app",
                        log_path=tmp_path / "gunicorn.log") as server:
        ready = {int(path.stem) for path in markers.glob("*.ready")}
        assert len(server.worker_pids) == 2
        assert server.worker_pids == ready  # each worker had its app when start() returned
