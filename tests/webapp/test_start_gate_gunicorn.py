"""The start gate under real gunicorn (webapp.server.worker with webapp.guards.gate), one worker, one slot.

- a health check goes past a full gate; another request waits for the permit (the lease is long);
- a request that keeps its permit past the lease no longer holds the others;
- a client slow to send its request gives its permit back while the worker waits for it;
- the real app's LLM calls give theirs back once sent, so concurrent chats reach the upstream together.

What each test observes is an order of events (who answered before whom), never a duration.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer
from tests.webapp.test_start_gate import until

WAIT = 60.0  # seconds any step may take on a loaded machine before the test fails


def gate_server(tmp_path: Path, lease: str) -> GunicornServer:
    markers = tmp_path / "markers"
    markers.mkdir()
    env = {"FLOWBRIDGE_TEST_MARKER_DIR": str(markers), "FLOWBRIDGE_START_SLOTS": "1",
           "FLOWBRIDGE_START_LEASE": lease, "LLM_BASE_URL": "http://127.0.0.1:9/v1"}
    return GunicornServer(env, workers=1, threads=8, app="tests.webapp.gate_app:app",
                          log_path=tmp_path / "gunicorn.log")


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(8) as executor:
        yield executor


def hold(pool: ThreadPoolExecutor, server: GunicornServer, markers: Path, name: str) -> Future:
    """A request that keeps the permit until ``<name>.release`` exists; returns once it holds it."""
    held = pool.submit(requests.post, f"{server.url}/hold?name={name}", timeout=WAIT)
    assert until(lambda: (markers / f"{name}.held").exists(), timeout=WAIT)
    return held


def test_a_health_check_passes_a_full_gate_while_other_requests_wait(
        tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    with gate_server(tmp_path, lease="300") as server:
        markers = tmp_path / "markers"
        held = hold(pool, server, markers, "a")
        other = pool.submit(requests.get, f"{server.url}/other", timeout=WAIT)
        for _ in range(5):
            health = requests.get(f"{server.url}/healthz", timeout=WAIT)
            assert health.status_code == 200
        assert not other.done()  # /other waits its turn: the only permit is held, its lease far off
        (markers / "a.release").touch()
        assert held.result(WAIT).text == "done"
        assert other.result(WAIT).text == "done"


def test_a_request_past_its_lease_no_longer_holds_the_others(tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    with gate_server(tmp_path, lease="0.2") as server:
        markers = tmp_path / "markers"
        held = hold(pool, server, markers, "a")
        assert requests.get(f"{server.url}/other", timeout=WAIT).text == "done"
        assert not held.done()  # answered while the holder still holds
        (markers / "a.release").touch()
        assert held.result(WAIT).status_code == 200


@pytest.mark.parametrize("start", [b"GET /other HTTP/1.1\r\nHost: 127", b"POST /other HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Length: 10\r\nContent-Type: text/plain\r\n\r\nhalf"],
                         ids=["headers", "body"])
def test_a_client_slow_to_send_its_request_gives_its_permit_back(
        tmp_path: Path, pool: ThreadPoolExecutor, start: bytes) -> None:
    with gate_server(tmp_path, lease="300") as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as slow:
        slow.sendall(start)  # and then nothing, for now: its thread waits on the client, not at the gate
        assert requests.get(f"{server.url}/other", timeout=WAIT).text == "done"
        rest = b".0.0.1\r\n\r\n" if start.startswith(b"GET") else b"-rest-"
        slow.sendall(rest)
        answer = b""
        for _ in range(100):  # headers and body may come in separate segments
            chunk = slow.recv(65536)
            answer += chunk
            if not chunk or answer.endswith(b"done"):
                break
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"done")


def test_llm_calls_give_their_permits_back_so_concurrent_chats_reach_the_upstream_together(
        tmp_path: Path, pool: ThreadPoolExecutor) -> None:
    with FakeUpstream() as upstream:
        upstream.configure(delay=3.0)
        env = {"LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0", "FLOWBRIDGE_START_SLOTS": "1",
               "FLOWBRIDGE_START_LEASE": "300", "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db")}
        with GunicornServer(env, workers=1, threads=16, log_path=tmp_path / "gunicorn.log") as server:
            bodies = [{"message": f"chat {i}", "stream": i % 2 == 1} for i in range(6)]
            answers = [pool.submit(requests.post, f"{server.url}/api/chat", json=body, timeout=WAIT)
                       for body in bodies]
            assert upstream.wait_for(lambda s: s["in_flight"] >= 6, timeout=WAIT), upstream.stats()
            assert [answer.result(WAIT).status_code for answer in answers] == [200] * 6
            metrics = requests.get(f"{server.url}/metrics", timeout=WAIT).text
            assert "\nflowbridge_start_gate_waiting 0.0\n" in metrics  # the worker's gate, sampled
