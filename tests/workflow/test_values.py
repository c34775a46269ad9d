"""workflow.values: FlowGram's types, JavaScript conversions and flow-value resolution."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from workflow.values import (
    TypedValue,
    constant_value,
    infer_type,
    infer_typed,
    is_type_equal,
    js_json_stringify,
    js_number_text,
    js_object_keys,
    js_string,
    lodash_get,
    output_defaults,
    parse_inputs,
    parse_json_content,
    ref_value,
    render_template,
    resolve_flow_value,
)

CONFORMANCE = Path(__file__).resolve().parent / "flowgram"  # FlowGram's own cases, copied in: see its README.md


def load(name: str) -> Any:
    return json.loads((CONFORMANCE / name).read_text())


def expected_case(case_id: str) -> dict[str, Any]:
    return next(case for case in load("expected-results.json")["cases"] if case["id"] == case_id)


def node(schema: dict[str, Any], node_id: str) -> dict[str, Any]:
    return next(n for n in schema["nodes"] if n["id"] == node_id)


def variables(node_id: str, outputs_schema: dict[str, Any], outputs: dict[str, Any]) -> dict[Any, TypedValue]:
    """What FlowGram's ``setNodeOutputs`` registers: declared keys, ``outputs[key] ?? default``."""
    defaults = output_defaults(outputs_schema)
    found = {}
    for key, declared in outputs_schema["properties"].items():
        value = outputs.get(key)
        items = declared.get("items") or {}
        found[(node_id, key)] = TypedValue(value if value is not None else defaults.get(key), declared["type"],
                                           items.get("type"))
    return found


def lookup_of(store: dict[Any, TypedValue]) -> Any:
    return lambda node_id, key: store.get((node_id, key))


STORE = {
    ("start_0", "obj"): TypedValue({"a": {"b": [1, 2]}, "n": None, "s": "xyz"}, "object"),
    ("start_0", "arr"): TypedValue([1, 2], "array", "integer"),
    ("start_0", "num"): TypedValue(1.0, "number"),
    ("start_0", "flag"): TypedValue(True, "boolean"),
    ("start_0", "missing"): TypedValue(None, "string"),
    ("start_0", "text"): TypedValue("hello", "string"),
    ("start_0", "empty"): TypedValue({"list": []}, "object"),
}
LOOKUP = lookup_of(STORE)


@pytest.mark.parametrize(("value", "kind"), [
    (None, "null"), (True, "boolean"), (False, "boolean"), (0, "integer"), (1.0, "integer"), (0.5, "number"),
    (math.nan, "number"), ("x", "string"), ("2000-01-01T00:00:00.000Z", "date-time"),
    ("2000-01-01T00:00:00", "date-time"), ("2000-01-01", "string"), ("2000-01-01T00:00:00.12Z", "string"),
    ([1], "array"), ({}, "object"),
])
def test_infer_type(value: Any, kind: str) -> None:
    assert infer_type(value) == kind


def test_infer_typed_items_from_the_first_element() -> None:
    assert infer_typed(["a", 1]) == TypedValue(["a", 1], "array", "string")
    assert infer_typed([]) == TypedValue([], "array", None)
    assert infer_typed(3) == TypedValue(3, "integer", None)


def test_is_type_equal() -> None:
    assert is_type_equal("number", "integer") and is_type_equal("integer", "number")
    assert is_type_equal("map", "map") and not is_type_equal("map", "object")
    assert not is_type_equal("string", "date-time")


@pytest.mark.parametrize(("number", "text"), [
    (0.5, "0.5"), (0, "0"), (1.0, "1"), (-0.0, "0"), (123.123, "123.123"), (-2.5, "-2.5"), (1e21, "1e+21"),
    (1e20, "100000000000000000000"), (1e-7, "1e-7"), (0.000001, "0.000001"), (1.5e-7, "1.5e-7"),
    (2**60, "1152921504606847000"), (9007199254740991, "9007199254740991"), (math.nan, "NaN"),
    (math.inf, "Infinity"), (-math.inf, "-Infinity"), (1.7976931348623157e308, "1.7976931348623157e+308"),
    (0.1 + 0.2, "0.30000000000000004"), (123456789012345680000.0, "123456789012345680000"),
])
def test_js_number_text(number: float, text: str) -> None:
    assert js_number_text(number) == text


@pytest.mark.parametrize(("value", "text"), [
    (True, "true"), (False, "false"), (None, "null"), (1.0, "1"), ("a b", "a b"), ([1, 2], "1,2"),
    ([1, [2, 3], None, "a", 0.5], "1,2,3,,a,0.5"), ([], ""), ({"a": 1}, "[object Object]"),
    ([{"a": 1}], "[object Object]"),
])
def test_js_string(value: Any, text: str) -> None:
    assert js_string(value) == text


def test_js_json_stringify_and_key_order() -> None:
    value = {"b": 1, "10": 2.0, "2": None, "a": [None, True, "x\n\"", math.nan]}
    assert js_object_keys(value) == ["2", "10", "b", "a"]
    assert js_json_stringify(value) == '{"2":null,"10":2,"b":1,"a":[null,true,"x\\n\\"",null]}'
    assert js_json_stringify("é") == '"é"'


def test_parse_json_content() -> None:
    assert parse_json_content('{"a": [1]}', "object") == {"a": [1]}
    assert parse_json_content('{"a": 1}', "map") == {"a": 1}
    assert parse_json_content("[1, 2]", "array") == [1, 2]
    assert parse_json_content("not json", "array") == "not json"
    assert parse_json_content("NaN", "array") == "NaN"  # JSON.parse rejects it
    assert parse_json_content("[1]", "string") == "[1]"
    assert parse_json_content(5, "object") == 5


def test_constant_value_takes_the_declared_type_without_coercion() -> None:
    assert constant_value("1", "number") == TypedValue("1", "number")
    assert constant_value('["x", "y"]', "array") == TypedValue(["x", "y"], "array", "string")
    assert constant_value('["x"]', "array", "string") == TypedValue(["x"], "array", "string")
    assert constant_value("{bad", "object") == TypedValue("{bad", "object")
    assert constant_value(5, None) == TypedValue(5, "integer")
    assert constant_value(None, "string") is None
    assert constant_value("x", "") is None


def test_lodash_get() -> None:
    value = {"a": [{"b": None}, "xy"], "1": "one"}
    assert lodash_get(value, ["a", 0, "b"]) == (True, None)
    assert lodash_get(value, ["a", "1", "0"]) == (True, "x")
    assert lodash_get(value, ["a", "length"]) == (True, 2)
    assert lodash_get(value, [1]) == (True, "one")
    assert lodash_get(value, ["a", "01"]) == (False, None)
    assert lodash_get(value, ["a", 0, "b", "c"]) == (False, None)
    assert lodash_get(value, ["nope"]) == (False, None)
    assert lodash_get(value, []) == (True, value)


def test_ref_value() -> None:
    assert ref_value(["start_0"], LOOKUP) is None
    assert ref_value("start_0.obj", LOOKUP) is None
    assert ref_value(["start_0", "nope"], LOOKUP) is None
    assert ref_value(["start_0", "missing"], LOOKUP) == TypedValue(None, "string")  # declared type, no value
    assert ref_value(["start_0", "num"], LOOKUP) is STORE[("start_0", "num")]
    assert ref_value(["start_0", "obj", "a", "b"], LOOKUP) == TypedValue([1, 2], "array", "integer")
    assert ref_value(["start_0", "obj", "a", "b", 1], LOOKUP) == TypedValue(2, "integer")
    assert ref_value(["start_0", "obj", "a", "b", "0"], LOOKUP) == TypedValue(1, "integer")
    assert ref_value(["start_0", "arr", "1"], LOOKUP) == TypedValue(2, "integer")
    assert ref_value(["start_0", "obj", "n"], LOOKUP) == TypedValue(None, "null")
    assert ref_value(["start_0", "obj", "zz"], LOOKUP) is None
    # FlowGram's variable store gives an empty array's items the type "null"
    assert ref_value(["start_0", "empty", "list"], LOOKUP) == TypedValue([], "array", "null")


@pytest.mark.parametrize(("template", "text"), [
    ("{{start_0.obj}}", "[object Object]"),
    ("{{start_0.arr}}", "1,2"),
    ("{{ start_0.num }}!", "1!"),
    ("{{start_0.flag}}", "true"),
    ("[{{start_0.missing}}]", "[undefined]"),  # declared but missing
    ("[{{start_0.nope}}]", "[]"),  # unknown variable
    ("[{{start_0}}]", "[]"),  # fewer than 2 parts
    ("[{{ }}]", "[]"),
    ("{{start_0.obj.a.b}}|{{start_0.obj.n}}|{{start_0.obj.zz}}", "1,2|null|undefined"),
    ("{{start_0.obj.s.length}}-{{start_0.text}}", "3-hello"),
    ("no refs {here}", "no refs {here}"),
    ("{{start_0.text}}{{start_0.text}}", "hellohello"),
])
def test_render_template(template: str, text: str) -> None:
    assert render_template(template, LOOKUP) == text


def test_resolve_flow_value() -> None:
    assert resolve_flow_value({"type": "ref", "content": ["start_0", "text"]}, None, LOOKUP) == STORE[
        ("start_0", "text")]
    assert resolve_flow_value({"type": "constant", "content": "[1]"}, {"type": "array", "items": {"type": "number"}},
                              LOOKUP) == TypedValue([1], "array", "number")
    assert resolve_flow_value({"type": "template", "content": "{{start_0.arr}}"}, None, LOOKUP) == TypedValue(
        "1,2", "string")
    assert resolve_flow_value({"type": "template", "content": ""}, None, LOOKUP) is None
    with pytest.raises(ValueError, match="^Unknown flow value type: expression$"):
        resolve_flow_value({"type": "expression", "content": "1 + 1"}, None, LOOKUP)
    with pytest.raises(ValueError, match="^Invalid flow value type: undefined$"):
        resolve_flow_value({"content": 1}, None, LOOKUP)


def test_parse_inputs_drops_like_flowgram_and_warns() -> None:
    schema = {"type": "object", "properties": {
        "a": {"type": "number"}, "b": {"type": "string"}, "c": {"type": "string"}, "d": {"type": "string"},
        "e": {"type": "integer"}, "f": {"type": "object"}}}
    values = {
        "a": {"type": "ref", "content": ["start_0", "num"]},
        "b": {"type": "ref", "content": ["start_0", "nope"]},
        "c": {"type": "ref", "content": ["start_0", "missing"]},
        "d": {"type": "ref", "content": ["start_0", "num"]},
        "e": {"type": "constant", "content": "7"},  # declared type, no coercion
        "f": {"type": "constant", "content": '{"k": 1}'},
        "undeclared": {"type": "constant", "content": 1},
    }
    warnings: list[str] = []
    assert parse_inputs(schema, values, LOOKUP, warnings.append) == {"a": 1.0, "e": "7", "f": {"k": 1}}
    assert warnings == [
        'input "b": reference to start_0.nope did not resolve',
        'input "c": reference to start_0.missing has no value',
        'input "d": expected string, got number',
        'input "undeclared": not declared in the node\'s inputs, ignored',
    ]
    assert parse_inputs(None, values, LOOKUP) == {}
    assert parse_inputs(schema, None, LOOKUP) == {}
    with pytest.raises(ValueError, match="Unknown flow value type: expression"):
        parse_inputs(schema, {"a": {"type": "expression"}}, LOOKUP)


def test_output_defaults() -> None:
    schema = {"type": "object", "properties": {
        "a": {"type": "array", "default": "[1]"}, "b": {"type": "string", "default": "[1]"},
        "c": {"type": "string"}, "d": {"type": "map", "default": "{oops"}}}
    assert output_defaults(schema) == {"a": [1], "b": "[1]", "d": "{oops"}
    assert output_defaults({"type": "array", "properties": schema["properties"]}) == {}
    assert output_defaults(None) == {}


def test_start_defaults_reach_the_end_node() -> None:
    schema = load("start-default.json")
    start, end = node(schema, "start_0"), node(schema, "end_0")
    store = variables("start_0", start["data"]["outputs"], {})
    outputs = parse_inputs(end["data"]["inputs"], end["data"]["inputsValues"], lookup_of(store))
    assert outputs == expected_case("start_default")["expect"]["outputs"]


def test_global_variables_reach_the_end_node() -> None:
    schema = load("global-variable.json")
    end = node(schema, "end_0")
    store = variables("global", schema["globalVariable"], {})
    outputs = parse_inputs(end["data"]["inputs"], end["data"]["inputsValues"], lookup_of(store))
    assert outputs == expected_case("global_variable")["expect"]["outputs"]


def test_end_constants() -> None:
    end = node(load("end-constant.json"), "end_0")
    outputs = parse_inputs(end["data"]["inputs"], end["data"]["inputsValues"], lookup_of({}))
    assert outputs == expected_case("end_constant")["expect"]["outputs"]


def test_basic_llm_and_end_inputs() -> None:
    schema, case = load("basic.json"), expected_case("basic")
    snapshots = {snapshot["nodeID"]: snapshot for snapshot in case["expect"]["snapshots"]}
    store = variables("start_0", node(schema, "start_0")["data"]["outputs"], case["inputs"])
    llm = node(schema, "llm_0")
    inputs = parse_inputs(llm["data"]["inputs"], llm["data"]["inputsValues"], lookup_of(store))
    assert inputs == snapshots["llm_0"]["inputs"]
    store.update(variables("llm_0", llm["data"]["outputs"], snapshots["llm_0"]["outputs"]))
    end = node(schema, "end_0")
    assert parse_inputs(end["data"]["inputs"], end["data"]["inputsValues"], lookup_of(store)) == case["expect"][
        "outputs"]
