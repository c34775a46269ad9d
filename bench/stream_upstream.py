"""A slow streaming OpenAI-compatible upstream on asyncio, for ``bench/capacity.py``.

``tests/fake_upstream.py`` gives every connection a thread: fine for tests, but
thousands of streams open at once would cost it more than the server under test.
This one is a bare asyncio HTTP/1.1 server (no framework, one process, one
thread) that answers:

* ``POST /v1/chat/completions`` with ``"stream": true``: an SSE stream over
  chunked encoding, the first token at once, then one token every
  ``--interval`` seconds until ``--tokens`` tokens were sent (the default is
  17 tokens, 8 s), then ``finish_reason: stop`` and ``[DONE]``. A user
  message containing ``[quick]`` gets its tokens without the pauses (warm-up);
* the same without ``"stream"``: one JSON completion at once;
* ``GET /v1/models``; ``GET /_stats``: streams started, completed, in flight and
  the peak of in flight, so the bench can check the upstream kept up;
  ``POST /_stats/reset-peak`` starts a new peak.

Run: ``python bench/stream_upstream.py --port 0``; prints ``READY <base_url>``
once listening, stops on SIGTERM/SIGINT. 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any

#: request head and body limits: this serves the bench, not the internet
MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024


class StreamUpstream:
    def __init__(self, tokens: int, interval: float) -> None:
        self.tokens = tokens
        self.interval = interval
        self.stats = {"requests": 0, "streams_started": 0, "streams_completed": 0, "streams_closed_early": 0,
                      "in_flight": 0, "max_in_flight": 0, "connections": 0}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: requests until the client closes it (keep-alive)."""
        self.stats["connections"] += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                length = int(headers.get("content-length") or 0)
                if length > MAX_BODY or "chunked" in headers.get("transfer-encoding", "").lower():
                    await self._send(writer, 400, {"error": {"type": "invalid_request_error",
                                                             "message": "send a Content-Length body"}}, close=True)
                    return
                body = await reader.readexactly(length) if length else b""
                self.stats["requests"] += 1
                if not await self._route(method, path.split("?", 1)[0], body, writer):
                    return
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _route(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is done."""
        if (method, path) == ("GET", "/v1/models"):
            await self._send(writer, 200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
            return True
        if (method, path) == ("GET", "/_stats"):
            await self._send(writer, 200, self.stats)
            return True
        if (method, path) == ("POST", "/_stats/reset-peak"):  # the peak of in flight, from now on
            self.stats["max_in_flight"] = self.stats["in_flight"]
            await self._send(writer, 200, self.stats)
            return True
        if (method, path) != ("POST", "/v1/chat/completions"):
            await self._send(writer, 404, {"error": {"type": "not_found", "message": f"no route {method} {path}"}})
            return True
        try:
            payload = json.loads(body)
            users = [m for m in payload["messages"] if m.get("role") == "user"]
            prompt = str(users[-1].get("content", "")) if users else ""
        except (ValueError, KeyError, TypeError, AttributeError):
            await self._send(writer, 400, {"error": {"type": "invalid_request_error", "message": "bad chat body"}})
            return True
        model = payload.get("model") or "fake-model"
        if payload.get("stream") is not True:
            await self._send(writer, 200, {
                "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "echo: " + prompt},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})
            return True
        return await self._stream(writer, model, pause=0.0 if "[quick]" in prompt else self.interval)

    async def _stream(self, writer: asyncio.StreamWriter, model: str, pause: float) -> bool:
        stats = self.stats
        stats["streams_started"] += 1
        stats["in_flight"] += 1
        stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        created = int(time.time())

        def frame(delta: dict[str, Any], finish: str | None) -> bytes:
            chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            data = b"data: " + json.dumps(chunk).encode() + b"\n\n"
            return b"%x\r\n%s\r\n" % (len(data), data)

        try:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            for i in range(self.tokens):
                if i and pause:
                    await asyncio.sleep(pause)
                delta = {"role": "assistant", "content": "tok0"} if i == 0 else {"content": f" tok{i}"}
                writer.write(frame(delta, None))
                await writer.drain()
            done = b"data: [DONE]\n\n"
            writer.write(frame({}, "stop") + b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
            await writer.drain()
        except ConnectionError:
            stats["streams_closed_early"] += 1
            return False
        finally:
            stats["in_flight"] -= 1
        stats["streams_completed"] += 1
        return True

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, status: int, obj: Any, close: bool = False) -> None:
        body = json.dumps(obj).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        if close:
            head += "Connection: close\r\n"
        writer.write((head + "\r\n").encode() + body)
        await writer.drain()


async def serve(host: str, port: int, tokens: int, interval: float) -> None:
    upstream = StreamUpstream(tokens, interval)
    server = await asyncio.start_server(upstream.handle, host, port, backlog=4096, limit=MAX_HEAD)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bound = server.sockets[0].getsockname()
    print(f"READY http://{bound[0]}:{bound[1]}/v1", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=17, help="tokens per stream (default 17)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between tokens (default 0.5)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.tokens, args.interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
