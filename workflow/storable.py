"""What a task may hold: the values a task's schema, inputs and node outputs may contain.

Everything a task holds is stored as JSON (UTF-8 text in SQLite) and shown in reports, so
each value is checked once, where it enters: the request (before the task is recorded,
so a refused request leaves no task behind) and each node's outputs (the node fails,
naming what it returned). Refused: nesting deeper than :data:`MAX_NESTING` levels,
strings with lone surrogates (UTF-8 cannot encode them), NaN and Infinity (not JSON),
integers of :data:`MAX_INTEGER` or more (JavaScript and FlowGram read them as Infinity),
and values of any other type than JSON's.

The walk is iterative, so however deep a value is, checking it never overflows the stack.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import WorkflowError

#: Deepest nesting of lists and objects in a schema, inputs or node outputs (the value itself is level 0).
MAX_NESTING = 100
#: Integers must be smaller than this in magnitude (the largest JSON number JavaScript reads as finite).
MAX_INTEGER = 2**1024


class UnstorableValue(WorkflowError, ValueError):
    """A value a task cannot hold; the message names where it is (``inputs.a[3].b``) and why."""


def _lone_surrogate(text: str) -> str | None:
    """The first lone surrogate of ``text`` as ``U+D800``, or None."""
    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as exc:
        return f"U+{ord(text[exc.start]):04X}"


def _key_path(path: str, key: Any) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"


def check_storable(value: Any, path: str) -> None:
    """Raise :class:`UnstorableValue` naming the first part of ``value`` a task cannot hold.

    :param path: the name of ``value`` in messages, e.g. ``"inputs"`` or ``'node "code_1" outputs'``.
    """
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            bad = _lone_surrogate(item)
            if bad:
                raise UnstorableValue(f"{where} contains a lone surrogate ({bad}), which is not valid Unicode text")
        elif isinstance(item, int):
            if abs(item) >= MAX_INTEGER:
                raise UnstorableValue(f"{where} is an integer too large to store (it must be below 2**1024 in "
                                      "magnitude, the largest JSON number JavaScript reads as finite)")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise UnstorableValue(f"{where} is {item!r}, which JSON cannot hold")
        elif isinstance(item, (dict, list, tuple)):
            if depth >= MAX_NESTING:
                raise UnstorableValue(f"{where} is nested too deeply (limit {MAX_NESTING} levels)")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise UnstorableValue(f"{where} has a key {key!r} that is not a string")
                    bad = _lone_surrogate(key)
                    if bad:
                        raise UnstorableValue(f"{where} has a key with a lone surrogate ({bad}), which is not "
                                              "valid Unicode text")
                    stack.append((child, _key_path(where, key), depth + 1))
            else:
                stack.extend((child, _key_path(where, index), depth + 1) for index, child in enumerate(item))
        else:
            raise UnstorableValue(f"{where} is a {type(item).__name__}, which is not a JSON value")


def loads(text: str, what: str) -> Any:
    """``json.loads(text)``; a document nested too deeply for the parser is an :class:`UnstorableValue`.

    :param what: the name of the document in messages (``"schema"``).
    :raises ValueError: for text that is not JSON (``json.JSONDecodeError``).
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise UnstorableValue(f"{what} is nested too deeply (limit {MAX_NESTING} levels)") from None
