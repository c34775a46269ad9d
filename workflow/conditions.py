"""FlowGram's condition node: the operator rule table, JavaScript comparisons, and choosing a branch.

Pure functions, no I/O. The left operand is a ``ref``; its type picks a rule
that names the right operand's expected type. A right operand whose type does
not match drops the condition silently; an operator the left type lacks fails
the node. String ``is_empty``/``is_not_empty`` expect no right operand, as in
newer upstream (runtime-js 0.1.8 expected a string there, so they never matched).
``is_empty`` means *missing* (``None``): ``""``, ``[]`` and ``{}`` are not empty.
"""

from __future__ import annotations

import math
import operator as op
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .values import JS_WHITESPACE, TypedValue, is_type_equal, js_string

Resolve = Callable[[Any, "dict[str, Any] | None"], "TypedValue | None"]

_NUMBER_RULES = {name: "number" for name in ("eq", "neq", "gt", "gte", "lt", "lte")}
_NIL_RULES = {"is_empty": "null", "is_not_empty": "null"}
_IN_RULES = {"in": "array", "nin": "array"}

#: left type → operator → the right operand's expected type (FlowGram's ``conditionRules``).
CONDITION_RULES: dict[str, dict[str, str]] = {
    "string": {"eq": "string", "neq": "string", "contains": "string", "not_contains": "string",
               **_IN_RULES, **_NIL_RULES},
    "number": {**_NUMBER_RULES, **_IN_RULES, **_NIL_RULES},
    "integer": {**{name: "integer" for name in _NUMBER_RULES}, **_IN_RULES, **_NIL_RULES},
    "boolean": {"eq": "boolean", "neq": "boolean", "is_true": "null", "is_false": "null", **_IN_RULES, **_NIL_RULES},
    "object": dict(_NIL_RULES),
    "map": dict(_NIL_RULES),
    "array": dict(_NIL_RULES),
    "date-time": {**{name: "date-time" for name in _NUMBER_RULES}, **_NIL_RULES},
    "null": {"eq": "null", **_NIL_RULES},
}

_RELATIONS: dict[str, Callable[[Any, Any], bool]] = {"gt": op.gt, "gte": op.ge, "lt": op.lt, "lte": op.le}
_NUMERIC = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_RADIX = re.compile(r"0([xXoObB])([0-9a-fA-F]+)")
_ISO_DATE = re.compile(
    r"([+-][0-9]{6}|[0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]+))?)?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MISSING = object()


def expected_right_type(left_type: str, operator: str) -> str:
    """FlowGram's ``getRuleType``: the right operand's expected type, ``"null"`` when there is no rule."""
    return CONDITION_RULES.get(left_type, {}).get(operator, "null")


def _check(left_type: str, operator: Any, right_type: str) -> bool:
    rules = CONDITION_RULES.get(left_type)
    if rules is None:
        raise ValueError(f'Condition left type "{left_type}" is not supported')
    expected = rules.get(operator) if isinstance(operator, str) else None
    if expected is None:
        raise ValueError(f'Condition left type "{left_type}" has no operator "{_nil_text(operator)}"')
    return is_type_equal(expected, right_type)


def _text(value: Any) -> str:
    return "null" if value is None else js_string(value)


def js_strict_equal(left: Any, right: Any, *, same_value_zero: bool = False) -> bool:
    """JavaScript ``===`` on JSON values; with ``same_value_zero`` (``includes``), NaN equals NaN."""
    if left is None or right is None:
        return left is None and right is None
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return bool(left == right or (same_value_zero and left != left and right != right))
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    return left is right


def _includes(container: Any, item: Any, name: str) -> bool:
    """JavaScript ``container.includes(item)`` for an array or a string."""
    if container is None:
        raise ValueError("Cannot read properties of null (reading 'includes')")
    if isinstance(container, str):
        return _text(item) in container
    if isinstance(container, (list, tuple)):
        return any(js_strict_equal(element, item, same_value_zero=True) for element in container)
    raise ValueError(f"{name}.includes is not a function")


def _to_number(value: Any) -> float:
    """JavaScript's ``ToNumber`` on a primitive (``null`` is 0, ``"12"`` is 12, ``"abc"`` is NaN)."""
    if value is None:
        return 0.0
    if isinstance(value, (bool, int)):
        return float(value) if abs(value) < 2**1024 else math.copysign(math.inf, value)
    if isinstance(value, float):
        return value
    if not isinstance(value, str):
        return math.nan
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


def _relation(operator: str, left: Any, right: Any) -> bool:
    """JavaScript ``<``, ``<=``, ``>``, ``>=``: strings compare as strings, anything else as numbers."""
    left, right = (js_string(v) if isinstance(v, (list, tuple, dict)) else v for v in (left, right))
    if isinstance(left, str) and isinstance(right, str):
        return _RELATIONS[operator](left, right)
    a, b = _to_number(left), _to_number(right)
    return not (math.isnan(a) or math.isnan(b)) and _RELATIONS[operator](a, b)


def _date_ms(value: Any) -> float:
    """``new Date(value).getTime()``: ISO-8601 strings (date-only = UTC, no offset = local), numbers, null = 0.

    Other string formats, which V8's legacy parser guesses at (``2000/01/01``), are NaN here.
    """
    if value is None or isinstance(value, (bool, int, float)):
        number = _to_number(value)
        return float(math.trunc(number)) if math.isfinite(number) and abs(number) <= 8.64e15 else math.nan
    match = _ISO_DATE.fullmatch(value if isinstance(value, str) else js_string(value))
    if not match:
        return math.nan
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    parts = [int(part or default) for part, default in ((month, 1), (day, 1), (hour, 0), (minute, 0), (second, 0))]
    month_n, day_n, hour_n, minute_n, second_n = parts
    millis = int((fraction or "0")[:3].ljust(3, "0"))
    if not (1 <= month_n <= 12 and 1 <= day_n <= 31 and hour_n <= 24 and minute_n <= 59 and second_n <= 59):
        return math.nan
    if hour_n == 24 and (minute_n or second_n or millis):
        return math.nan
    try:
        moment = datetime(int(year), month_n, 1) + timedelta(
            days=day_n - 1, hours=hour_n, minutes=minute_n, seconds=second_n, milliseconds=millis)
        if hour is not None and zone is None:
            return float(round(moment.timestamp() * 1000))
        offset = 0 if zone in (None, "Z", "z") else int(zone[1:3]) * 60 + int(zone[4:6])
        if zone and zone[0] == "-":
            offset = -offset
        moment = moment.replace(tzinfo=timezone.utc) - timedelta(minutes=offset)
    except (ValueError, OverflowError, OSError):
        return math.nan
    return float((moment - _EPOCH) // timedelta(milliseconds=1))


def _handle(left_type: str, operator: str, left: Any, right: Any) -> bool:
    """FlowGram's per-type condition handlers (``conditionHandlers``), after the rule check passed."""
    if operator == "is_empty":
        return left is None
    if operator == "is_not_empty":
        return left is not None
    if left_type == "null":
        return operator == "eq" and left is None and right is None
    if left_type == "date-time":
        left_ms, right_ms = _date_ms(left), _date_ms(right)
        if operator == "eq":
            return left_ms == right_ms
        if operator == "neq":
            return left_ms != right_ms
        return operator in _RELATIONS and _RELATIONS[operator](left_ms, right_ms)
    if left_type not in ("string", "number", "integer", "boolean"):
        return False
    if operator in ("eq", "neq"):
        return js_strict_equal(left, right) == (operator == "eq")
    if operator in ("in", "nin"):
        return _includes(right, left, "rightValue") == (operator == "in")
    if left_type == "string" and operator in ("contains", "not_contains"):
        return _includes(left, right, "leftValue") == (operator == "contains")
    if left_type in ("number", "integer") and operator in _RELATIONS:
        return _relation(operator, left, right)
    if left_type == "boolean" and operator in ("is_true", "is_false"):
        return left is (operator == "is_true")
    return False


def evaluate_condition(left: TypedValue | None, operator: str, right: TypedValue | None) -> bool | None:
    """Evaluate one condition as FlowGram does.

    :param left: the resolved left ref (``None`` when it did not resolve: type ``null``).
    :param right: the resolved right operand (``None`` when absent: type ``null``).
    :return: whether it holds, or ``None`` when the right type does not match the
        rule's expected type (FlowGram silently drops such a condition).
    :raises ValueError: ``Condition left type "string" has no operator "gt"``,
        ``Condition left type "X" is not supported``, or a JavaScript error such
        as ``Cannot read properties of null (reading 'includes')``.
    """
    left_type = left.type if left is not None and left.type is not None else "null"
    right_type = right.type if right is not None and right.type is not None else "null"
    if not _check(left_type, operator, right_type):
        return None
    return _handle(left_type, operator, left.value if left else None, right.value if right else None)


@dataclass
class _Parsed:
    key: Any
    left_type: str
    left_value: Any
    operator: Any
    right_type: str
    right_value: Any


def _nil_text(value: Any) -> str:
    return "undefined" if value is _MISSING else "null" if value is None else js_string(value)


def _parse(item: Any, resolve: Resolve) -> _Parsed:
    if item is None:
        raise ValueError("Cannot destructure property 'key' of 'item' as it is null.")
    value = item.get("value", _MISSING) if isinstance(item, dict) else _MISSING
    if value is _MISSING or value is None:
        raise ValueError(f"Cannot destructure property 'left' of 'value' as it is {_nil_text(value)}.")
    left = value.get("left", _MISSING) if isinstance(value, dict) else _MISSING
    if not (isinstance(left, dict) and left.get("type") == "ref"):
        raise ValueError(f"Invalid ref value: {_nil_text(left)}")
    operator = value.get("operator", _MISSING) if isinstance(value, dict) else _MISSING
    parsed_left = resolve(left, None)
    left_type = parsed_left.type if parsed_left is not None and parsed_left.type is not None else "null"
    right = value.get("right") if isinstance(value, dict) else None
    parsed_right = None
    if right not in (None, False, 0, ""):
        expected = expected_right_type(left_type, operator) if isinstance(operator, str) else "null"
        parsed_right = resolve(right, {"type": expected})
    return _Parsed(
        key=item.get("key") if isinstance(item, dict) else None,
        left_type=left_type,
        left_value=parsed_left.value if parsed_left is not None else None,
        operator=operator,
        right_type=parsed_right.type if parsed_right is not None and parsed_right.type is not None else "null",
        right_value=parsed_right.value if parsed_right is not None else None,
    )


def choose_branch(conditions: list[dict[str, Any]] | None, resolve: Resolve) -> str:
    """The condition node's branch: the ``key`` of the first condition that holds, else ``"else"``.

    As in FlowGram, every condition's operands are resolved first, then every
    condition's rule is checked (so a bad operator fails the node even after a
    true condition), then they are evaluated in order.

    :param conditions: ``data.conditions``: ``[{key, value: {left: ref, operator, right?}}]``.
    :param resolve: the engine's ``resolve(flow_value, declared_schema)``; the right
        operand is resolved with ``{"type": <expected type>}`` (so an ``array``
        constant is JSON-parsed), the left with ``None``.
    :raises ValueError: see :func:`evaluate_condition`; also ``Invalid ref value: ...``
        for a left operand that is not a ref.
    """
    parsed = [_parse(item, resolve) for item in conditions or []]
    checked = [p for p in parsed if _check(p.left_type, p.operator, p.right_type)]
    for condition in checked:
        if _handle(condition.left_type, condition.operator, condition.left_value, condition.right_value):
            return condition.key
    return "else"
