"""A client for flowbridge's own HTTP API and its event streams.

Every flowbridge stream is Server-Sent Events whose frames are
``data: {"type": ..., "data": ...}``: ``start``, then ``progress`` / ``content``
events, then exactly one ``done`` or ``error`` (which also carries
``error_code``). :func:`iter_events` turns a streamed ``requests`` response into
:class:`StreamEvent` objects; :class:`FlowbridgeClient` calls the API and hands
back an :class:`EventStream` for each stream::

    with FlowbridgeClient("http://127.0.0.1:8000") as fb:
        for event in fb.stream("batch_process", items=["a", "b"]):
            if event.type == "progress":
                print(f"{event.data['percentage']}%")
        print(fb.chat_stream("Say hi").text())           # the content deltas, joined

Errors derive from :class:`~llm_client.LLMError`: an HTTP error status raises
:class:`FlowbridgeAPIError` before any event is read, a stream that ends with an
``error`` event makes :meth:`EventStream.text` / :meth:`EventStream.result` raise
:class:`StreamError`, and network failures raise ``LLMConnectionError`` /
``LLMTimeoutError``. The API key never appears in a repr or an error message.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from ._http import ThreadSessions
from ._streaming import iter_sse_data
from .exceptions import LLMConnectionError, LLMError, LLMStatusError, LLMTimeoutError, scrub

__all__ = [
    "DEFAULT_TIMEOUT",
    "EventStream",
    "FlowbridgeAPIError",
    "FlowbridgeClient",
    "StreamError",
    "StreamEvent",
    "iter_events",
]

#: (connect, read) seconds. The read timeout bounds the silence between two
#: chunks; servers send a heartbeat comment every 15 s by default.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 60.0)

TERMINAL_TYPES = frozenset({"done", "error"})
_EVENT_STREAM = "text/event-stream"


class FlowbridgeAPIError(LLMStatusError):
    """The server answered with an HTTP error status (``{"error": {"type", "message"}}``).

    :param status: the HTTP status code (also ``status_code``).
    :param type: the error's type, e.g. ``"invalid_request"`` or ``"not_found"``.
    :param message: the server's message (a 400 names the bad field).
    """

    def __init__(self, status: int, type: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status} {type}: {message}", status_code=status, body=message,
                         retry_after=retry_after)
        self.status = status
        self.type = type
        self.message = message


class StreamError(LLMError):
    """A stream ended with an ``error`` event, ended without its end, or sent a bad frame.

    :param message: the ``error`` event's message, or what went wrong.
    :param error_code: the event's ``error_code``; ``"incomplete_stream"``,
        ``"closed"`` or ``"bad_event"`` for failures seen by the client.
    """

    def __init__(self, message: str, error_code: str | None = None) -> None:
        super().__init__(message if error_code is None else f"{message} ({error_code})")
        self.message = message
        self.error_code = error_code


@dataclass(frozen=True)
class StreamEvent:
    """One event of a stream: its ``type``, its ``data`` and, for ``error``, its ``error_code``.

    ``raw`` is the decoded frame as sent, with any extra fields.
    """

    type: str
    data: Any = None
    error_code: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_payload(cls, payload: str) -> StreamEvent:
        """The event of one frame's ``data``.

        :raises StreamError: (``bad_event``) if it is not a JSON object with a string ``type``.
        """
        try:
            raw = json.loads(payload)
        except ValueError:
            raise StreamError(f"an event is not JSON: {payload[:200]!r}", "bad_event") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            raise StreamError(f"an event has no 'type': {payload[:200]!r}", "bad_event")
        return cls(raw["type"], raw.get("data"), raw.get("error_code"), raw)

    @property
    def terminal(self) -> bool:
        """True for ``done`` and ``error``, the events that end a stream."""
        return self.type in TERMINAL_TYPES


def iter_events(response: requests.Response) -> Iterator[StreamEvent]:
    """The events of a streamed (``stream=True``) SSE response, in order.

    Comments (heartbeats) are skipped. The response is closed when the body
    ends, or when the generator is closed (a ``break`` out of a ``for`` loop,
    ``close()``, garbage collection). The protocol (start first, one terminal
    event) is not checked here; :class:`EventStream` does.

    :raises StreamError: (``bad_event``) on a frame that is not an event.
    """
    try:
        for payload in iter_sse_data(response.iter_content(chunk_size=None)):
            yield StreamEvent.from_payload(payload)
    finally:
        response.close()


class EventStream(Iterator[StreamEvent]):
    """The events of one stream: an iterator and a context manager.

    Iteration stops after the ``done`` or ``error`` event (an ``error`` event is
    yielded, not raised) and closes the connection; a stream cut off before
    either raises :class:`StreamError` (``incomplete_stream``). :meth:`close`
    may be called at any time, also from another thread; the server then stops
    producing the stream.
    """

    def __init__(self, response: requests.Response, what: str) -> None:
        self.what = what  #: "POST /invoke/name": for messages
        self.terminal: StreamEvent | None = None  #: the done or error event, once read
        self._response = response
        self._events = iter_events(response)
        self._content: list[str] = []
        self._closed = False
        self._lock = threading.Lock()

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> StreamEvent:
        if self._closed or self.terminal is not None:
            raise StopIteration
        try:
            event = next(self._events)
        except StopIteration:
            self.close()
            raise StreamError(f"{self.what}: the stream ended before its done or error event",
                              "incomplete_stream") from None
        except StreamError:
            self.close()
            raise
        except (requests.RequestException, OSError, AttributeError, ValueError) as exc:
            # AttributeError/ValueError: urllib3 reading a response closed under it by close().
            was_closed = self._closed
            self.close()
            if was_closed:
                raise StopIteration from None
            raise LLMConnectionError(f"{self.what}: the stream was interrupted ({type(exc).__name__})") from exc
        if event.type == "content" and isinstance(event.data, str):
            self._content.append(event.data)
        if event.terminal:
            self.terminal = event
            self.close()
        return event

    def text(self) -> str:
        """Read the rest of the stream and return all its ``content`` text, joined.

        :raises StreamError: if the stream ends with an ``error`` event or without its end.
        """
        self._finish()
        return "".join(self._content)

    def result(self) -> Any:
        """Read the rest of the stream and return the ``done`` event's data.

        :raises StreamError: if the stream ends with an ``error`` event or without its end.
        """
        return self._finish().data

    @property
    def final(self) -> Any:
        """The ``done`` event's data, as :meth:`result` (reads the rest of the stream)."""
        return self.result()

    def _finish(self) -> StreamEvent:
        for _ in self:
            pass
        if self.terminal is None:
            raise StreamError(f"{self.what}: the stream was closed before its end", "closed")
        if self.terminal.type == "error":
            raise StreamError(str(self.terminal.data), self.terminal.error_code)
        return self.terminal

    def close(self) -> None:
        """Close the connection; idempotent and thread-safe."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._response.close()
        try:
            self._events.close()  # runs iter_events' finally now, not at garbage collection
        except ValueError:  # "generator already executing": another thread is reading; it stops
            pass

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - best-effort cleanup at garbage collection
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<EventStream {self.what} {state}>"


class FlowbridgeClient:
    """Calls a flowbridge server: functions, chat, flows and task events.

    :param base_url: the server, e.g. ``"http://127.0.0.1:8000"`` (no ``/api``).
    :param api_key: sent as ``Authorization: Bearer``; never shown in reprs or errors.
    :param timeout: seconds, or ``(connect, read)`` seconds, of every request.

    Each thread gets its own ``requests.Session`` (sessions are not thread-safe);
    :meth:`close` (or ``with``) closes them all.
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None,
                 timeout: float | tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._api_key = api_key
        self._sessions = ThreadSessions({"Authorization": f"Bearer {api_key}"} if api_key else None,
                                        closed_message="this FlowbridgeClient is closed")

    # -- the API --------------------------------------------------------------------------------

    def functions(self) -> Any:
        """The manifest of invokable functions (``GET /functions``)."""
        with self._send("GET", "/functions") as response:
            return _json(response, "GET /functions")

    def invoke(self, name: str, /, **inputs: Any) -> Any:
        """Call a function and return its result (``POST /invoke/<name>``).

        That is the ``result`` of a plain function's ``{"result": ...}`` answer; a
        streaming function's stream is read to its end and its ``done`` data returned.

        :raises FlowbridgeAPIError: e.g. 404 for an unknown function, 400 naming a bad input.
        :raises StreamError: if a streaming function ends with an ``error`` event.
        """
        what = f"POST /invoke/{name}"
        response = self._send("POST", _path("/invoke", name), json={"inputs": inputs},
                              accept="application/json, text/event-stream;q=0.5", stream=True)
        if _is_event_stream(response):
            return EventStream(response, what).result()
        with response:
            answer = _json(response, what)
        return answer["result"] if isinstance(answer, dict) and "result" in answer else answer

    def stream(self, name: str, /, **inputs: Any) -> EventStream:
        """The events of a streaming function (``POST /invoke/<name>``)."""
        return self._stream("POST", _path("/invoke", name), json={"inputs": inputs})

    def chat_stream(self, message: str | None = None, *, messages: list[dict[str, str]] | None = None,
                    **options: Any) -> EventStream:
        """A streamed chat answer (``POST /api/chat``): ``content`` events, then ``done``.

        :param message: one user message; or
        :param messages: a conversation of ``{"role", "content"}`` dicts.
        :param options: more fields of the request, e.g. ``system_prompt``, ``temperature``, ``max_tokens``.
        :raises ValueError: unless exactly one of ``message`` and ``messages`` is given.
        """
        if (message is None) == (messages is None):
            raise ValueError("chat_stream() takes a message or messages, not both and not neither")
        body: dict[str, Any] = {"message": message} if messages is None else {"messages": messages}
        return self._stream("POST", "/api/chat", json={**body, **options, "stream": True})

    def flow_stream(self, name: str, /, **inputs: Any) -> EventStream:
        """The events of running a flow (``POST /api/flows/<name>``)."""
        return self._stream("POST", _path("/api/flows", name), json={"inputs": inputs})

    def task_events(self, task_id: str) -> EventStream:
        """A workflow task's node status changes (``GET /api/task/events?taskID=``)."""
        return self._stream("GET", "/api/task/events", params={"taskID": task_id})

    # -- plumbing -------------------------------------------------------------------------------

    def _stream(self, method: str, path: str, **kwargs: Any) -> EventStream:
        what = f"{method} {path}"
        response = self._send(method, path, accept=_EVENT_STREAM, stream=True, **kwargs)
        if not _is_event_stream(response):
            kind = response.headers.get("Content-Type", "no content type")
            response.close()
            raise StreamError(f"{what} answered {kind}, not an event stream", "not_a_stream")
        return EventStream(response, what)

    def _send(self, method: str, path: str, *, accept: str = "application/json", stream: bool = False,
              **kwargs: Any) -> requests.Response:
        """Send one request; translate network errors, raise on an HTTP error status."""
        what = f"{method} {path}"
        try:
            response = self._sessions.get().request(method, self.base_url + path, headers={"Accept": accept},
                                               timeout=self.timeout, stream=stream, **kwargs)
        except requests.Timeout as exc:
            raise LLMTimeoutError(f"{what} to {self.base_url} timed out") from exc
        except requests.RequestException as exc:
            raise LLMConnectionError(f"{what} to {self.base_url} failed: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            with response:
                raise _api_error(response, self._api_key)
        return response

    def close(self) -> None:
        """Close every session; idempotent. Streams already open keep working until closed."""
        self._sessions.close()

    def __enter__(self) -> FlowbridgeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        auth = ", api_key=***" if self._api_key else ""
        return f"FlowbridgeClient({self.base_url!r}{auth})"


def _path(prefix: str, name: str) -> str:
    return f"{prefix}/{quote(name, safe='')}"


def _is_event_stream(response: requests.Response) -> bool:
    return response.headers.get("Content-Type", "").startswith(_EVENT_STREAM)


def _json(response: requests.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise StreamError(f"{what} answered a body that is not JSON", "bad_response") from None


def _api_error(response: requests.Response, secret: str | None) -> FlowbridgeAPIError:
    """The error of a 4xx/5xx answer, from its ``{"error": {"type", "message"}}`` body if it has one."""
    type_, message = "http_error", f"{response.reason or 'error'}"
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        message = text[:300] if text else message
    else:
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            type_ = str(error.get("type") or type_)
            message = str(error.get("message") or message)
    retry_after = response.headers.get("Retry-After")
    seconds = float(retry_after) if retry_after and retry_after.isdigit() else None
    return FlowbridgeAPIError(response.status_code, type_, scrub(message, secret), retry_after=seconds)
