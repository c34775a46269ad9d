"""Parsing of JSON that clients send: request bodies and JSON form fields.

Every JSON body the app reads goes through :func:`loads_json`, installed as the
request's JSON decoder by :class:`JSONBodyRequest` (so ``request.get_json()``,
silent or not, in any route); the ``/invoke`` form fields call it directly, and the
pages' JSON form fields (which keep their own messages) call :func:`check_value`.
Beyond what :func:`json.loads` checks, it refuses

- nesting deeper than :data:`MAX_DEPTH` levels: :func:`json.loads` raises
  ``RecursionError`` near 1,000 levels (a 500), and a body a little below that
  would blow up later in code that walks it recursively;
- lone surrogates (``"\\ud800"``): :func:`json.loads` accepts the escape, and the
  string then fails wherever it is encoded (the upstream request, SQLite, the log);
- ``NaN`` and ``Infinity``, which are not JSON and which no JSON client can read back, and numbers
  past the float range (``1e400``), which would become ``Infinity``.

A refused body answers 400 ``invalid_json`` with a message naming the problem
(and, for a surrogate, where it is).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

from ..errors import APIError

__all__ = ["MAX_DEPTH", "JSONBodyRequest", "JSONInputError", "check_value", "loads_json"]

#: Deepest nesting of arrays and objects a client may send. Real bodies (a FlowGram schema with loops in
#: loops, a JSON schema of inputs) stay far below it.
MAX_DEPTH = 128

_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONInputError(ValueError):
    """Text that is not JSON we accept; the message says why (and where).

    :attr:`syntax` is True when the text is not JSON at all (rather than JSON past one of our limits).
    """

    def __init__(self, message: str, *, syntax: bool = False) -> None:
        super().__init__(message)
        self.syntax = syntax


def loads_json(data: str | bytes, what: str = "the request body") -> Any:
    """Parse ``data`` as JSON, with the limits of this module.

    :raises JSONInputError: naming ``what`` and the problem.
    """
    try:
        value = json.loads(data, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise JSONInputError(f"{what} is nested too deeply (more than {MAX_DEPTH} levels of arrays and objects)")\
            from None
    except UnicodeDecodeError as exc:
        raise JSONInputError(f"{what} is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise JSONInputError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                             syntax=True) from None
    except ValueError as exc:  # _no_constant, _finite_float, an integer of more than 4,300 digits
        raise JSONInputError(f"{what} is not valid JSON: {exc}") from None
    check_value(value, what)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    """A JSON number with a fraction or exponent; one past the float range (``1e400``) is refused: it
    would become ``inf``, which no JSON encoder writes back (the upstream request would fail)."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is too large (beyond ±1.8e308)")
    return value


def check_value(value: Any, what: str) -> None:
    """Check parsed JSON: no deeper than :data:`MAX_DEPTH`, no lone surrogate in a string or key.

    For code that has its own :func:`json.loads` (and messages); :func:`loads_json` calls it.
    Walks ``value`` without recursion; only a value that fails is walked again, to say where.

    :raises JSONInputError: naming ``what`` and the problem.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                _surrogate(value, what)
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise JSONInputError(f"{what} is nested too deeply (more than {MAX_DEPTH} levels of arrays and objects)")
        if isinstance(item, dict):
            if not all(key.isascii() for key in item) and any(_SURROGATE.search(key) for key in item):
                _surrogate(value, what)
            children = item.values()
        else:
            children = item
        depth += 1
        stack.extend((child, depth) for child in children if isinstance(child, (str, dict, list)))


def _surrogate(value: Any, what: str) -> None:
    """Raise the error for a lone surrogate of ``value`` (known to hold one), saying where it is."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        texts: list[tuple[str, tuple[Any, ...]]] = []
        if isinstance(item, str):
            texts = [(item, path)]
        elif isinstance(item, dict):
            texts = [(key, (*path, key)) for key in item]
            stack.extend((child, (*path, key)) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, (*path, i)) for i, child in enumerate(item))
        for text, where in texts:
            found = _SURROGATE.search(text)
            if found:
                # a key on the path may hold the surrogate itself: written as \udxxx, the message stays text
                place = ".".join(str(p) for p in where).encode("utf-8", "backslashreplace").decode() \
                    or "the top level"
                raise JSONInputError(f"{what} holds a lone surrogate (\\u{ord(found.group()):04x}) at {place}: "
                                     "strings must be valid Unicode")
    raise JSONInputError(f"{what} holds a lone surrogate: strings must be valid Unicode")  # not reached


class _BodyDecoder:
    """The ``json_module`` of :class:`JSONBodyRequest`: only ``loads`` is used, by ``get_json``."""

    @staticmethod
    def loads(data: str | bytes, **kwargs: Any) -> Any:
        try:
            return loads_json(data)
        except JSONInputError as exc:
            # Not a ValueError any more, so get_json(silent=True) does not turn it into None.
            raise APIError(str(exc), type="invalid_json") from None


class JSONBodyRequest(Request):
    """The app's request class: ``get_json`` parses with :func:`loads_json`, and a bad body is a 400.

    Every route reads its body with ``request.get_json()``; with this class each
    of them refuses deep, broken or surrogate-holding JSON the same way, whether
    it passes ``silent=True`` or not.
    """

    @property  # type: ignore[override]
    def json_module(self) -> Any:
        return _BodyDecoder

    @json_module.setter
    def json_module(self, value: Any) -> None:
        """Ignored: Flask sets ``app.json`` on each request, but bodies are always parsed here."""

    def get_data(self, *args: Any, **kwargs: Any) -> Any:
        """werkzeug's, but a body of unknown length (chunked) cut at ``MAX_CONTENT_LENGTH`` is a 413, not a
        body that silently ends there (under gunicorn the worker refuses it first; other servers do not)."""
        data = super().get_data(*args, **kwargs)
        limit = self.max_content_length
        if self.content_length is None and limit is not None and len(data) >= limit:
            source = self.environ.get("wsgi.input")
            if source is not None and source.read(1):
                raise RequestEntityTooLarge(f"the request body is larger than MAX_CONTENT_LENGTH={limit} bytes")
        return data
