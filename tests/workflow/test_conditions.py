"""workflow.conditions: FlowGram's condition rules, operators and branch choice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from workflow.conditions import CONDITION_RULES, choose_branch, evaluate_condition, expected_right_type
from workflow.values import TypedValue, resolve_flow_value

CONFORMANCE = Path(__file__).resolve().parent / "flowgram"  # FlowGram's own cases, copied in: see its README.md


def load(name: str) -> Any:
    return json.loads((CONFORMANCE / name).read_text())


def string_cases() -> list[dict[str, Any]]:
    return load("expected-results.json")["upstreamNewer_conditionString"]["cases"]


def resolver(store: dict[Any, TypedValue]) -> Any:
    """The engine's ``resolve(flow_value, declared_schema)`` over a fixed variable store."""
    lookup = lambda node_id, key: store.get((node_id, key))  # noqa: E731
    return lambda flow_value, declared=None: resolve_flow_value(flow_value, declared, lookup)


def condition(key: str, left: list[str], operator: str, right: Any = None, right_type: str = "constant") -> dict:
    value: dict[str, Any] = {"left": {"type": "ref", "content": left}, "operator": operator}
    if right is not None:
        value["right"] = {"type": right_type, "content": right}
    return {"key": key, "value": value}


def t(value: Any, kind: str) -> TypedValue:
    return TypedValue(value, kind)


@pytest.mark.parametrize("case", string_cases(), ids=lambda c: f"{c['operator']}-{c['text']!r}")
def test_upstream_newer_string_conditions(case: dict[str, Any]) -> None:
    text = None if case["text"] == "__undefined__" else case["text"]
    store = {("global", "text"): TypedValue(text, "string")}
    right = case.get("right") or {}
    conditions = [condition("if_1", ["global", "text"], case["operator"], right.get("content"))]
    assert choose_branch(conditions, resolver(store)) == case["expectedBranchUpstream"]


@pytest.mark.parametrize(("model_id", "branch"), [(1, "if_1"), (2, "if_2"), (3, "else")])
def test_branch_fixture(model_id: int, branch: str) -> None:
    schema = load("branch.json")
    conditions = next(n for n in schema["nodes"] if n["type"] == "condition")["data"]["conditions"]
    store = {("start_0", "model_id"): TypedValue(model_id, "number")}
    assert choose_branch(conditions, resolver(store)) == branch


def test_loop_break_continue_fixture() -> None:
    loop = next(n for n in load("loop-break-continue.json")["nodes"] if n["type"] == "loop")
    conditions = next(n for n in loop["blocks"] if n["type"] == "condition")["data"]["conditions"]
    branches = [choose_branch(conditions, resolver({("loop_0_locals", "index"): TypedValue(i, "number")}))
                for i in range(8)]
    assert branches == ["if_1"] * 3 + ["if_3"] * 4 + ["if_2"]


@pytest.mark.parametrize(("left", "operator", "right", "result"), [
    (t("abc", "string"), "eq", t("abc", "string"), True),
    (t("abc", "string"), "neq", t("abc", "string"), False),
    (t("abc", "string"), "contains", t("b", "string"), True),
    (t("abc", "string"), "not_contains", t("b", "string"), False),
    (t("b", "string"), "in", t(["a", "b"], "array"), True),
    (t("b", "string"), "nin", t(["a", "b"], "array"), False),
    (t("b", "string"), "in", t("abc", "array"), True),  # an unparsable array constant stays a string
    (t("", "string"), "is_empty", None, False),
    (t(None, "string"), "is_empty", None, True),
    (t("", "string"), "is_not_empty", None, True),
    (t("x", "string"), "is_empty", t("x", "string"), None),  # right must be absent (null) upstream-newer
    (t(1, "number"), "eq", t("1", "number"), False),  # no coercion: 1 === '1'
    (t(1, "integer"), "eq", t(1.0, "number"), True),
    (t(3, "integer"), "gt", t(2, "number"), True),
    (t(3, "number"), "gte", t(3, "integer"), True),
    (t(3, "number"), "lt", t("10", "number"), True),  # JS relational comparison converts '10'
    (t(3, "number"), "lte", t("abc", "number"), False),
    (t(3, "number"), "gt", t("string", "string"), None),  # wrong right type: dropped
    (t(2, "number"), "in", t([1, 2], "array"), True),
    (t(True, "number"), "in", t([1], "array"), False),
    (t(None, "number"), "is_empty", None, True),
    (t(0, "number"), "is_empty", None, False),
    (t(True, "boolean"), "is_true", None, True),
    (t(1, "boolean"), "is_true", None, False),
    (t(False, "boolean"), "is_false", None, True),
    (t(False, "boolean"), "eq", t(False, "boolean"), True),
    (t(False, "boolean"), "nin", t([True], "array"), True),
    (t([], "array"), "is_empty", None, False),
    (t({}, "object"), "is_not_empty", None, True),
    (t(None, "map"), "is_empty", None, True),
    (None, "eq", None, True),
    (None, "is_empty", None, True),
    (t(None, "null"), "is_not_empty", None, False),
    (t("2000-01-01T00:00:00.000Z", "date-time"), "eq", t("2000-01-01T00:00:00Z", "date-time"), True),
    (t("2000-01-02T00:00:00Z", "date-time"), "gt", t("2000-01-01T23:59:59.999Z", "date-time"), True),
    (t("2000-01-01T00:00:00Z", "date-time"), "eq", t("2000-01-01T01:00:00+01:00", "date-time"), True),
    (t("2000-01-01T00:00:00Z", "date-time"), "eq", t("2000-01-01", "date-time"), True),
    (t("2000-01-01T00:00:00Z", "date-time"), "lte", t(946684800000, "date-time"), True),
    (t("not a date", "date-time"), "eq", t("not a date", "date-time"), False),  # NaN
    (t("not a date", "date-time"), "neq", t("2000-01-01", "date-time"), True),
    (t("2000-01-01T00:00:00Z", "date-time"), "is_not_empty", None, True),
])
def test_evaluate_condition(left: TypedValue | None, operator: str, right: TypedValue | None,
                            result: bool | None) -> None:
    assert evaluate_condition(left, operator, right) is result


@pytest.mark.parametrize(("left", "operator", "message"), [
    (t("a", "string"), "gt", 'Condition left type "string" has no operator "gt"'),
    (t([], "array"), "eq", 'Condition left type "array" has no operator "eq"'),
    (None, "gt", 'Condition left type "null" has no operator "gt"'),
    (t(1, "weird"), "eq", 'Condition left type "weird" is not supported'),
    (t(None, "string"), "contains", "Cannot read properties of null (reading 'includes')"),
])
def test_evaluate_condition_errors(left: TypedValue | None, operator: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        evaluate_condition(left, operator, t("x", "string"))
    assert str(info.value) == message


def test_rules() -> None:
    assert set(CONDITION_RULES) == {"string", "number", "integer", "boolean", "object", "map", "array",
                                    "date-time", "null"}
    assert expected_right_type("string", "is_empty") == "null"
    assert expected_right_type("integer", "gt") == "integer"
    assert expected_right_type("string", "gt") == "null"


STORE = {
    ("start_0", "n"): TypedValue(5, "integer"),
    ("start_0", "s"): TypedValue("x", "string"),
    ("start_0", "list"): TypedValue(["x", "y"], "array", "string"),
}


def test_choose_branch_first_true_wins() -> None:
    conditions = [
        condition("low", ["start_0", "n"], "lt", 3),
        condition("mid", ["start_0", "n"], "gte", 3),
        condition("also", ["start_0", "n"], "eq", 5),
    ]
    assert choose_branch(conditions, resolver(STORE)) == "mid"
    assert choose_branch([], resolver(STORE)) == "else"
    assert choose_branch(None, resolver(STORE)) == "else"


def test_choose_branch_right_operands() -> None:
    resolve = resolver(STORE)
    # the right constant takes the expected type: JSON-parsed for in/nin
    assert choose_branch([condition("in", ["start_0", "s"], "in", '["x", "z"]')], resolve) == "in"
    assert choose_branch([condition("ref", ["start_0", "s"], "in", ["start_0", "list"], "ref")], resolve) == "ref"
    # a right ref of the wrong type silently drops the condition
    assert choose_branch([condition("no", ["start_0", "n"], "eq", ["start_0", "s"], "ref")], resolve) == "else"
    # unresolved left: type null, only eq/is_empty/is_not_empty
    assert choose_branch([condition("nil", ["start_0", "nope"], "is_empty")], resolve) == "nil"


def test_choose_branch_checks_every_rule_before_evaluating() -> None:
    conditions = [condition("ok", ["start_0", "n"], "eq", 5), condition("bad", ["start_0", "s"], "gt", "a")]
    with pytest.raises(ValueError, match='^Condition left type "string" has no operator "gt"$'):
        choose_branch(conditions, resolver(STORE))


@pytest.mark.parametrize(("item", "message"), [
    ({"key": "k", "value": {"left": {"type": "constant", "content": 1}, "operator": "eq"}},
     "Invalid ref value: [object Object]"),
    ({"key": "k", "value": {"operator": "eq"}}, "Invalid ref value: undefined"),
    ({"key": "k"}, "Cannot destructure property 'left' of 'value' as it is undefined."),
    ({"key": "k", "value": {"left": {"type": "ref", "content": ["start_0", "n"]}}},
     'Condition left type "integer" has no operator "undefined"'),
    ({"key": "k", "value": {"left": {"type": "ref", "content": ["start_0", "n"]}, "operator": "eq",
                            "right": {"type": "expression", "content": "1"}}},
     "Unknown flow value type: expression"),
])
def test_choose_branch_errors(item: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        choose_branch([item], resolver(STORE))
    assert str(info.value) == message
