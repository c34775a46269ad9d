"""A request refused by the worker's main loop (every thread and the overflow busy) gets its 503 even when
its client is still sending the body: the worker keeps the connection open, reading and dropping what
arrives, until the client closes it (or a short linger ends), instead of resetting it under the client."""

from __future__ import annotations

import select
import socket
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer

BODY = b'{"message": "a body sent in two parts, after the answer came"}'


def slow_chat(url: str, i: int) -> int:
    with requests.post(f"{url}/api/chat", json={"message": f"q{i}"}, timeout=60) as r:
        return r.status_code


def test_a_refused_client_still_sending_its_body_reads_its_503(tmp_path: Path, upstream: FakeUpstream) -> None:
    env = {"LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0", "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db"),
           "FLOWBRIDGE_RESERVED_THREADS": "0", "FLOWBRIDGE_QUEUE_DEPTH": "0"}
    with GunicornServer(env, workers=1, threads=8, log_path=tmp_path / "gunicorn.log") as server:
        upstream.configure(delay=8.0)
        with ThreadPoolExecutor(32) as pool:
            held = [pool.submit(slow_chat, server.url, i) for i in range(8)]
            assert upstream.wait_for(lambda s: s["in_flight"] == 8, timeout=30)
            # 16 fill the overflow, and once one of the 8 more is refused the worker refuses every new request
            more = [pool.submit(slow_chat, server.url, 8 + i) for i in range(24)]
            assert any(f.result() == 503 for f in as_completed(more, timeout=60))

            with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
                sock.sendall(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(BODY))
                assert select.select([sock], [], [], 20)[0], "no answer to the headers"  # the 503, not read yet
                sock.sendall(BODY[:20])  # a closed server socket answers this with a reset
                poller = select.poll()
                poller.register(sock, select.POLLERR | select.POLLHUP | select.POLLRDHUP)
                poller.poll(3000)  # bounded: a reset shows at once; a lingering server closes after 2 s
                sock.sendall(BODY[20:])
                sock.shutdown(socket.SHUT_WR)
                answer = b""
                while data := sock.recv(65536):
                    answer += data
            [f.result(timeout=60) for f in held + more]
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b'"type": "overloaded"' in answer and b"Retry-After: " in answer
