"""The ``http`` node: one HTTP request, FlowGram's way, to allowed hosts only.

``data.api{method, url}`` (``url`` a template flow value), ``headers``/``headersValues``
and ``params``/``paramsValues`` (resolved like node inputs), ``body{bodyType, json |
rawText | binary (templates), formData(+Values) | xWwwFormUrlencoded(+Values)}`` and
``timeout{timeout (ms), retryTimes}``. Outputs ``{headers, statusCode, body}``; a non-2xx
answer is still a success. Failed attempts (connection errors, timeouts) are retried
``retryTimes`` times, ``2 ** attempt * 1000`` ms apart, each with a fresh timeout.

Unlike ``fetch``, every URL is checked against the allowed hosts before anything is sent
(:mod:`workflow.outbound`: the host requests will really connect to; ambiguous URLs are refused),
redirects included: they are followed here, hop by hop, up to :data:`MAX_REDIRECTS`, each hop
checked like the first URL, and ``Authorization``, ``Cookie`` and ``Proxy-Authorization`` are
dropped once a hop changes scheme, host or port. A response body may be at most
:data:`MAX_RESPONSE_BYTES`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlencode, urljoin, urlsplit, urlunsplit

import requests

from ..executor import ExecutionContext, NodeError, NodeResult
from ..javascript import UNDEFINED, js_json_copy, js_json_stringify, js_object_keys, js_string
from ..outbound import character_problem

logger = logging.getLogger(__name__)
_HTTP_WHITESPACE = " \t\r\n"  # what fetch's Headers strips from both ends of a value

#: FlowGram's backoff unit: attempt ``n`` (from 0) waits ``2 ** n`` of these before the next.
RETRY_BACKOFF_SECONDS = 1.0
#: Used when the node has no ``timeout`` settings (FlowGram's form defaults).
DEFAULT_TIMEOUT_MS = 10_000
DEFAULT_RETRY_TIMES = 1
MAX_TIMEOUT_MS = 600_000
MAX_RETRY_TIMES = 10
MAX_REDIRECTS = 20  # fetch's limit
MAX_RESPONSE_BYTES = 10 * 1024 * 1024

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD")
#: ``Content-Type`` sent for each body type unless the node sets one (form-data: requests adds the boundary).
CONTENT_TYPES = {
    "JSON": "application/json",
    "x-www-form-urlencoded": "application/x-www-form-urlencoded",
    "raw-text": "text/plain",
    "binary": "application/octet-stream",
}
_TEMPLATE_BODIES = {"JSON": ("json", "json"), "raw-text": ("rawText", "raw text"), "binary": ("binary", "binary")}
_FORM_BODIES = {"form-data": "formData", "x-www-form-urlencoded": "xWwwFormUrlencoded"}
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP token
#: Headers dropped when a redirect leaves the origin (scheme, host, port) they were written for.
_CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")


class _AttemptFailed(Exception):
    """One attempt failed in a way worth retrying; ``args[0]`` says how."""


@dataclass
class _Request:
    """The node's parsed settings.

    ``headers``, ``params`` and ``form`` keep their typed values, which the snapshot shows as
    FlowGram's does; each value is sent as its JavaScript ``String()``.
    """

    method: str
    url: str
    headers: dict[str, Any]
    params: dict[str, Any]
    body_type: str
    body: str
    form: dict[str, Any]
    retry_times: int
    timeout_ms: float

    def snapshot(self) -> dict[str, Any]:
        """FlowGram's ``JSON.parse(JSON.stringify(inputs))`` of what it sends."""
        return js_json_copy({"method": self.method, "url": self.url, "headers": self.headers, "params": self.params,
                             "bodyType": self.body_type, "body": self.body, "retryTimes": self.retry_times,
                             "timeout": self.timeout_ms})

    def form_texts(self) -> list[tuple[str, str]]:
        """The form fields as FlowGram sends them: each value's ``String()``."""
        return [(name, js_string(value)) for name, value in self.form.items()]


def _ordered(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with its keys in JavaScript's order (index-like keys first), string keys."""
    return {str(key): values[key] for key in js_object_keys(values)}


def _template_text(ctx: ExecutionContext, value: Any) -> str | None:
    """Render a ``{type: 'template', content}`` (or constant, or plain string) flow value.

    FlowGram accepts templates only; a constant is our extension, shown as its ``String()``
    except that an object or array constant is sent as its JSON text.
    """
    if isinstance(value, dict):
        content = value.get("content")
        if value.get("type") == "constant":
            if content is None:
                return None
            return js_json_stringify(content) if isinstance(content, (dict, list)) else js_string(content)
        if value.get("type") != "template":
            return None
        value = content
    return ctx.render_template(value) if isinstance(value, str) and value else None


def _number(settings: dict[str, Any], key: str, default: float, limit: float) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= limit:
        raise NodeError(f"HTTP {key} must be a number from 0 to {limit:g}")
    return value


def _parse(ctx: ExecutionContext) -> _Request:
    """Read the node's settings (FlowGram's ``parseInputs``), with FlowGram's error messages."""
    data = ctx.node.data
    api = data.get("api") if isinstance(data.get("api"), dict) else {}
    method = str(api.get("method") or "GET").upper()
    if method not in METHODS:
        raise NodeError(f'HTTP invalid method "{method}"')
    url = _template_text(ctx, api.get("url"))
    if not url:
        raise NodeError("HTTP url is required")
    headers = _ordered(ctx.parse_inputs(data.get("headers"), data.get("headersValues")))
    params = _ordered(ctx.parse_inputs(data.get("params"), data.get("paramsValues")))
    body_spec = data.get("body") if isinstance(data.get("body"), dict) else {"bodyType": "none"}
    body_type = body_spec.get("bodyType", UNDEFINED)
    body, form = "", {}
    if isinstance(body_type, str) and body_type in _TEMPLATE_BODIES:
        key, label = _TEMPLATE_BODIES[body_type]
        text = _template_text(ctx, body_spec.get(key))
        if text is None:
            raise NodeError(f"HTTP {label} body is required")
        body = text
    elif isinstance(body_type, str) and body_type in _FORM_BODIES:
        key = _FORM_BODIES[body_type]
        if not body_spec.get(key) or not body_spec.get(f"{key}Values"):
            raise NodeError(f"HTTP {body_type} body is required")
        form = _ordered(ctx.parse_inputs(body_spec[key], body_spec[f"{key}Values"]))
        body = js_json_stringify(form)  # FlowGram's body, which its snapshot shows
    elif body_type != "none":
        raise NodeError(f'HTTP invalid body type "{js_string(body_type)}"')
    timing = data.get("timeout") if isinstance(data.get("timeout"), dict) else {}
    retry_times = _number(timing, "retryTimes", DEFAULT_RETRY_TIMES, MAX_RETRY_TIMES)
    if retry_times != int(retry_times):
        raise NodeError("HTTP retryTimes must be a whole number")
    timeout_ms = _number(timing, "timeout", DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS)
    if not timeout_ms:
        raise NodeError(f"HTTP timeout must be a number from 0 to {MAX_TIMEOUT_MS:g}")
    return _Request(method, url, headers, params, str(body_type), body, form, int(retry_times), timeout_ms)


def _form_quote(text: str, safe: str = "", encoding: Any = None, errors: Any = None) -> str:
    """URLSearchParams' escaping: letters, digits and ``*-._`` as is, spaces as ``+``, the rest
    (``~`` too, which Python's ``quote`` keeps) percent-encoded UTF-8. In a URL, requests turns ``%7E``
    back into ``~`` (docs/flowgram-differences.md, ``http-url-encoding``); in a form body it stays."""
    return quote_plus(text, safe="*").replace("~", "%7E")


def _with_params(url: str, params: dict[str, Any]) -> str:
    """``URL.searchParams.set(key, String(value))`` for each param that is not null or ``""``.

    The whole query is then spelled as URLSearchParams spells it (spaces as ``+``, ``~`` encoded).
    """
    params = {k: js_string(v) for k, v in params.items() if v is not None and v != ""}
    if not params:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    return urlunsplit(parts._replace(query=urlencode(query + list(params.items()), quote_via=_form_quote)))


def _byte_string_problem(text: str) -> str | None:
    """WebIDL's error for a string that is not a ByteString (a UTF-16 code unit above 255)."""
    index = 0
    for char in text:
        code = ord(char)
        if code > 255:
            unit = code if code < 0x10000 else 0xD800 + ((code - 0x10000) >> 10)
            return (f"Cannot convert argument to a ByteString because the character at index {index} "
                    f"has a value of {unit} which is greater than 255.")
        index += 2 if code >= 0x10000 else 1
    return None


def _fetch_headers(headers: dict[str, Any]) -> dict[str, bytes]:
    """The headers as ``fetch`` sends them, with its errors (``Headers.append: "a b" is an invalid header name.``).

    Each value is its ``String()`` without the leading and trailing HTTP whitespace ``Headers``
    strips, sent as Latin-1 bytes. Unlike fetch's message, an invalid value (NUL, CR or LF
    inside) is not quoted: it may be a secret.
    """
    texts = {name: js_string(value) for name, value in headers.items()}
    for name, text in texts.items():  # fetch converts every name and value before checking any
        problem = _byte_string_problem(name) or _byte_string_problem(text)
        if problem:
            raise NodeError(problem)
    sent: dict[str, bytes] = {}
    for name, text in texts.items():
        value = text.strip(_HTTP_WHITESPACE)
        if not _HEADER_NAME.fullmatch(name):
            raise NodeError(f'Headers.append: "{name}" is an invalid header name.')
        if any(char in value for char in "\0\r\n"):
            raise NodeError(f'Headers.append: the value of header "{name}" is an invalid header value '
                            "(it contains NUL, CR or LF).")
        sent[name] = value.encode("latin-1")
    return sent


def _where(method: str, url: str) -> str:
    """``METHOD scheme://host/path``: the query may carry keys, so it is left out of messages."""
    parts = urlsplit(url)
    return f"{method} {urlunsplit(parts._replace(query='', fragment=''))}"


def _reason(exc: requests.RequestException, timeout_ms: float) -> str:
    if isinstance(exc, requests.Timeout):
        return f"timed out after {timeout_ms:g} ms"
    found = _ERRNO.search(str(exc))
    return f"connection failed ({found.group(1).strip()})" if found else f"connection failed ({type(exc).__name__})"


def _send(request: _Request, headers: dict[str, Any], check_url: Any) -> tuple[int, dict[str, str], str]:
    """One attempt (redirects followed and checked hop by hop); runs on a worker thread.

    :raises _AttemptFailed: on connection errors and timeouts (worth a retry).
    :raises NodeError: on anything a retry would not fix.
    """
    deadline = time.monotonic() + request.timeout_ms / 1000
    method, url = request.method, _with_params(request.url, request.params)
    headers = dict(headers)
    if not any(name.lower() == "content-type" for name in headers) and request.body_type in CONTENT_TYPES:
        headers["Content-Type"] = CONTENT_TYPES[request.body_type]
    send_body = method not in ("GET", "HEAD") and bool(request.body)
    with requests.Session() as session:
        session.trust_env = False  # no ~/.netrc credentials sent to workflow-chosen hosts
        origin = None
        for _ in range(MAX_REDIRECTS + 1):
            try:
                hop = check_url(url)  # every hop, with the same rules as the first URL
            except NodeError as exc:
                if origin is None:
                    raise
                raise NodeError(f"HTTP redirect not followed: {exc}") from None
            if origin is not None and hop.origin != origin:
                # another scheme, host or port: the node's credentials are not for it (as requests does)
                headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
            origin = hop.origin
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _AttemptFailed(f"timed out after {request.timeout_ms:g} ms")
            kwargs: dict[str, Any] = {}
            if send_body and request.body_type == "form-data":
                kwargs["files"] = {k: (None, v) for k, v in request.form_texts()}
            elif send_body and request.body_type == "x-www-form-urlencoded":
                kwargs["data"] = urlencode(request.form_texts(), quote_via=_form_quote)
            elif send_body:
                kwargs["data"] = request.body.encode()
            try:
                response = session.request(method, url, headers=headers, allow_redirects=False, stream=True,
                                           timeout=(remaining, remaining),
                                           proxies=requests.utils.get_environ_proxies(url), **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise _AttemptFailed(_reason(exc, request.timeout_ms)) from exc
            except (requests.RequestException, ValueError) as exc:
                raise NodeError(f"HTTP request {_where(method, url)} is invalid: {exc}") from exc
            with response:
                location = session.get_redirect_target(response)  # requests' reading (UTF-8 bytes as UTF-8)
                if location:
                    problem = character_problem(location)
                    if problem:  # refused before urljoin, which would quietly drop tabs and newlines
                        raise NodeError(f"HTTP redirect not followed: its Location contains {problem}")
                    target = urljoin(url, location)
                    if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
                        method = "GET" if method != "HEAD" else method
                        send_body = False
                        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
                    url = target
                    continue
                body = bytearray()
                try:
                    for chunk in response.iter_content(64 * 1024):
                        body += chunk
                        if len(body) > MAX_RESPONSE_BYTES:
                            raise NodeError(f"HTTP response body is larger than {MAX_RESPONSE_BYTES >> 20} MB")
                        if time.monotonic() > deadline:
                            raise _AttemptFailed(f"timed out after {request.timeout_ms:g} ms")
                except (requests.ConnectionError, requests.Timeout) as exc:
                    raise _AttemptFailed(_reason(exc, request.timeout_ms)) from exc
                # fetch's Headers: lower-case names, repeated values joined with ", "; text() is UTF-8
                out_headers = {name.lower(): value for name, value in response.headers.items()}
                return response.status_code, out_headers, body.decode("utf-8", errors="replace")
    raise NodeError(f"HTTP request {_where(request.method, request.url)} redirected more than {MAX_REDIRECTS} times")


async def _backoff(ctx: ExecutionContext, seconds: float) -> None:
    """Sleep between attempts, waking early if the task is canceled."""
    end = time.monotonic() + seconds
    while not ctx.cancelled and (left := end - time.monotonic()) > 0:
        await asyncio.sleep(min(left, 0.25))


async def execute_http(ctx: ExecutionContext) -> NodeResult:
    """Send the node's request and return ``{headers, statusCode, body}``.

    :raises NodeError: FlowGram's ``HTTP url is required``, ``HTTP json body is required``,
        ``HTTP invalid body type "x"``; a host that is not allowed (checked before anything
        is sent); or the last failure once every attempt failed.
    """
    request = _parse(ctx)
    try:
        return await _perform(ctx, request)
    except NodeError as exc:
        exc.snapshot_inputs = request.snapshot()  # FlowGram shows the parsed request of a failed node too
        raise


async def _perform(ctx: ExecutionContext, request: _Request) -> NodeResult:
    ctx.settings.check_url(request.url)
    headers = _fetch_headers(request.headers)
    last = ""
    for attempt in range(request.retry_times + 1):
        if ctx.cancelled:
            raise NodeError("HTTP request canceled")
        try:
            status, headers, body = await asyncio.to_thread(_send, request, headers, ctx.settings.check_url)
        except _AttemptFailed as exc:
            last = exc.args[0]
            if attempt < request.retry_times:
                delay = RETRY_BACKOFF_SECONDS * 2**attempt
                logger.info("Retrying %s in %.2fs: %s", _where(request.method, request.url), delay, last)
                ctx.warn(f"HTTP attempt {attempt + 1} failed: {last}; retrying in {delay:g} s")
                await _backoff(ctx, delay)
            continue
        return NodeResult({"headers": headers, "statusCode": status, "body": body},
                          snapshot_inputs=request.snapshot())
    attempts = request.retry_times + 1
    raise NodeError(f"HTTP request {_where(request.method, request.url)} failed after "
                    f"{attempts} attempt{'s' if attempts != 1 else ''}: {last}")
