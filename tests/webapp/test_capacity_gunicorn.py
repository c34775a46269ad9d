"""Capacity under real gunicorn: the default configuration holds hundreds of concurrent streams, and a
burst beyond capacity waits in a bounded queue before a 503 whose Retry-After comes from the queue."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer

STREAMS = 200
#: 40 words, one every 0.5 s: each stream lasts about 20 s, long enough for all of them to overlap.
REPLY = " ".join(f"w{i}" for i in range(40))


def default_server(env: dict[str, str], log_path: Path) -> GunicornServer:
    """gunicorn.conf.py's own workers and threads: nothing but bind and the upstream set."""
    server = GunicornServer(env, log_path=log_path)
    for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS"):
        server.env.pop(name, None)
    return server


async def stream_chat(port: int, i: int) -> tuple[int, bytes]:
    """One streamed chat on its own connection: the status and the whole body."""
    body = json.dumps({"message": f"q{i}", "stream": True}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 120)
        return int(head.split(b" ", 2)[1]), await asyncio.wait_for(reader.read(), 180)
    finally:
        writer.close()


async def many_streams(port: int, n: int) -> list[tuple[int, bytes]]:
    return await asyncio.gather(*(stream_chat(port, i) for i in range(n)))


def test_the_default_configuration_serves_hundreds_of_concurrent_streams(tmp_path: Path,
                                                                          upstream: FakeUpstream) -> None:
    upstream.configure(reply=REPLY, stream_chunk_delay=0.5)
    env = {"LLM_BASE_URL": upstream.base_url, "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db")}
    with default_server(env, tmp_path / "gunicorn.log") as server, ThreadPoolExecutor(1) as pool:
        streams = pool.submit(asyncio.run, many_streams(server.port, STREAMS))
        # all of them at once at the upstream: none was refused or left waiting for a thread
        assert upstream.wait_for(lambda s: s["in_flight"] >= STREAMS, timeout=60), upstream.stats()
        health = []
        for _ in range(5):
            with requests.get(server.url + "/healthz", timeout=30) as r:
                health.append(r.status_code)
        assert upstream.stats()["streams_completed"] == 0  # answered while every stream still ran
        results = streams.result(timeout=240)
    assert health == [200] * 5
    assert [status for status, _ in results] == [200] * STREAMS
    for _, body in results:
        assert b'"type":"done"' in body and b'"type":"error"' not in body
    assert upstream.stats()["max_concurrency"] >= STREAMS


def chat_burst(url: str, n: int) -> list[dict[str, Any]]:
    def ask(i: int) -> dict[str, Any]:
        with requests.post(f"{url}/api/chat", json={"message": f"q{i}"}, timeout=60) as r:
            return {"status": r.status_code, "body": r.json(), "retry_after": r.headers.get("Retry-After")}

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(ask, range(n)))


def test_a_burst_waits_in_a_bounded_queue_then_gets_503_with_a_computed_retry_after(
        tmp_path: Path, upstream: FakeUpstream) -> None:
    """8 threads: 2 reserved, 2 may queue (1 s at most), 4 work slots. Of 10 slow chats, 4 run, the rest
    are refused: at once when the queue is full, after waiting when it is not; /healthz answers meanwhile."""
    env = {"LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0", "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db"),
           "FLOWBRIDGE_RESERVED_THREADS": "2", "FLOWBRIDGE_QUEUE_DEPTH": "2", "FLOWBRIDGE_QUEUE_WAIT": "1"}
    with GunicornServer(env, workers=1, threads=8, log_path=tmp_path / "gunicorn.log") as server:
        # Slots held 4 s each teach the worker its service time, from which Retry-After is computed.
        upstream.configure(delay=4.0)
        assert [r["status"] for r in chat_burst(server.url, 4)] == [200] * 4

        upstream.configure(delay=5.0)  # longer than the queue wait: no waiting request gets a slot
        with ThreadPoolExecutor(1) as pool:
            burst = pool.submit(chat_burst, server.url, 10)
            assert upstream.wait_for(lambda s: s["in_flight"] == 4, timeout=30)
            with requests.get(server.url + "/healthz", timeout=30) as r:
                assert r.status_code == 200
            results = burst.result(timeout=120)
        assert upstream.stats()["max_concurrency"] == 4

    ok = [r for r in results if r["status"] == 200]
    refused = [r for r in results if r["status"] == 503]
    assert len(ok) == 4 and len(refused) == 6
    full = [r for r in refused if "queue is full" in r["body"]["error"]["message"]]
    waited = [r for r in refused if "stayed busy for FLOWBRIDGE_QUEUE_WAIT=1s" in r["body"]["error"]["message"]]
    assert full and waited and len(full) + len(waited) == 6
    for r in refused:
        assert r["body"]["error"]["type"] == "overloaded"
        assert int(r["retry_after"]) >= 1
    # refused with 2 waiting and slots held >= 4 s: (2 + 1) x service time / 4 slots, rounded up, is >= 2
    assert all(int(r["retry_after"]) >= 2 for r in full)
