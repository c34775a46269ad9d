"""FlowGram's condition node: the operator rule table, JavaScript comparisons, and choosing a branch.

Pure functions, no I/O. The left operand is a ``ref``; its type picks a rule
that names the right operand's expected type. A right operand whose type does
not match drops the condition silently; an operator the left type lacks fails
the node. String ``is_empty``/``is_not_empty`` expect no right operand, as in
newer upstream (runtime-js 0.1.8 expected a string there, so they never matched).
``is_empty`` means *missing* (``None``): ``""``, ``[]`` and ``{}`` are not empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .javascript import (
    UNDEFINED,
    is_type_equal,
    js_compare,
    js_date_ms,
    js_includes,
    js_strict_equal,
    js_string,
    js_truthy,
)
from .values import TypedValue

__all__ = ["CONDITION_RULES", "choose_branch", "evaluate_condition", "expected_right_type",
           "js_strict_equal"]  # js_strict_equal: re-exported for older importers

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

_RELATIONS = ("gt", "gte", "lt", "lte")


def expected_right_type(left_type: str, operator: str) -> str:
    """FlowGram's ``getRuleType``: the right operand's expected type, ``"null"`` when there is no rule."""
    return CONDITION_RULES.get(left_type, {}).get(operator, "null")


def _check(left_type: str, operator: Any, right_type: str) -> bool:
    rules = CONDITION_RULES.get(left_type)
    if rules is None:
        raise ValueError(f'Condition left type "{left_type}" is not supported')
    expected = rules.get(operator) if isinstance(operator, str) else None
    if expected is None:
        raise ValueError(f'Condition left type "{left_type}" has no operator "{js_string(operator)}"')
    return is_type_equal(expected, right_type)


def _handle(left_type: str, operator: str, left: Any, right: Any) -> bool:
    """FlowGram's per-type condition handlers (``conditionHandlers``), after the rule check passed."""
    if operator == "is_empty":
        return left is None
    if operator == "is_not_empty":
        return left is not None
    if left_type == "null":
        return operator == "eq" and left is None and right is None
    if left_type == "date-time":
        left_ms, right_ms = js_date_ms(left), js_date_ms(right)
        if operator == "eq":
            return left_ms == right_ms
        if operator == "neq":
            return left_ms != right_ms
        return operator in _RELATIONS and js_compare(operator, left_ms, right_ms)
    if left_type not in ("string", "number", "integer", "boolean"):
        return False
    if operator in ("eq", "neq"):
        return js_strict_equal(left, right) == (operator == "eq")
    if operator in ("in", "nin"):
        return js_includes(right, left, "rightValue") == (operator == "in")
    if left_type == "string" and operator in ("contains", "not_contains"):
        return js_includes(left, right, "leftValue") == (operator == "contains")
    if left_type in ("number", "integer") and operator in _RELATIONS:
        return js_compare(operator, left, right)
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


def _parse(item: Any, resolve: Resolve) -> _Parsed:
    if item is None:
        raise ValueError("Cannot destructure property 'key' of 'item' as it is null.")
    value = item.get("value", UNDEFINED) if isinstance(item, dict) else UNDEFINED
    if value is UNDEFINED or value is None:
        raise ValueError(f"Cannot destructure property 'left' of 'value' as it is {js_string(value)}.")
    left = value.get("left", UNDEFINED) if isinstance(value, dict) else UNDEFINED
    if not (isinstance(left, dict) and left.get("type") == "ref"):
        raise ValueError(f"Invalid ref value: {js_string(left)}")
    operator = value.get("operator", UNDEFINED) if isinstance(value, dict) else UNDEFINED
    parsed_left = resolve(left, None)
    left_type = parsed_left.type if parsed_left is not None and parsed_left.type is not None else "null"
    right = value.get("right") if isinstance(value, dict) else None
    parsed_right = None
    if js_truthy(right):
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
