"""Server-Sent Events: the one event protocol of every flowbridge stream.

Every stream is a sequence of frames ``data: {"type": ..., "data": ...}`` with the
types of seeds/004: ``start``, ``progress``, ``content``, ``done`` and ``error``
(whose message is ``data`` and whose code is ``error_code``). :class:`EventStream`
turns any source of such events, a sync or an async iterator, into the body of a
``text/event-stream`` response and enforces the protocol:

* the stream begins with ``start`` (one is sent first if the source does not);
* it ends with exactly one ``done`` or ``error``: the source is closed after its
  first one, a source that just stops gets a ``done``, and a source that raises
  gets an ``error`` (never a stream cut off without an end);
* a comment line goes out after ``heartbeat`` seconds of silence, so proxies keep
  idle streams open;
* an event made with :func:`with_id` goes out with an ``id:`` line (the rest of
  the frame is unchanged), so a client that reconnects sends it back as
  ``Last-Event-ID``; a stream given ``retry`` sends a ``retry:`` line once (how
  many ms a browser's ``EventSource`` waits before reconnecting); a stream that
  ``resumes`` one cut earlier does not begin with another ``start``;
* when the client goes away the source is closed (its ``finally`` runs, and an
  upstream LLM response it holds is closed) within about ``probe_interval``
  seconds for async sources. A sync source is checked between its events, and
  while it waits if it calls :func:`idle` meanwhile (a chat stream reading its
  upstream on the request thread does, every :func:`probe_interval` seconds of
  silence): :func:`idle` raises :class:`ClientGone` once the client went away,
  and sends the heartbeat when one is due.

Async sources run on the request thread's persistent loop
(:func:`async_utils.thread_loop`), the one ``async_route`` views use: nothing is
created per stream. Sync sources run on the request thread itself; a heartbeat
sent while one waits goes out through the WSGI ``write`` callable (the server's
own framing), on that same thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from flask import Response, request, stream_with_context

from async_utils import thread_loop

from .errors import classify

logger = logging.getLogger(__name__)

__all__ = [
    "ClientGone",
    "EVENT_TYPES",
    "EventStream",
    "content",
    "done",
    "encode",
    "error",
    "error_from",
    "idle",
    "last_event_id",
    "probe_interval",
    "progress",
    "sse_response",
    "start",
    "wants_stream",
    "with_id",
]

Event = dict[str, Any]

EVENT_TYPES = frozenset({"start", "progress", "content", "done", "error"})
_TERMINAL = frozenset({"done", "error"})

#: response headers of every stream (X-Accel-Buffering: nginx must not buffer it)
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
HEARTBEAT_FRAME = b": keep-alive\n\n"
#: seconds between two looks at the client of a stream while its source waits
PROBE_INTERVAL = 0.5


# -- events -------------------------------------------------------------------------------------

def start(data: Any = None) -> Event:
    return {"type": "start", "data": {} if data is None else data}


def progress(current: int, total: int, message: str = "", result: Any = None, **extra: Any) -> Event:
    """``{"current", "total", "percentage", "message"}`` plus ``result`` and any extra fields."""
    data: dict[str, Any] = {
        "current": current,
        "total": total,
        "percentage": int(100 * current / total) if total else 0,
        "message": message,
    }
    if result is not None:
        data["result"] = result
    data.update(extra)
    return {"type": "progress", "data": data}


def content(text: str) -> Event:
    return {"type": "content", "data": text}


def done(data: Any = None) -> Event:
    return {"type": "done", "data": {} if data is None else data}


def error(message: str, error_code: str = "error") -> Event:
    return {"type": "error", "data": message, "error_code": error_code}


def error_from(exc: BaseException) -> Event:
    """The ``error`` event for an exception, with the API's error type as ``error_code``."""
    status, type_, message = classify(exc)
    if status >= 500 and type_ == "internal_error":
        logger.error("stream failed", exc_info=exc)
    else:
        logger.info("stream ended with %s: %s", type_, message)
    return error(message, type_)


class IdentifiedEvent(dict[str, Any]):
    """An event (a plain dict to everything else) that goes out with an SSE ``id:`` line."""

    event_id: str = ""


def with_id(event: Event, event_id: str | int) -> Event:
    """``event`` with an SSE ``id`` (its position in the stream; one line, no NUL)."""
    text = str(event_id)
    if any(c in text for c in "\r\n\0"):
        raise ValueError(f"an SSE id is one line without NUL, got {text!r}")
    tagged = IdentifiedEvent(event)
    tagged.event_id = text
    return tagged


def encode(event: Event) -> bytes:
    """One SSE frame. JSON escapes newlines, so the payload is a single ``data:`` line; an event made
    by :func:`with_id` has an ``id:`` line first."""
    frame = b"data: " + json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode() \
        + b"\n\n"
    event_id = getattr(event, "event_id", "")
    return b"id: " + event_id.encode() + b"\n" + frame if event_id else frame


def _check(event: Any) -> Event:
    if not isinstance(event, dict) or event.get("type") not in EVENT_TYPES:
        raise TypeError(f"a stream yielded {event!r}; events are dicts whose 'type' is one of "
                        f"{', '.join(sorted(EVENT_TYPES))}")
    return event


# -- the client's connection ---------------------------------------------------------------------

def client_gone(sock: socket.socket | None) -> bool:
    """True when the peer closed ``sock``; False when it is open or cannot be told.

    A non-blocking peek reads nothing: b"" means the peer sent FIN, an error
    means the connection was reset, BlockingIOError means it is open and quiet.
    """
    if sock is None:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except (ConnectionError, TimeoutError):
        return True
    except (OSError, ValueError):  # e.g. TLS sockets refuse flags; a closed fd
        return False


def _request_socket() -> socket.socket | None:
    environ = request.environ
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    return sock if isinstance(sock, socket.socket) else None


class ClientGone(Exception):
    """Raised by :func:`idle` in a source whose client went away: the source stops, closing what it holds."""


_driving = threading.local()  # .stream: the EventStream whose sync source runs on this thread now


def idle() -> None:
    """What a sync source calls while it waits (e.g. for its upstream): the stream's chores in silence.

    Sends a heartbeat when one is due; raises :class:`ClientGone` once the client went away. Does
    nothing when no :class:`EventStream` drives the caller (a source iterated directly).
    """
    stream: EventStream | None = getattr(_driving, "stream", None)
    if stream is not None:
        stream.idle()


def probe_interval() -> float:
    """Seconds between two :func:`idle` calls of a waiting source: its stream's ``probe_interval``."""
    stream: EventStream | None = getattr(_driving, "stream", None)
    return stream.probe_interval if stream is not None else PROBE_INTERVAL


# -- the stream ----------------------------------------------------------------------------------

class EventStream:
    """The body of an event-stream response: frames from ``source``, following the protocol.

    :param source: an iterator or async iterator of events.
    :param heartbeat: seconds of silence before a comment line is sent.
    :param gone: tells whether the client went away; None never checks.
    :param probe_interval: how often (seconds) an idle async stream checks ``gone``.
    :param retry: ms a browser waits before reconnecting, sent once with the first event (``retry:``);
        None sends none.
    :param resumed: the stream continues one a client was cut from: no ``start`` is added.
    """

    def __init__(
        self,
        source: Iterable[Event] | AsyncIterator[Event],
        *,
        heartbeat: float = 15.0,
        gone: Callable[[], bool] | None = None,
        probe_interval: float = PROBE_INTERVAL,
        retry: int | None = None,
        resumed: bool = False,
    ) -> None:
        self.source = source
        self.retry = retry
        self.resumed = resumed
        self.heartbeat = heartbeat
        self.gone = gone or (lambda: False)
        self.probe_interval = min(probe_interval, heartbeat)
        self.sent: list[str] = []  # event types sent, for logging and tests
        self.abandoned = False  # the client went away before the end
        #: the WSGI ``write`` callable (set by :func:`sse_response`): heartbeats while a sync source waits
        self.write: Callable[[bytes], Any] | None = None
        self._last_write = time.monotonic()

    def __iter__(self) -> Iterator[bytes]:
        events = self._async_frames() if hasattr(self.source, "__anext__") else self._sync_frames()
        began = self.resumed
        # ``retry:`` rides on the first event's frame: a frame of its own would be an empty event to
        # some client libraries (browsers ignore it either way)
        retry = b"" if self.retry is None else f"retry: {int(self.retry)}\n".encode()

        def frame(event: Event) -> bytes:
            nonlocal retry
            data, retry = retry + encode(event), b""
            return data

        try:
            for event in events:
                if event is None:
                    yield HEARTBEAT_FRAME
                    continue
                if not began and event["type"] != "start":
                    self.sent.append("start")
                    yield frame(start())
                began = True
                try:
                    data = frame(event)
                except (ValueError, TypeError) as exc:  # NaN, Infinity, an integer past 4,300 digits...
                    logger.warning("a %s event could not be written as JSON: %s", event["type"], exc)
                    self.sent.append("error")
                    yield frame(error(f"the stream's next event could not be written as JSON: {exc}",
                                      "unserializable_event"))
                    return
                self.sent.append(event["type"])
                yield data
                if event["type"] in _TERMINAL:
                    return
            if self.abandoned:
                return
            if not began:
                self.sent.append("start")
                yield frame(start())
            self.sent.append("done")
            yield frame(done())
        finally:
            events.close()  # closes the source: its finally runs now, not at garbage collection

    def _abandon(self) -> None:
        self.abandoned = True
        logger.info("client went away; closing the stream")

    def idle(self) -> None:
        """Called (through :func:`idle`) by a sync source that waits: raise ClientGone once the client
        went away, else send a heartbeat if one is due (once the stream has begun)."""
        if self.gone():
            self._abandon()
            raise ClientGone("the client went away")
        if self.write is None or not self.sent or time.monotonic() - self._last_write < self.heartbeat:
            return
        self._last_write = time.monotonic()
        try:
            self.write(HEARTBEAT_FRAME)
        except OSError:
            self._abandon()
            raise ClientGone("the client went away") from None

    # Both frame generators yield events, or None for "send a heartbeat now".

    def _sync_frames(self) -> Iterator[Event | None]:
        iterator = iter(self.source)  # type: ignore[arg-type]
        try:
            while True:
                driving, _driving.stream = getattr(_driving, "stream", None), self  # for idle()
                failure: Exception | None = None
                try:
                    event = next(iterator)
                except StopIteration:
                    return
                except ClientGone:
                    return  # abandoned: the source closed what it held on the way out
                except Exception as exc:  # noqa: BLE001 - becomes the stream's error event
                    failure = exc
                finally:
                    _driving.stream = driving
                if failure is not None:
                    yield error_from(failure)
                    return
                try:
                    checked = _check(event)
                except TypeError as exc:
                    yield error_from(exc)
                    return
                self._last_write = time.monotonic()
                yield checked
                if self.gone():
                    self._abandon()
                    return
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def _async_frames(self) -> Iterator[Event | None]:
        loop = thread_loop()
        source: AsyncIterator[Event] = self.source  # type: ignore[assignment]
        pending: asyncio.Future[Event] | None = None
        last_write = time.monotonic()
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(source.__anext__(), loop=loop)
                wait = min(self.probe_interval, max(0.0, last_write + self.heartbeat - time.monotonic()))
                loop.run_until_complete(asyncio.wait({pending}, timeout=wait))
                if not pending.done():
                    if self.gone():
                        self._abandon()
                        return
                    if time.monotonic() - last_write >= self.heartbeat:
                        last_write = time.monotonic()
                        yield None
                    continue
                finished, pending = pending, None
                try:
                    event = _check(finished.result())
                except StopAsyncIteration:
                    return
                except Exception as exc:  # noqa: BLE001 - becomes the stream's error event
                    yield error_from(exc)
                    return
                last_write = time.monotonic()
                yield event
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                loop.run_until_complete(asyncio.gather(pending, return_exceptions=True))
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                try:
                    loop.run_until_complete(aclose())
                except Exception:  # noqa: BLE001 - the stream is over; say why it did not close cleanly
                    logger.exception("closing an event source failed")


def sse_response(source: Iterable[Event] | AsyncIterator[Event], *, heartbeat: float | None = None,
                 retry: int | None = None, resumed: bool = False) -> Response:
    """A ``text/event-stream`` response for ``source``; call it inside a view.

    The request context stays available to the source while it runs. ``retry`` and ``resumed``: see
    :class:`EventStream`.
    """
    from flask import current_app

    if heartbeat is None:
        heartbeat = float(current_app.config.get("FLOWBRIDGE_SSE_HEARTBEAT", 15.0))
    sock = _request_socket()
    stream = EventStream(source, heartbeat=heartbeat, gone=lambda: client_gone(sock), retry=retry, resumed=resumed)
    response = _EventStreamResponse(stream_with_context(iter(stream)), mimetype="text/event-stream", headers=HEADERS)
    response.event_stream = stream
    return response


class _EventStreamResponse(Response):
    """A response that hands the WSGI ``write`` callable to its :class:`EventStream`, which sends heartbeats
    through it while a sync source waits (on the request thread, between the frames the server writes)."""

    event_stream: EventStream | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def start(*args: Any) -> Any:
            write = start_response(*args)
            if self.event_stream is not None and callable(write):
                self.event_stream.write = write
            return write

        return super().__call__(environ, start)


def wants_stream(flag: bool | None = None) -> bool:
    """True when the body asked for ``"stream": true`` or the client accepts only event streams."""
    if flag:
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/event-stream"])
    return best == "text/event-stream" and "text/event-stream" in request.headers.get("Accept", "")


def last_event_id() -> str | None:
    """The ``id`` of the last event a reconnecting client got: the ``Last-Event-ID`` header (sent by
    ``EventSource`` itself), else ``?lastEventId=`` for clients that cannot set headers; None if neither."""
    value = request.headers.get("Last-Event-ID")
    if value is None:
        value = request.args.get("lastEventId")
    value = value.strip() if value is not None else None
    return value or None
