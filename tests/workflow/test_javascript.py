"""workflow.javascript: JavaScript's rules as FlowGram's engine applies them, checked against node's own answers.

The tables below were made once by running every value through node v20 (``String(v)``,
``JSON.stringify(v)``, ``a === b``, ``[a].includes(b)``, ``typeof v``, ``Boolean(v)``, ``Number(v)``,
``a < b``..., ``new Date(v).getTime()``) and through runtime-js 1.0.9's own ``WorkflowRuntimeType``
(``getWorkflowType``, ``getArrayItemsType``, lifted from ``dist/index.js``), with NaN, Infinity, -0 and
``undefined`` passed as markers. Node is not needed to run these tests. Local-time date strings are left
out: their answer depends on the machine's time zone. In JSON, a ``UNDEFINED`` answer means
``JSON.stringify`` returned ``undefined``, which ``${...}`` shows as ``undefined``.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

import workflow.conditions
import workflow.javascript as js
import workflow.validation
import workflow.values
from workflow.errors import WorkflowError
from workflow.javascript import (
    UNDEFINED,
    ArrayItemsTypeError,
    array_items_type,
    js_compare,
    js_date_ms,
    js_includes,
    js_json_copy,
    js_json_stringify,
    js_strict_equal,
    js_string,
    js_to_number,
    js_truthy,
    js_typeof,
    same_items_type,
    workflow_type,
)

STRING = [
    (0.5, '0.5'), (0, '0'), (1.0, '1'), (-0.0, '0'), (100, '100'), (123.123, '123.123'), (-2.5, '-2.5'),
    (1e21, '1e+21'), (-1e21, '-1e+21'), (1e20, '100000000000000000000'), (1e-7, '1e-7'), (-1e-7, '-1e-7'),
    (1e-6, '0.000001'), (1.5e-7, '1.5e-7'), (0.000001234, '0.000001234'), (123e-20, '1.23e-18'), (4.35, '4.35'),
    (0.1 + 0.2, '0.30000000000000004'), (1e300, '1e+300'), (5e-324, '5e-324'),
    (1.7976931348623157e308, '1.7976931348623157e+308'), (2**53 - 1, '9007199254740991'),
    (2**53 + 1, '9007199254740992'), (2**60, '1152921504606847000'), (10**400, 'Infinity'), (-(10**400), '-Infinity'),
    (123456789012345680000.0, '123456789012345680000'), (math.nan, 'NaN'), (math.inf, 'Infinity'),
    (-math.inf, '-Infinity'), (True, 'true'), (False, 'false'), (None, 'null'), (UNDEFINED, 'undefined'), ('', ''),
    ('a b', 'a b'), ([], ''), ([1, 2], '1,2'), ([None], ''), ([UNDEFINED, 1], ',1'),
    ([1, [2, 3], None, 'a', 0.5], '1,2,3,,a,0.5'), ([[], []], ','), ([True, 1e21, -0.0], 'true,1e+21,0'),
    ({'a': 1}, '[object Object]'), ([{'a': 1}], '[object Object]'), ({}, '[object Object]'),
]
JSON = [
    ({'b': 1, '10': 2.0, '2': None, 'a': [None, True, 'x\n"', math.nan]},
     '{"2":null,"10":2,"b":1,"a":[null,true,"x\\n\\"",null]}'),
    ('é', '"é"'), ('\x00\x1f\x7f', '"\\u0000\\u001f\x7f"'), ('\u2028', '"\u2028"'), ('\ud800', '"\\ud800"'),
    ('\\', '"\\\\"'),
    ([1e21, 1.5e-7, -0.0, 2**60, 10**400, math.inf], '[1e+21,1.5e-7,0,1152921504606847000,null,null]'),
    ([UNDEFINED], '[null]'), ({'a': UNDEFINED, 'b': 1}, '{"b":1}'), (UNDEFINED, UNDEFINED), (None, 'null'),
    (True, 'true'),
    ({'4294967294': 1, '4294967295': 2, '01': 3, '1': 4}, '{"1":4,"4294967294":1,"4294967295":2,"01":3}'),
    ([{}, []], '[{},[]]'), ('<\u00a0>', '"<\xa0>"'),
]
STRICT = [
    ((1, 1.0), True), ((0.0, -0.0), True), ((math.nan, math.nan), False), (('1', 1), False), ((True, 1), False),
    ((False, 0), False), ((None, None), True), ((None, UNDEFINED), False), ((UNDEFINED, UNDEFINED), True),
    (('a', 'a'), True), (('a', 'A'), False), ((2**53, 2**53 + 1), True), ((None, 0), False), (('', 0), False),
]
INCLUDES = [
    ((math.nan, math.nan), True), ((1, 1.0), True), ((0.0, -0.0), True), (('1', 1), False),
    ((None, UNDEFINED), False),
]
TYPEOF = [
    (None, 'object'), (UNDEFINED, 'undefined'), (True, 'boolean'), (0, 'number'), (1.5, 'number'),
    (math.nan, 'number'), ('', 'string'), ([], 'object'), ({}, 'object'),
]
TRUTHY = [
    (0, False), (-0.0, False), (math.nan, False), ('', False), (' ', True), ('0', True), ([], True), ({}, True),
    (None, False), (UNDEFINED, False), (False, False), (True, True), (1, True), (-1, True), (math.inf, True),
]
NUMBER = [
    ('12', 12), (' 12 ', 12), ('', 0), (' \n ', 0), ('0x1f', 31), ('0X1F', 31), ('0o17', 15), ('0b101', 5),
    ('-0x1f', math.nan), ('0x', math.nan), ('1e3', 1000), ('.5', 0.5), ('5.', 5), ('+.5', 0.5), ('-.5e-2', -0.005),
    ('Infinity', math.inf), ('-Infinity', -math.inf), ('+Infinity', math.inf), ('infinity', math.nan),
    ('1_000', math.nan), ('12px', math.nan), ('\u00a012\u2028', 12), ('1e1000', math.inf), ('0b2', math.nan),
    (None, 0), (UNDEFINED, math.nan), (True, 1), (False, 0), ([], 0), ([5], 5), ([1, 2], math.nan), ({}, math.nan),
    ('.', math.nan), ('e5', math.nan),
]
COMPARE = [
    (('lt', 'a', 'b'), True), (('lt', 'B', 'a'), True), (('lt', '\uffff', '\U0001F600'), False),
    (('gt', '10', '9'), False), (('gt', 10, '9'), True), (('gt', 'abc', 1), False), (('lte', None, 0), True),
    (('gte', math.nan, math.nan), False), (('lt', [2], 3), True), (('lt', [1, 2], 3), False), (('gt', True, 0), True),
    (('gte', 'a', 'a'), True), (('lt', 1, 1.5), True), (('gt', '', -1), True), (('lt', {}, '[object Z'), True),
]
DATE = [
    ('2000-01-01T00:00:00Z', 946684800000), ('2000-01-01T00:00:00.000Z', 946684800000),
    ('2000-02-30T00:00:00Z', 951868800000), ('2001-02-29T00:00:00Z', 983404800000),
    ('2000-04-31T00:00:00Z', 957139200000), ('2000-01-32T00:00:00Z', math.nan), ('2000-13-01T00:00:00Z', math.nan),
    ('2000-00-01T00:00:00Z', math.nan), ('2000-01-00T00:00:00Z', math.nan), ('2000-01-01T24:00:00Z', 946771200000),
    ('2000-01-01T24:00:01Z', math.nan), ('2000-01-01T23:60:00Z', math.nan), ('2000-01-01T23:00:60Z', math.nan),
    ('0000-01-01T00:00:00Z', -62167219200000), ('-000001-01-01T00:00:00Z', -62198755200000),
    ('-000000-01-01T00:00:00Z', math.nan), ('+002000-01-01T00:00:00Z', 946684800000),
    ('+275760-09-13T00:00:00Z', 8640000000000000), ('+275760-09-13T00:00:00.001Z', math.nan),
    ('2000-01-01', 946684800000), ('2000-01', 946684800000), ('2000', 946684800000),
    ('2000-01-01T00:00Z', 946684800000), ('2000-01-01t00:00:00z', 946684800000),
    ('2000-01-01 00:00:00Z', 946684800000), ('2000-01-01T12:00:00+05:30', 946708200000),
    ('2000-01-01T12:00:00-05:00', 946746000000), ('2000-01-01T00:00:00.123456Z', 946684800123),
    ('2000-01-01T00:00:00.5Z', 946684800500), ('x', math.nan), ('', math.nan), (0, 0), (1.9, 1), (-1.9, -1),
    (math.nan, math.nan), (None, 0), (True, 1), (8.64e15, 8640000000000000), (8.64e15 + 1, math.nan),
    (-8.64e15, -8640000000000000),
]
WTYPE = [
    (None, 'null'), (UNDEFINED, 'null'), (True, 'boolean'), ('x', 'string'),
    ('2000-01-01T00:00:00.000Z', 'date-time'), ('2000-01-01T00:00:00', 'date-time'),
    ('2000-01-01T00:00:00Z', 'date-time'), ('2000-01-01', 'string'), ('2000-01-01T00:00:00.12Z', 'string'),
    ('2000-13-01T00:00:00Z', 'string'), ('2000-02-30T00:00:00Z', 'date-time'), ('0000-01-01T00:00:00Z', 'date-time'),
    ('2000-01-01T24:00:00Z', 'date-time'), ('2000-01-01T24:00:01Z', 'string'), ('2000-01-01t00:00:00z', 'string'),
    ('2000-01-01T00:00:00Zx', 'string'), ('2000-01-01T00:00:00\n', 'string'), ('2000-01-01T00:00:00ZZ', 'string'),
    (0, 'integer'), (1.0, 'integer'), (-0.0, 'integer'), (0.5, 'number'), (math.nan, 'number'), (math.inf, 'number'),
    (1e21, 'integer'), (2**60, 'integer'), (10**400, 'number'), ([1], 'array'), ([], 'array'), ({}, 'object'),
]
ITEMS = [
    (['integer', 'string'], {'error': 'Array items type must be same, expect integer, but got string'}),
    (['number', 'integer'], {'error': 'Array items type must be same, expect number, but got integer'}),
    (['integer', 'number'], {'error': 'Array items type must be same, expect integer, but got number'}), ([], None),
    (['string', 'string'], 'string'),
    ([UNDEFINED, 'string'], {'error': 'Array items type must be same, expect undefined, but got string'}),
    (['null', 'integer'], {'error': 'Array items type must be same, expect null, but got integer'}),
    (['integer', 'integer', 'null'], {'error': 'Array items type must be same, expect integer, but got null'}),
    (['date-time', 'string'], {'error': 'Array items type must be same, expect date-time, but got string'}),
]


def same_number(got: float, expected: float) -> bool:
    return (math.isnan(got) and math.isnan(expected)) or got == expected


@pytest.mark.parametrize(("value", "text"), STRING)
def test_string(value: Any, text: str) -> None:
    assert js_string(value) == text


@pytest.mark.parametrize(("value", "text"), JSON)
def test_json_stringify(value: Any, text: Any) -> None:
    assert js_json_stringify(value) == ("undefined" if text is UNDEFINED else text)


@pytest.mark.parametrize(("pair", "equal"), STRICT)
def test_strict_equal(pair: tuple[Any, Any], equal: bool) -> None:
    assert js_strict_equal(*pair) is equal


@pytest.mark.parametrize(("pair", "found"), INCLUDES)
def test_array_includes(pair: tuple[Any, Any], found: bool) -> None:
    element, item = pair
    assert js_includes([element], item, "list") is found


@pytest.mark.parametrize(("value", "kind"), TYPEOF)
def test_typeof(value: Any, kind: str) -> None:
    assert js_typeof(value) == kind


@pytest.mark.parametrize(("value", "truthy"), TRUTHY)
def test_truthy(value: Any, truthy: bool) -> None:
    assert js_truthy(value) is truthy


@pytest.mark.parametrize(("value", "number"), NUMBER)
def test_to_number(value: Any, number: float) -> None:
    assert same_number(js_to_number(value), number)


@pytest.mark.parametrize(("case", "holds"), COMPARE)
def test_compare(case: tuple[str, Any, Any], holds: bool) -> None:
    assert js_compare(*case) is holds


@pytest.mark.parametrize(("value", "ms"), DATE)
def test_date_ms(value: Any, ms: float) -> None:
    assert same_number(js_date_ms(value), ms)


@pytest.mark.parametrize(("value", "kind"), WTYPE)
def test_workflow_type(value: Any, kind: str) -> None:
    assert workflow_type(value) == kind


@pytest.mark.parametrize(("types", "expected"), ITEMS)
def test_same_items_type(types: list[Any], expected: Any) -> None:
    types = [None if kind is UNDEFINED else kind for kind in types]  # our "no type" is None
    if isinstance(expected, dict):
        with pytest.raises(ArrayItemsTypeError) as caught:
            same_items_type(types)
        assert str(caught.value) == expected["error"]
    else:
        assert same_items_type(types) == expected


def test_array_items_type_of_values() -> None:
    assert array_items_type([1, 2.0, -3]) == "integer"
    assert array_items_type([]) is None
    assert array_items_type([[1], ["a"]]) == "array"
    with pytest.raises(ArrayItemsTypeError, match="^Array items type must be same, expect integer, but got string$"):
        array_items_type([1, "a"])
    with pytest.raises(ArrayItemsTypeError, match="expect number, but got integer$"):
        array_items_type([0.5, 1])  # strict: integer and number differ here, unlike isTypeEqual
    assert issubclass(ArrayItemsTypeError, ValueError) and issubclass(ArrayItemsTypeError, WorkflowError)


def test_json_copy_orders_keys_as_javascript_and_drops_what_json_cannot_hold() -> None:
    copied = js_json_copy({"a": {"z": 1, "1": 2}, "10": [math.nan, UNDEFINED], "b": UNDEFINED})
    assert copied == {"10": [None, None], "a": {"1": 2, "z": 1}}
    assert list(copied) == ["10", "a"] and list(copied["a"]) == ["1", "z"]


def test_every_module_uses_the_one_copy_of_each_rule() -> None:
    """values, conditions and validation use (and re-export) these functions; none keeps its own."""
    assert workflow.values.infer_type is js.workflow_type
    for name in ("js_string", "js_number_text", "js_json_stringify", "js_object_keys", "is_type_equal",
                 "JS_WHITESPACE"):
        assert getattr(workflow.values, name) is getattr(js, name)
    assert workflow.conditions.js_strict_equal is js.js_strict_equal
    for module in (workflow.values, workflow.conditions, workflow.validation):
        assert not hasattr(module, "_Undefined") and not hasattr(module, "_to_number")
        assert not hasattr(module, "_typeof") and not hasattr(module, "_truthy")
