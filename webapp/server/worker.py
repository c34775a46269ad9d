"""gunicorn's gthread worker with a deadline on reading each request (``worker_class`` in gunicorn.conf.py).

gthread reads a request's headers, and the application its body, on a request
thread with blocking reads and no overall limit: a client sending one byte a
second holds a thread for as long as it likes, and a few dozen of them used to
take every thread of a worker (``/healthz`` then timed out). This worker bounds
the *total* time, not each read:

- **headers**: from the request's first byte (or, on a kept-alive connection,
  from when it became readable) the client has ``FLOWBRIDGE_HEADER_TIMEOUT``
  seconds to send the request line and headers;
- **body**: then ``FLOWBRIDGE_BODY_TIMEOUT`` seconds for the whole body. The
  worker reads a body of up to ``MAX_CONTENT_LENGTH`` itself, before the
  application runs, so the application never blocks on a slow client; a longer
  declared body is left to the application, which answers 413 without reading it;
  a chunked one that runs past the limit gets 413 from the worker.

A client too slow gets **408** with a JSON error body and the connection is
closed. The deadline is enforced on every ``recv`` (its socket timeout is what
is left of the deadline), so it holds whatever the client's pace. Responses are
written without a deadline: an event stream may run as long as its client reads.

An idle new connection is gunicorn's own business: it waits a few seconds for
its first byte on a thread, then on the worker's poller until ``keepalive``.

It sets the GIL's switch interval (:func:`switch_interval`). Its request threads
(:class:`~.threads.RequestThreads`) start as requests need them, on a helper thread (the main loop
never waits for one to start), and the thread idle for the shortest time serves the next request,
keeping its upstream connection warm. A health or status check that must wait for a thread goes
ahead of the other requests waiting. Every other request passes the start gate
(:mod:`webapp.guards.gate`): a few compute at once, the rest wait their turn asleep, so the main
loop and health checks never queue for the GIL behind hundreds of starting requests.

The worker also notes when it was asked to stop (:attr:`FlowbridgeWorker.stop_deadline`),
so gunicorn.conf.py's ``worker_exit`` knows how much of ``graceful_timeout`` is left.
"""

from __future__ import annotations

import atexit
import logging
import os
import selectors
import socket
import sys
import threading
import time
from collections import deque
from functools import partial
from typing import Any

from gunicorn.http.body import Body
from gunicorn.workers.gthread import _DEFER, DEFAULT_WORKER_DATA_TIMEOUT, TConn, ThreadWorker

from llm_client.observe import add_wait_observer

from ..config import DEFAULTS, ConfigError, _number
from ..guards.capacity import capacity_of
from ..guards.gate import StartGate, admitted, install, waiting
from . import overflow
from .reading import BodyTooLarge, Buffered, ClientTooSlow, DeadlineSocket, answer_for, content_length
from .threads import RequestThreads

__all__ = ["BodyTooLarge", "ClientTooSlow", "FlowbridgeWorker", "exit_now", "switch_interval"]


#: Connections a worker accepts at most each time its listening socket is readable.
ACCEPT_BATCH = 16
#: Seconds a connection refused by the worker stays open after its 503 for the client to close it.
LINGER = 2.0


#: Seconds a thread may keep the GIL while others wait for it (``sys.setswitchinterval``; Python's own
#: default is 0.005). A worker's threads are I/O-bound (a stream wakes for a token, writes it, waits):
#: forcing a switch every 5 ms among a thousand of them mostly costs context switches. Measured with
#: bench/capacity.py (1,000 streams starting at once): 0.001 doubled the CPU per stream, 0.02 cut the
#: time to first content and /healthz latency while they start.
DEFAULT_SWITCH_INTERVAL = 0.02


def switch_interval() -> float:
    """``FLOWBRIDGE_SWITCH_INTERVAL`` (seconds, 0.0001 to 1), else :data:`DEFAULT_SWITCH_INTERVAL`.

    :raises ConfigError: naming the variable when it is not such a number.
    """
    value = os.environ.get("FLOWBRIDGE_SWITCH_INTERVAL") or DEFAULT_SWITCH_INTERVAL
    seconds = float(_number("FLOWBRIDGE_SWITCH_INTERVAL", value, float, minimum=0.0001))
    if not seconds <= 1:  # also NaN
        raise ConfigError(f"FLOWBRIDGE_SWITCH_INTERVAL must be at most 1 (seconds), got {value!r}")
    return seconds


def _setting(name: str) -> float:
    return float(_number(name, os.environ.get(name) or DEFAULTS[name], float, minimum=0.001))


class FlowbridgeWorker(ThreadWorker):
    """gthread, plus deadlines on reading requests and the time its graceful stop must end by."""

    #: monotonic time by which a stopping worker must have exited (None while it serves)
    stop_deadline: float | None = None

    def init_process(self) -> None:
        self.header_timeout = _setting("FLOWBRIDGE_HEADER_TIMEOUT")
        self.body_timeout = _setting("FLOWBRIDGE_BODY_TIMEOUT")
        self.max_body = int(_number("MAX_CONTENT_LENGTH", os.environ.get("MAX_CONTENT_LENGTH")
                                    or DEFAULTS["MAX_CONTENT_LENGTH"], int, minimum=1))
        #: requests handed to the thread pool and not finished (changed on the main loop only)
        self.in_flight = 0
        self.shed_at = self.cfg.threads + overflow.overflow_size(self.cfg.threads)
        #: refused connections waiting for their client to close them: (monotonic deadline, socket)
        self.lingering: deque[tuple[float, socket.socket]] = deque()
        sys.setswitchinterval(switch_interval())
        slots = int(_number("FLOWBRIDGE_START_SLOTS", os.environ.get("FLOWBRIDGE_START_SLOTS")
                            or DEFAULTS["FLOWBRIDGE_START_SLOTS"], int, minimum=0))
        #: at most ``slots`` requests computing at once (webapp.guards.gate); None: no gate
        self.gate = StartGate(slots, _setting("FLOWBRIDGE_START_LEASE")) if slots else None
        install(self.gate)
        add_wait_observer(waiting)  # an LLM call about to wait gives its request's permit back
        super().init_process()

    def load_wsgi(self) -> None:
        """gthread's, with ``start_response`` giving the request's start permit back: its view is done."""
        super().load_wsgi()
        self.wsgi = _PermitBackOnStart(self.wsgi)

    def get_thread_pool(self) -> RequestThreads:
        """Request threads started off the main loop and reused last-idle-first (see :mod:`.threads`)."""
        return RequestThreads(self.cfg.threads)

    def enqueue_req(self, conn: Any) -> None:
        """Hand ``conn`` to a request thread, or answer 503 here when even the overflow is full.

        See :mod:`webapp.server.overflow`. A new connection whose request has not arrived yet waits
        on the poller (as gthread parks idle connections), so its first line can be looked at.
        """
        data = overflow.peek(conn.sock) if conn.initialized or self.in_flight >= self.shed_at else None
        if data == b"" and not (conn.initialized and conn.parser.unreader.buf.getvalue()):
            self.nr_conns -= 1  # the client closed its (kept-alive) connection: no thread needed to see that
            conn.close()
            return
        if self.in_flight >= self.shed_at:
            if data is None and not conn.initialized:
                self._park(conn)
                return
            if data is not None and not overflow.is_light(overflow.first_line(data)):
                backlog = self.in_flight - self.cfg.threads
                self.nr_conns -= 1
                if overflow.refuse(conn.sock, overflow.estimate_retry_after(capacity_of(self.wsgi), backlog)):
                    self._linger(conn.sock)
                return
        self.in_flight += 1
        if data is None and not conn.initialized and not self.tpool.idle:
            data = overflow.peek(conn.sock)  # it will wait for a thread: a health check goes first
        light = data is not None and overflow.is_light(overflow.first_line(data))
        future = (self.tpool.submit_first if light else self.tpool.submit)(self.handle, conn)
        future.add_done_callback(lambda done: self.method_queue.defer(self._finished, conn, done))

    def _linger(self, sock: socket.socket) -> None:
        """Close a refused connection once its client closed it, or after :data:`LINGER` s; meanwhile
        read and drop what it still sends (see :func:`overflow.refuse`). On the poller: no thread."""
        self.lingering.append((time.monotonic() + LINGER, sock))
        try:
            self.poller.register(sock, selectors.EVENT_READ, self._drain)
        except (OSError, ValueError, KeyError):
            self._unlinger(sock)

    def _drain(self, sock: socket.socket) -> None:
        try:
            if sock.recv(65536):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._unlinger(sock)  # the client closed its side (or the connection broke): done

    def _unlinger(self, sock: socket.socket) -> None:
        """Close ``sock``; idempotent (a closed socket has no fd left to unregister or close)."""
        try:
            self.poller.unregister(sock)
        except (OSError, ValueError, KeyError):
            pass
        sock.close()

    def murder_keepalived(self, force: bool = False) -> None:
        """gthread's (a request that arrived meanwhile is served, see :meth:`_serve_arrived`), and close the
        refused connections whose linger is over (all of them when forced)."""
        if not force:
            self._serve_arrived(self.keepalived_conns, self.on_client_socket_readable)
        super().murder_keepalived(force)
        now = time.monotonic()
        while self.lingering and (force or self.lingering[0][0] <= now):
            self._unlinger(self.lingering.popleft()[1])

    def murder_pending(self) -> None:
        """gthread's, but a new connection whose request arrived meanwhile is served, not reset."""
        self._serve_arrived(self.pending_conns, self.on_pending_socket_readable)
        super().murder_pending()

    def _serve_arrived(self, conns: deque[Any], on_readable: Any) -> None:
        """Hand on the connections of ``conns`` whose wait is over but whose client has sent by now.

        gthread closes a waiting connection once its time is up, after one turn of the loop. During
        a burst that turn can take long enough for a client's request to arrive after the poller was
        asked and before the close: closing a socket with unread bytes resets the connection, and
        the client never gets an answer (hundreds of resets in a 2x burst, bench/capacity.py). A
        request that is there is dispatched as the poller would have; an idle one is closed as before.
        """
        now = time.monotonic()
        arrived = []
        for conn in conns:  # ordered by deadline
            if conn.timeout > now:
                break
            if overflow.peek(conn.sock):
                arrived.append(conn)
        for conn in arrived:
            on_readable(conn, conn.sock)

    def _finished(self, conn: Any, future: Any) -> None:
        self.in_flight -= 1
        self.finish_request(conn, future)

    def _park(self, conn: Any) -> None:
        """Wait on the poller for the connection's first bytes, without a thread (gthread's deferral)."""
        conn.sock.setblocking(False)
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn))

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.stop_deadline is None:
            self.stop_deadline = time.monotonic() + self.cfg.graceful_timeout
        super().handle_exit(sig, frame)

    def accept(self, listener: socket.socket) -> None:
        """Accept the connections waiting (up to :data:`ACCEPT_BATCH`), not just one per turn of the loop.

        gthread accepts one connection each time its poller wakes; during a burst of hundreds, a
        health check's connection waited in the listen queue behind all of them while the loop
        competed for the GIL with the request threads. A small batch keeps connections spread over
        the workers (the one that wakes first does not take them all).
        """
        for _ in range(ACCEPT_BATCH):
            if self.nr_conns >= self.worker_connections:
                return
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            self.nr_conns += 1
            sock.setblocking(True)
            self.enqueue_req(TConn(self.cfg, sock, addr, listener.getsockname()))

    def handle(self, conn: Any) -> Any:
        """Start the header deadline, then let gthread read and serve the request."""
        if not conn.initialized and not conn.data_ready and not conn.wait_for_data(DEFAULT_WORKER_DATA_TIMEOUT):
            return _DEFER  # nothing yet: gthread parks the connection on its poller (as its handle would)
        conn.sock.setblocking(True)
        # A health or status check goes straight on; other requests take their turn at the start gate.
        light = self.gate is None or overflow.is_light(overflow.first_line(overflow.peek(conn.sock) or b""))
        with admitted(None if light else self.gate):
            return self._handle(conn)

    def _handle(self, conn: Any) -> Any:
        conn.init()
        unreader = getattr(conn.parser, "unreader", None)
        if unreader is not None and hasattr(unreader, "sock"):  # HTTP/1 (an HTTP/2 parser reads otherwise)
            if not isinstance(unreader.sock, DeadlineSocket):
                unreader.sock = DeadlineSocket(unreader.sock)
            unreader.sock.deadline = (time.monotonic() + self.header_timeout,
                                      ClientTooSlow("headers", "FLOWBRIDGE_HEADER_TIMEOUT", self.header_timeout))
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> bool:
        """Read the body under its deadline, then serve the request with no read deadline left."""
        reader = getattr(conn.parser, "unreader", None)
        timed = getattr(reader, "sock", None)
        if isinstance(timed, DeadlineSocket):
            timed.deadline = (time.monotonic() + self.body_timeout,
                              ClientTooSlow("body", "FLOWBRIDGE_BODY_TIMEOUT", self.body_timeout))
            try:
                self._read_body(req, conn)
            finally:
                timed.deadline = None
        return super().handle_request(req, conn)

    def _read_body(self, req: Any, conn: Any) -> None:
        """Replace ``req.body`` by the whole body, read now (at most ``MAX_CONTENT_LENGTH`` bytes)."""
        body = req.body
        if body is None:
            return
        length = content_length(req)
        if length == 0 or (length is not None and length > self.max_body):
            return  # nothing to read, or the application refuses it (413) without reading it
        if getattr(req, "_expected_100_continue", False):
            conn.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            req._expected_100_continue = False  # sent: the WSGI layer must not send it again
        data = body.read(self.max_body + 1)
        if len(data) > self.max_body:  # a chunked body over the limit (werkzeug would cut it short silently)
            raise BodyTooLarge(self.max_body)
        req.body = Body(Buffered(data))

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        """A request too slow, too large or not HTTP gets a JSON error (:func:`.reading.answer_for`); the
        rest is gunicorn's."""
        answer = answer_for(exc)
        if answer is None:
            super().handle_error(req, client, addr, exc)
            return
        status, body = answer
        self.log.info("%s for %s: %s", status[:3], addr[0] if isinstance(addr, tuple) and addr else addr, exc)
        head = (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n").encode()
        try:
            client.settimeout(1.0)  # the client is slow to send; it may be slow to read too
            client.sendall(head + body)
        except OSError:
            pass


class _PermitBackOnStart:
    """A WSGI application whose ``start_response`` first calls :func:`~webapp.guards.gate.waiting`.

    Everything else is the application's own (gunicorn.conf.py's ``worker_exit`` reads the Flask app's
    ``extensions`` through ``worker.wsgi``).
    """

    def __init__(self, application: Any) -> None:
        self.application = application

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        def starting(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            waiting()
            return start_response(status, headers, exc_info)
        return self.application(environ, starting)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.application, name)


def exit_now(log: Any, linger: float = 0.5) -> None:
    """End this worker process now if threads still run (gunicorn.conf.py's ``worker_exit`` calls it last).

    At interpreter exit Python joins every non-daemon thread, and ``concurrent.futures`` every pool
    thread: a worker whose grace is over would wait for LLM calls (up to ``LLM_TIMEOUT``) or requests
    past ``graceful_timeout`` whose results nobody will receive, until the master kills it. Instead,
    once the stores are closed, run the exit handlers and leave at once.
    """
    until = time.monotonic() + linger  # threads of pools just shut down need a moment to notice
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, until - time.monotonic()))
    stuck = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if not stuck:
        return  # a normal exit
    log.warning("worker %s exits abandoning %d running threads (LLM calls or requests past graceful_timeout)",
                os.getpid(), len(stuck))
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)
