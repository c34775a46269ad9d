"""nginx in front of a live gunicorn, with the configuration the README's production section gives:
event streams pass through unbuffered (the app sends ``X-Accel-Buffering: no``), everything else is
buffered, clients too slow to send their headers are cut off by nginx, and slow bodies are held by nginx
until complete, so neither takes a gunicorn thread."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
pytestmark = pytest.mark.skipif(not os.access(NGINX, os.X_OK), reason="nginx is not installed (Debian: nginx-light)")

#: The server block of the README (production section), with the addresses and timeouts filled in.
SERVER_BLOCK = """
upstream flowbridge {{
    server {backend};
    keepalive 64;                       # reuse connections to gunicorn
}}
server {{
    listen {listen};
    client_header_timeout {header_timeout}; # a client must send its headers in time, else 408
    client_body_timeout {body_timeout};   # and its body (between two reads)
    client_max_body_size 1m;            # as the app's MAX_CONTENT_LENGTH
    location / {{
        proxy_pass http://flowbridge;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_request_buffering on;     # gunicorn gets whole requests only
        proxy_buffering on;             # and is not held by slow readers; event streams say
                                        # X-Accel-Buffering: no and pass through at once
        proxy_read_timeout 1h;          # a stream may be quiet between heartbeats (FLOWBRIDGE_SSE_HEARTBEAT)
    }}
}}
"""


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("nginx")
    env = {"LLM_BASE_URL": _upstream_server.base_url, "LLM_MAX_RETRIES": "0",
           "FLOWBRIDGE_TASK_DB": str(folder / "tasks.db"),
           # gunicorn's own read deadlines out of the way: here nginx alone protects the threads
           "FLOWBRIDGE_HEADER_TIMEOUT": "60", "FLOWBRIDGE_BODY_TIMEOUT": "60",
           # and no capacity guard: the slow bodies, once whole, arrive at once and queue in gthread
           "FLOWBRIDGE_RESERVED_THREADS": "0", "FLOWBRIDGE_QUEUE_DEPTH": "0"}
    with GunicornServer(env, workers=1, threads=16, log_path=folder / "gunicorn.log") as server:
        port = free_port()
        prefix = folder / "nginx"
        prefix.mkdir()
        conf = prefix / "nginx.conf"
        temp = "".join(f"{kind}_temp_path {prefix / kind};\n"
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf.write_text(
            # as root, nginx's workers would run as "nobody", who cannot write to the test's folder
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"worker_processes 1;\npid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'} info;\n"
            + "events { worker_connections 256; }\n"
            + "http {\naccess_log off;\n" + temp
            + SERVER_BLOCK.format(backend=f"127.0.0.1:{server.port}", listen=f"127.0.0.1:{port}",
                                  header_timeout="2s", body_timeout="2s")
            + "}\n")
        stderr = open(prefix / "stderr.log", "wb")  # noqa: SIM115 (closed below)
        process = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                assert process.poll() is None, (prefix / "stderr.log").read_text()
                try:
                    with requests.get(url + "/healthz", timeout=2) as r:
                        if r.status_code == 200:
                            break
                except requests.RequestException:
                    pass
                time.sleep(0.1)
            yield {"url": url, "port": port, "gunicorn": server}
        finally:
            process.send_signal(signal.SIGQUIT)  # graceful stop
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
            stderr.close()


def test_a_chat_stream_passes_through_nginx_as_it_is_produced(proxied: dict[str, Any],
                                                              upstream: FakeUpstream) -> None:
    upstream.configure(reply="one two three four five six", stream_chunk_delay=0.5)
    events = []
    with requests.post(proxied["url"] + "/api/chat", json={"message": "hi", "stream": True}, stream=True,
                       timeout=30) as r:
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "content" and not any(e["type"] == "content" for e in events):
                # the first delta arrived while the upstream was still producing the answer: not buffered
                assert upstream.stats()["streams_completed"] == 0
            events.append(event)
    assert "".join(e["data"] for e in events if e["type"] == "content") == "one two three four five six"
    assert events[-1]["type"] == "done"


def test_plain_requests_and_health_checks_pass_through(proxied: dict[str, Any], upstream: FakeUpstream) -> None:
    with requests.get(proxied["url"] + "/healthz", timeout=10) as r:
        assert r.status_code == 200
    with requests.post(proxied["url"] + "/api/chat", json={"message": "via nginx"}, timeout=30) as r:
        assert r.status_code == 200 and r.json()["response"] == "echo: via nginx"


def trickle(port: int, start: bytes, drip: bytes, pause: float = 0.2) -> tuple[bytes, int]:
    """Send ``start``, then ``drip`` a byte at a time until the other side answers or hangs up."""
    sent, answer = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(start)
        try:
            for sent in range(1, len(drip) + 1):  # noqa: B007 (read after the loop)
                if select.select([sock], [], [], pause)[0]:
                    break
                sock.sendall(drip[sent - 1:sent])
            while chunk := sock.recv(65536):
                answer += chunk
        except (BrokenPipeError, ConnectionResetError):
            pass
    return answer, sent


def header_trickler(port: int) -> tuple[bytes, int]:
    return trickle(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", b"a" * 150)  # 30 s at most


def body_trickler(port: int) -> tuple[bytes, int]:
    body = json.dumps({"message": "slow"}).encode()  # 19 bytes: about 4 s
    return trickle(port, b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body), body)


def test_nginx_holds_slow_clients_so_gunicorn_threads_stay_free(proxied: dict[str, Any]) -> None:
    """gunicorn here has 16 threads and 60 s read deadlines: 32 slow bodies and 16 slow headers would
    take every thread. nginx cuts the headers off (client_header_timeout) and hands the bodies on only
    once complete, so health checks keep answering and the slow bodies are served in the end."""
    port = proxied["port"]
    with ThreadPoolExecutor(48) as pool:
        headers = [pool.submit(header_trickler, port) for _ in range(16)]
        bodies = [pool.submit(body_trickler, port) for _ in range(32)]
        health = []
        for _ in range(5):
            with requests.get(proxied["url"] + "/healthz", timeout=10) as r:
                health.append(r.status_code)
        header_results = [f.result(timeout=120) for f in headers]
        body_results = [f.result(timeout=120) for f in bodies]
    assert health == [200] * 5
    for answer, sent in header_results:
        assert sent < 150  # nginx hung up (it sends nothing back to half a request)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408")
    for answer, _ in body_results:  # client_body_timeout is between two reads: a steady trickle gets through
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["response"] == "echo: slow"
