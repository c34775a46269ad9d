"""FlowGram's runtime values: types, JavaScript conversions, and resolving flow values.

Pure functions, no I/O. They reproduce FlowGram runtime-js 0.1.8 (``state`` and
``runtime-type``): a ``constant`` takes its declared type without coercion, a
``ref`` reads a variable (and a lodash-``get`` path into it), a ``template``
renders ``{{node.key.path}}`` with JavaScript's ``String()``.

Variables come from a *lookup* ``(node_id, key) -> TypedValue | None`` owned by
the engine. A variable whose value is ``None`` is "declared but missing" (JS
``undefined``): templates render it as ``undefined``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

WorkflowType = Literal["string", "integer", "number", "boolean", "object", "array", "map", "date-time", "null"]

#: Every type name FlowGram's runtime knows.
WORKFLOW_TYPES: tuple[str, ...] = get_args(WorkflowType)
#: Declared types whose string constants and defaults are parsed as JSON.
JSON_TYPES = frozenset({"object", "array", "map"})
#: The characters JavaScript's ``String.prototype.trim`` removes.
JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)

Lookup = Callable[[Any, Any], "TypedValue | None"]
Warn = Callable[[str], None]

_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3})?Z?")
_TEMPLATE = re.compile(r"\{\{([^}]+)\}\}")
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
_MISSING = object()


@dataclass
class TypedValue:
    """A runtime value with its FlowGram type (and, for arrays, the items' type)."""

    value: Any
    type: str
    items_type: str | None = None


def infer_type(value: Any) -> str:
    """FlowGram's ``getWorkflowType``: the runtime type of a JSON-like value.

    ``None`` is ``null``; an ISO-8601 string (``2000-01-01T00:00:00.000Z``) is
    ``date-time``; an integral number is ``integer``.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "date-time" if _DATE_TIME.fullmatch(value) else "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if math.isfinite(value) and value.is_integer() else "number"
    if isinstance(value, (list, tuple)):
        return "array"
    return "object"


def infer_typed(value: Any) -> TypedValue:
    """:func:`infer_type` as a :class:`TypedValue`; an array's items type comes from element 0 (``None`` if empty)."""
    kind = infer_type(value)
    items = infer_type(value[0]) if kind == "array" and value else None
    return TypedValue(value, kind, items)


def is_type_equal(left: str | None, right: str | None) -> bool:
    """FlowGram's ``isTypeEqual``: ``number`` and ``integer`` match each other, any other type only itself."""
    return left == right or {left, right} == {"number", "integer"}


def js_number_text(number: float | int) -> str:
    """JavaScript's ``Number.prototype.toString()``: ``0.5``, ``1`` (for ``1.0``), ``1e+21``, ``1e-7``."""
    if isinstance(number, bool):
        return "true" if number else "false"
    if isinstance(number, int):
        if abs(number) < 2**53:
            return str(number)
        number = float(number) if abs(number) < 2**1024 else math.copysign(math.inf, number)
    if not math.isfinite(number):
        return "NaN" if math.isnan(number) else "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0"
    sign = "-" if number < 0 else ""
    mantissa, _, exponent = repr(abs(number)).partition("e")
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
    """JavaScript's ``String(value)``, as FlowGram templates show values.

    ``True`` → ``true``, ``1.0`` → ``1``, ``[1, [2, None]]`` → ``1,2,``, a dict →
    ``[object Object]``; ``None`` → ``undefined`` (a declared but missing variable).
    """
    if value is None:
        return "undefined"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return js_number_text(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):  # Array.prototype.join: null items are empty
        return ",".join("" if item is None else js_string(item) for item in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def js_object_keys(obj: dict[str, Any]) -> list[str]:
    """Keys in JavaScript's own-property order: array-index keys ascending, then the rest as inserted."""
    indexes = [key for key in obj if isinstance(key, str) and _ARRAY_INDEX.fullmatch(key) and int(key) < 2**32 - 1]
    index_set = set(indexes)
    return sorted(indexes, key=int) + [key for key in obj if key not in index_set]


def js_json_stringify(value: Any) -> str:
    """JavaScript's ``JSON.stringify`` (compact; ``1.0`` → ``1``, NaN → ``null``, index keys first)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "null"
    if isinstance(value, (bool, int, float)):
        return js_string(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(js_json_stringify(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (f"{json.dumps(str(key), ensure_ascii=False)}:{js_json_stringify(value[key])}"
                 for key in js_object_keys(value))
        return "{" + ",".join(items) + "}"
    return json.dumps(str(value), ensure_ascii=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # JSON.parse rejects NaN and Infinity


def parse_json_content(content: Any, declared_type: str | None) -> Any:
    """FlowGram's ``parseJSONContent``: a string for an object/array/map type is parsed as JSON.

    The raw string is kept when it is not valid JSON; any other content is returned as is.
    """
    if declared_type in JSON_TYPES and isinstance(content, str):
        try:
            return json.loads(content, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return content
    return content


def constant_value(content: Any, declared_type: str | None, items_type: str | None = None) -> TypedValue | None:
    """A ``constant`` flow value: the declared type, no coercion, JSON strings parsed for object/array/map.

    :param items_type: the declared ``items.type``; inferred from element 0 when not given.
    :return: ``None`` when the content is ``None`` (FlowGram drops it) or there is no type at all.
    """
    value = parse_json_content(content, declared_type)
    kind = declared_type if declared_type is not None else infer_type(value)
    if value is None or not kind:
        return None
    if kind == "array" and items_type is None and isinstance(value, list) and value:
        items_type = infer_type(value[0])
    return TypedValue(value, kind, items_type if kind == "array" else None)


def lodash_get(value: Any, path: Iterable[Any]) -> tuple[bool, Any]:
    """lodash ``get(value, path)`` for JSON values: dict keys, and list (or string) indices as ints or digits.

    :return: ``(found, value)``; ``found`` is false when a step is missing (JS ``undefined``),
        while a present ``null`` gives ``(True, None)``.
    """
    current = value
    for step in path:
        if current is None:
            return False, None
        key = step if isinstance(step, str) else js_string(step)
        if isinstance(current, dict):
            current = current.get(key, _MISSING)
        elif isinstance(current, (list, str)) and key == "length":
            current = len(current)
        elif isinstance(current, (list, str)) and _ARRAY_INDEX.fullmatch(key) and int(key) < len(current):
            current = current[int(key)]
        else:
            current = _MISSING
        if current is _MISSING:
            return False, None
    return True, current


def ref_value(content: Any, lookup: Lookup) -> TypedValue | None:
    """A ``ref`` flow value ``[node_id, key, *path]``.

    A whole-variable ref is the lookup's :class:`TypedValue` (declared type). A path
    ref reads the rest with :func:`lodash_get` and infers the type; an empty
    array's items type is ``"null"``, as FlowGram's variable store reports it.

    :return: ``None`` for fewer than 2 elements, an unknown variable, or a missing path.
    """
    if not isinstance(content, (list, tuple)) or len(content) < 2:
        return None
    node_id, key, *path = content
    variable = lookup(node_id, key)
    if variable is None or not path:
        return variable
    found, value = lodash_get(variable.value, path)
    if not found:
        return None
    typed = infer_typed(value)
    if typed.type == "array" and not value:
        typed.items_type = "null"
    return typed


def _render_ref(pattern: str, lookup: Lookup) -> str:
    node_id, *rest = pattern.strip(JS_WHITESPACE).split(".")
    if not rest:
        return ""
    variable = lookup(node_id, rest[0])
    if variable is None:
        return ""
    found, value = lodash_get(variable.value, rest[1:])
    if not found or (value is None and not rest[1:]):
        return "undefined"
    return "null" if value is None else js_string(value)


def render_template(text: str, lookup: Lookup) -> str:
    """Replace every ``{{ node.key.path }}`` with the value's JavaScript ``String()``.

    An unresolvable ref becomes ``""``; a declared but missing variable (or a
    missing path inside a variable) becomes ``undefined``; a ``null`` found on a path, ``null``.
    """
    return _TEMPLATE.sub(lambda match: _render_ref(match.group(1), lookup), text)


def resolve_flow_value(flow_value: Any, declared_schema: dict[str, Any] | None, lookup: Lookup) -> TypedValue | None:
    """Resolve a FlowGram ``IFlowValue`` (``constant``, ``ref`` or ``template``) against its declared schema.

    :raises ValueError: ``Unknown flow value type: expression`` (or any other type),
        ``Invalid flow value type: undefined`` when there is no type.
    """
    if flow_value is None:
        raise ValueError("Cannot read properties of undefined (reading 'type')")
    kind = flow_value.get("type") if isinstance(flow_value, dict) else None
    if not kind:
        raise ValueError(f"Invalid flow value type: {'undefined' if kind is None else js_string(kind)}")
    content = flow_value.get("content")
    declared = declared_schema if isinstance(declared_schema, dict) else {}
    if kind == "constant":
        items = declared.get("items")
        return constant_value(content, declared.get("type"), items.get("type") if isinstance(items, dict) else None)
    if kind == "ref":
        return ref_value(content, lookup)
    if kind == "template":
        if not content:
            return None
        if not isinstance(content, str):
            raise ValueError("template.content.replace is not a function")
        return TypedValue(render_template(content, lookup), "string")
    raise ValueError(f"Unknown flow value type: {js_string(kind)}")


def _describe(flow_value: Any) -> str:
    kind = flow_value.get("type") if isinstance(flow_value, dict) else None
    if kind == "ref" and isinstance(flow_value.get("content"), list):
        return "reference to " + ".".join(js_string(part) for part in flow_value["content"])
    return f"{kind} value"


def parse_inputs(
    schema: dict[str, Any] | None, values: dict[str, Any] | None, lookup: Lookup, warn: Warn | None = None
) -> dict[str, Any]:
    """FlowGram's ``parseInputs``: resolve ``inputsValues`` against the declared ``inputs`` schema.

    Like FlowGram, a key is dropped when it is not declared, resolves to nothing,
    or its type is not :func:`is_type_equal` to the declared one. Unlike FlowGram,
    each drop is reported through ``warn`` (all three reasons), e.g.
    ``input "x": reference to start_0.foo did not resolve`` or
    ``input "x": expected number, got string``.

    :raises ValueError: from :func:`resolve_flow_value` (e.g. an ``expression`` value).
    """
    if not isinstance(schema, dict) or not isinstance(values, dict):
        return {}
    properties = schema.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    report = warn or (lambda message: None)
    inputs: dict[str, Any] = {}
    for key, flow_value in values.items():
        declared = properties.get(key)
        if not isinstance(declared, dict):
            report(f'input "{key}": not declared in the node\'s inputs, ignored')
            continue
        resolved = resolve_flow_value(flow_value, declared, lookup)
        if resolved is None:
            report(f'input "{key}": {_describe(flow_value)} did not resolve')
            continue
        if resolved.value is None:
            report(f'input "{key}": {_describe(flow_value)} has no value')
            continue
        if not is_type_equal(resolved.type, declared.get("type")):
            report(f'input "{key}": expected {js_string(declared.get("type"))}, got {resolved.type}')
            continue
        inputs[key] = resolved.value
    return inputs


def output_defaults(outputs_schema: dict[str, Any] | None) -> dict[str, Any]:
    """The ``default`` of each declared property (JSON strings parsed for object/array/map).

    Used for a node's outputs and ``globalVariable``; only an ``object`` schema with
    ``properties`` declares anything, and properties without a default are left out.
    """
    schema = outputs_schema if isinstance(outputs_schema, dict) else {}
    properties = schema.get("properties") if schema.get("type") == "object" else None
    if not isinstance(properties, dict):
        return {}
    return {key: parse_json_content(declared["default"], declared.get("type")) for key, declared in properties.items()
            if key and isinstance(declared, dict) and declared.get("default") is not None}
