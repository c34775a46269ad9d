"""FlowGram's runtime values: types, flow values, templates and node inputs.

Pure functions, no I/O. They reproduce FlowGram runtime-js (``state`` and
``variable-store``): a ``constant`` takes its declared type without coercion, a
``ref`` reads a variable (and a lodash-``get`` path into it), a ``template``
renders ``{{node.key.path}}`` with JavaScript's ``String()``. The JavaScript
rules themselves (``String()``, ``JSON.stringify``, type inference) live in
:mod:`workflow.javascript`; the names re-exported here are kept for importers.

Variables come from a *lookup* ``(node_id, key) -> TypedValue | None`` owned by
the engine. A variable whose value is ``None`` is "declared but missing" (JS
``undefined``): templates render it as ``undefined``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from .javascript import (
    JS_WHITESPACE,
    UNDEFINED,
    is_type_equal,
    js_json_stringify,
    js_number_text,
    js_object_keys,
    js_string,
    workflow_type,
)

__all__ = [  # the JavaScript names are re-exported for modules and tests that import them from here
    "JSON_TYPES", "JS_WHITESPACE", "Lookup", "TypedValue", "WORKFLOW_TYPES", "Warn", "WorkflowType",
    "constant_value", "infer_type", "infer_typed", "is_type_equal", "js_json_stringify", "js_number_text",
    "js_object_keys", "js_string", "lodash_get", "output_defaults", "parse_inputs", "parse_json_content",
    "ref_value", "render_template", "resolve_flow_value",
]

WorkflowType = Literal["string", "integer", "number", "boolean", "object", "array", "map", "date-time", "null"]

#: Every type name FlowGram's runtime knows.
WORKFLOW_TYPES: tuple[str, ...] = get_args(WorkflowType)
#: Declared types whose string constants and defaults are parsed as JSON.
JSON_TYPES = frozenset({"object", "array", "map"})

Lookup = Callable[[Any, Any], "TypedValue | None"]
Warn = Callable[[str], None]

_TEMPLATE = re.compile(r"\{\{([^}]+)\}\}")
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
_MISSING = object()

#: FlowGram's ``getWorkflowType`` (``None`` is ``null``, a valid ISO-8601 string ``date-time``).
infer_type = workflow_type


@dataclass
class TypedValue:
    """A runtime value with its FlowGram type (and, for arrays, the items' type)."""

    value: Any
    type: str
    items_type: str | None = None


def infer_typed(value: Any) -> TypedValue:
    """:func:`infer_type` as a :class:`TypedValue`; an array's items type comes from element 0 (``None`` if empty)."""
    kind = infer_type(value)
    items = infer_type(value[0]) if kind == "array" and value else None
    return TypedValue(value, kind, items)


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
    return js_string(value)


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

    Keys are read in JavaScript's order (index-like keys first), as FlowGram's
    ``Object.entries`` reads them. Like FlowGram, a key is dropped when it is not
    declared, resolves to nothing, or its type is not :func:`is_type_equal` to the
    declared one. Unlike FlowGram, each drop is reported through ``warn`` (all three reasons), e.g.
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
    for key in js_object_keys(values):
        flow_value = values[key]
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
            report(f'input "{key}": expected {js_string(declared.get("type", UNDEFINED))}, got {resolved.type}')
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
