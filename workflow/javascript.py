"""JavaScript's rules, as FlowGram's engine (runtime-js, on Node) applies them to workflow values.

Pure functions, no I/O: the one place the workflow package keeps JavaScript semantics, so that
templates, conditions, validation messages and the http node cannot disagree.

Values are JSON values as Python holds them: ``None`` is ``null``, :data:`UNDEFINED` is
``undefined`` (a property or variable that is not there), ``int`` and ``float`` are both JS
numbers (``1`` and ``1.0`` are the same number; an ``int`` beyond 2**53 is rounded as JS rounds it).

- ``String(v)``: :func:`js_string` (numbers: :func:`js_number_text`, arrays: :func:`js_join`);
  ``JSON.stringify``: :func:`js_json_stringify`, :func:`js_json_copy`; key order: :func:`js_object_keys`.
- ``===``: :func:`js_strict_equal`; ``includes``: :func:`js_includes`; ``Set`` keys: :func:`js_set_key`;
  ``typeof``: :func:`js_typeof`; truthiness: :func:`js_truthy`.
- ``Number(v)``, ``<``/``>``, ``new Date(v).getTime()``: :func:`js_to_number`, :func:`js_compare`, :func:`js_date_ms`.
- FlowGram's ``WorkflowRuntimeType``: :func:`workflow_type`, :func:`is_type_equal`, :func:`same_items_type`
  (and :func:`array_items_type` of values).
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from .errors import WorkflowError


class _Undefined:
    """JavaScript's ``undefined``: a property or variable that is not there."""

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Any = _Undefined()

#: The characters JavaScript's ``String.prototype.trim`` removes.
JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)

_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # in a Python str every surrogate is a lone one
_NUMERIC = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_RADIX = re.compile(r"0([xXoObB])([0-9a-fA-F]+)")
_ISO_DATE = re.compile(
    r"([+-][0-9]{6}|[0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?"
)
#: FlowGram's ``getWorkflowType`` test for a ``date-time`` string (before ``new Date`` must accept it).
_WORKFLOW_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3})?Z?")
_RELATIONS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
_MAX_TIME_MS = 8.64e15  # the largest |time value| a JS Date holds


# -- numbers and strings ----------------------------------------------------------------------


def _as_double(number: int | float) -> float:
    """The JS number an ``int`` or ``float`` stands for (huge ints become ±Infinity)."""
    if isinstance(number, int):
        try:
            return float(number)
        except OverflowError:
            return math.inf if number > 0 else -math.inf
    return number


def js_number_text(number: float | int) -> str:
    """``Number.prototype.toString()``: ``0.5``, ``1`` (for ``1.0``), ``1e+21``, ``1e-7``, ``0`` (for ``-0``)."""
    if isinstance(number, bool):
        return "true" if number else "false"
    if isinstance(number, int) and abs(number) < 2**53:
        return str(number)
    number = _as_double(number)
    if not math.isfinite(number):
        return "NaN" if math.isnan(number) else "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0"
    sign = "-" if number < 0 else ""
    mantissa, _, exponent = repr(abs(number)).partition("e")  # repr: the shortest digits that round-trip
    whole, _, fraction = mantissa.partition(".")
    shift = int(exponent) if exponent else 0
    if whole == "0":
        digits = fraction.lstrip("0")
        point = shift - (len(fraction) - len(digits))
    else:
        digits = whole + fraction
        point = shift + len(whole)
    digits = digits.rstrip("0")
    count = len(digits)
    if count <= point <= 21:
        text = digits + "0" * (point - count)
    elif 0 < point <= 21:
        text = f"{digits[:point]}.{digits[point:]}"
    elif -6 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        tail = f".{digits[1:]}" if count > 1 else ""
        text = f"{digits[0]}{tail}e{'+' if point > 0 else '-'}{abs(point - 1)}"
    return sign + text


def js_string(value: Any) -> str:
    """``String(value)`` (also what ``${value}`` shows).

    ``None`` → ``null``, :data:`UNDEFINED` → ``undefined``, ``True`` → ``true``, ``1.0`` → ``1``,
    ``[1, [2, None]]`` → ``1,2,`` (``join``), a dict → ``[object Object]``.
    """
    if value is None:
        return "null"
    if value is UNDEFINED:
        return "undefined"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return js_number_text(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return js_join(value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def js_join(items: Iterable[Any], separator: str = ",") -> str:
    """``Array.prototype.join``: ``null`` and ``undefined`` items are empty, the rest ``String()``."""
    return separator.join("" if item is None or item is UNDEFINED else js_string(item) for item in items)


def js_object_keys(obj: dict[str, Any]) -> list[str]:
    """``Object.keys`` order: array-index keys ascending, then the other keys as inserted."""
    indexes = [key for key in obj if isinstance(key, str) and _ARRAY_INDEX.fullmatch(key) and int(key) < 2**32 - 1]
    index_set = set(indexes)
    return sorted(indexes, key=int) + [key for key in obj if key not in index_set]


def js_json_stringify(value: Any) -> str:
    """``JSON.stringify`` (compact): ``1.0`` → ``1``, NaN → ``null``, index keys first.

    ``undefined`` items are ``null`` and ``undefined`` properties are left out; a top-level
    :data:`UNDEFINED` gives ``undefined``, as ``${JSON.stringify(undefined)}`` shows it.
    """
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return js_number_text(value) if math.isfinite(_as_double(value)) else "null"
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join("null" if item is UNDEFINED else js_json_stringify(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (f"{_json_string(str(key))}:{js_json_stringify(value[key])}"
                 for key in js_object_keys(value) if value[key] is not UNDEFINED)
        return "{" + ",".join(items) + "}"
    return _json_string(str(value))


def _json_string(text: str) -> str:
    """A JSON string literal as ``JSON.stringify`` writes it (a lone surrogate as ``\\udXXX``)."""
    quoted = json.dumps(text, ensure_ascii=False)
    return _LONE_SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", quoted)


def js_json_copy(value: Any) -> Any:
    """``JSON.parse(JSON.stringify(value))``: a plain copy, keys in JS order, NaN and Infinity as ``null``."""
    return json.loads(js_json_stringify(value))


# -- comparisons and conversions --------------------------------------------------------------


def js_typeof(value: Any) -> str:
    """``typeof value``: ``undefined``, ``boolean``, ``number``, ``string`` or ``object`` (also null and arrays)."""
    if value is UNDEFINED:
        return "undefined"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "string" if isinstance(value, str) else "object"


def js_truthy(value: Any) -> bool:
    """``Boolean(value)``: ``false``, ``0``, NaN, ``""``, ``null`` and ``undefined`` are falsy; objects never."""
    if isinstance(value, (bool, int, float, str)):
        return bool(value) and value == value
    return value is not None and value is not UNDEFINED


def js_strict_equal(left: Any, right: Any, *, same_value_zero: bool = False) -> bool:
    """``left === right``; with ``same_value_zero`` (``includes``, ``Set``), NaN equals NaN.

    Objects and arrays are equal only to themselves (the same Python object).
    """
    if left is UNDEFINED or right is UNDEFINED or left is None or right is None:
        return left is right
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        left, right = _as_double(left), _as_double(right)
        return bool(left == right or (same_value_zero and left != left and right != right))
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    return left is right


def js_set_key(value: Any) -> tuple[Any, ...]:
    """A hashable key under which two values collide exactly when ``Set``/``Map`` treat them as one."""
    if value is UNDEFINED or value is None:
        return ("nil", value is None)
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, (int, float)):
        number = _as_double(value)
        return ("number", "NaN" if number != number else number)
    if isinstance(value, str):
        return ("string", value)
    return ("object", id(value))


def js_includes(container: Any, item: Any, name: str) -> bool:
    """``container.includes(item)`` for an array (SameValueZero) or a string (``String(item)`` inside).

    :param name: how the container is spelled in the ``TypeError`` (``rightValue.includes is not a function``).
    """
    if container is None or container is UNDEFINED:
        raise ValueError(f"Cannot read properties of {js_string(container)} (reading 'includes')")
    if isinstance(container, str):
        return js_string(item) in container
    if isinstance(container, (list, tuple)):
        return any(js_strict_equal(element, item, same_value_zero=True) for element in container)
    raise ValueError(f"{name}.includes is not a function")


def js_to_number(value: Any) -> float:
    """``Number(value)`` of a primitive: ``null`` is 0, ``"12"`` is 12, ``"0x1f"`` is 31, ``"abc"`` is NaN."""
    if value is UNDEFINED:
        return math.nan
    if value is None:
        return 0.0
    if isinstance(value, (bool, int, float)):
        return _as_double(int(value) if isinstance(value, bool) else value)
    if not isinstance(value, str):
        return js_to_number(js_string(value))  # ToPrimitive of an object is its String()
    text = value.strip(JS_WHITESPACE)
    if not text:
        return 0.0
    if _NUMERIC.fullmatch(text):
        return float(text.replace("Infinity", "inf"))
    match = _RADIX.fullmatch(text)
    if match:
        try:
            return float(int(match.group(2), {"x": 16, "o": 8, "b": 2}[match.group(1).lower()]))
        except ValueError:
            return math.nan
    return math.nan


def js_compare(relation: str, left: Any, right: Any) -> bool:
    """``left > right`` (``relation`` one of ``gt``, ``gte``, ``lt``, ``lte``).

    Objects are turned into their ``String()`` first; two strings compare by UTF-16 code
    units, anything else as numbers (NaN on either side is false).
    """
    left, right = (js_string(v) if isinstance(v, (list, tuple, dict)) else v for v in (left, right))
    if isinstance(left, str) and isinstance(right, str):
        return _RELATIONS[relation](left.encode("utf-16-be"), right.encode("utf-16-be"))
    a, b = js_to_number(left), js_to_number(right)
    return not (math.isnan(a) or math.isnan(b)) and _RELATIONS[relation](a, b)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (any year; a day past the month's end rolls over)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    return era * 146097 + year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year - 719468


def js_date_ms(value: Any) -> float:
    """``new Date(value).getTime()``: ISO-8601 strings (date-only = UTC, no offset = local), numbers, null = 0.

    Other string formats, which V8's legacy parser guesses at (``2000/01/01``), are NaN here.
    """
    if value is None or isinstance(value, (bool, int, float)):
        number = js_to_number(value)
        return float(math.trunc(number)) if math.isfinite(number) and abs(number) <= _MAX_TIME_MS else math.nan
    match = _ISO_DATE.fullmatch(value if isinstance(value, str) else js_string(value))
    if not match:
        return math.nan
    year_text, month, day, hour, minute, second, fraction, zone = match.groups()
    month_n, day_n, hour_n, minute_n, second_n = (
        int(part or default) for part, default in ((month, 1), (day, 1), (hour, 0), (minute, 0), (second, 0)))
    millis = int((fraction or "0")[:3].ljust(3, "0"))
    if not (1 <= month_n <= 12 and 1 <= day_n <= 31 and hour_n <= 24 and minute_n <= 59 and second_n <= 59):
        return math.nan
    if (hour_n == 24 and (minute_n or second_n or millis)) or year_text == "-000000":
        return math.nan
    year = int(year_text)
    clock_ms = ((hour_n * 60 + minute_n) * 60 + second_n) * 1000 + millis
    if hour is not None and zone is None and 1 <= year <= 9999:  # local time, as the host's time zone says
        try:
            moment = datetime(year, month_n, 1) + timedelta(days=day_n - 1, milliseconds=clock_ms)
            return float(round(moment.timestamp() * 1000))
        except (ValueError, OverflowError, OSError):
            return math.nan
    offset = 0 if zone in (None, "Z", "z") else int(zone[1:3]) * 60 + int(zone[4:6])
    if zone and zone[0] == "-":
        offset = -offset
    ms = _days_from_civil(year, month_n, day_n) * 86_400_000 + clock_ms - offset * 60_000
    return float(ms) if abs(ms) <= _MAX_TIME_MS else math.nan


# -- FlowGram's WorkflowRuntimeType ------------------------------------------------------------


class ArrayItemsTypeError(WorkflowError, ValueError):
    """FlowGram's ``Array items type must be same, expect X, but got Y``."""


def workflow_type(value: Any) -> str:
    """FlowGram's ``getWorkflowType``: the type of a JSON-like value.

    ``None`` (and :data:`UNDEFINED`) is ``null``; a string such as ``2000-01-01T00:00:00.000Z``
    that ``new Date`` accepts is ``date-time``; a number for which ``Number.isInteger`` holds is
    ``integer`` (``1.0`` too), any other number (NaN, Infinity) ``number``.
    """
    if value is None or value is UNDEFINED:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        valid = _WORKFLOW_DATE_TIME.fullmatch(value) and not math.isnan(js_date_ms(value))
        return "date-time" if valid else "string"
    if isinstance(value, (int, float)):
        number = _as_double(value)
        return "integer" if math.isfinite(number) and number.is_integer() else "number"
    if isinstance(value, (list, tuple)):
        return "array"
    return "object"


def is_type_equal(left: str | None, right: str | None) -> bool:
    """FlowGram's ``isTypeEqual``: ``number`` and ``integer`` match each other, any other type only itself."""
    return left == right or {left, right} == {"number", "integer"}


def same_items_type(types: Iterable[str | None]) -> str | None:
    """FlowGram's ``getArrayItemsType``: the first type, when every type is exactly it.

    Strict: ``integer`` and ``number`` differ here. ``None`` (a type FlowGram leaves
    undefined) shows as ``undefined``.

    :return: the common type, ``None`` for no types.
    :raises ArrayItemsTypeError: ``Array items type must be same, expect integer, but got string``.
    """
    listed = list(types)
    if not listed:
        return None
    expected = listed[0]
    for kind in listed:
        if kind != expected:
            raise ArrayItemsTypeError(
                f"Array items type must be same, expect {_type_text(expected)}, but got {_type_text(kind)}")
    return expected


def array_items_type(values: Iterable[Any]) -> str | None:
    """:func:`same_items_type` of each value's :func:`workflow_type` (``None`` for no values)."""
    return same_items_type(workflow_type(value) for value in values)


def _type_text(kind: str | None) -> str:
    return "undefined" if kind is None else js_string(kind)
