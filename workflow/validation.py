"""FlowGram's workflow validation (``WorkflowRuntimeValidation``), with its exact messages.

Pure functions, no I/O, and the schema passed in is never changed.
:func:`validate_schema` runs FlowGram's four validators (format, cycles, edge
ends, start/end nodes) and collects one error from each that fails, in that
order; each recurses into the ``blocks``/``edges`` of nested nodes (loop bodies).
:func:`validate_inputs` is FlowGram's small JSON-schema validator, which stops
at the first error. Malformed documents produce the JavaScript ``TypeError``
text FlowGram would report (``nodes.map is not a function``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .javascript import (
    JS_WHITESPACE,
    UNDEFINED,
    js_join,
    js_json_stringify,
    js_object_keys,
    js_set_key,
    js_strict_equal,
    js_string,
    js_truthy,
    js_typeof,
    workflow_type,
)

ROOT_PATH = "root"


class _JsError(Exception):
    """An error FlowGram's validators throw (or JavaScript throws inside them)."""


def _get(obj: Any, name: str) -> Any:
    """``obj.name``: ``undefined`` when absent, a ``TypeError`` on ``null``/``undefined``."""
    if obj is None or obj is UNDEFINED:
        raise _JsError(f"Cannot read properties of {js_string(obj)} (reading '{name}')")
    if isinstance(obj, dict):
        return obj.get(name, UNDEFINED)
    if isinstance(obj, (list, str)) and name == "length":
        return len(obj)
    return UNDEFINED


def _array(value: Any, expression: str, method: str) -> list[Any]:
    """``expression.method(...)`` on what should be an array."""
    if value is None or value is UNDEFINED:
        raise _JsError(f"Cannot read properties of {js_string(value)} (reading '{method}')")
    if not isinstance(value, list):
        raise _JsError(f"{expression}.{method} is not a function")
    return value


def _is_object(value: Any) -> bool:
    """``value && typeof value === 'object'`` (arrays are objects)."""
    return isinstance(value, (dict, list))


def _nested(node: Any) -> tuple[Any, Any] | None:
    """A node's sub-canvas ``(blocks, edges ?? [])``, if ``node.blocks`` is truthy."""
    blocks = _get(node, "blocks")
    if not js_truthy(blocks):
        return None
    edges = _get(node, "edges")
    return blocks, [] if edges is None or edges is UNDEFINED else edges


def _destructure(schema: Any) -> tuple[Any, Any]:
    """``const { nodes, edges } = schema``."""
    if schema is None or schema is UNDEFINED:
        raise _JsError(f"Cannot destructure property 'nodes' of 'schema' as it is {js_string(schema)}.")
    return _get(schema, "nodes"), _get(schema, "edges")


# -- the four schema validators --------------------------------------------------------------


_NON_EMPTY = (lambda v: isinstance(v, str) and bool(v.strip(JS_WHITESPACE)), "must be a non-empty string")
_OBJECT = (_is_object, "must be a valid object")
_OPTIONAL_ARRAY = (lambda v: v is UNDEFINED or isinstance(v, list), "must be an array if present")
_OPTIONAL_OBJECT = (lambda v: v is UNDEFINED or _is_object(v), "must be a valid object if present")
_OPTIONAL_STRING = (lambda v: v is UNDEFINED or isinstance(v, str), "must be a string if present")
_NODE_FIELDS = (("id", _NON_EMPTY), ("type", _NON_EMPTY), ("meta", _OBJECT), ("data", _OBJECT),
                ("blocks", _OPTIONAL_ARRAY), ("edges", _OPTIONAL_ARRAY), ("data.inputs", _OPTIONAL_OBJECT),
                ("data.outputs", _OPTIONAL_OBJECT), ("data.inputsValues", _OPTIONAL_OBJECT),
                ("data.title", _OPTIONAL_STRING))
_EDGE_FIELDS = (("sourceNodeID", _NON_EMPTY), ("targetNodeID", _NON_EMPTY),
                ("sourcePortID", _OPTIONAL_STRING), ("targetPortID", _OPTIONAL_STRING))


def _check_fields(obj: Any, path: str, fields: tuple[tuple[str, tuple[Callable[[Any], bool], str]], ...]) -> None:
    """FlowGram's ``validateNodeFormat``/``validateEdgeFormat``: the first bad field, in FlowGram's order."""
    if not _is_object(obj):
        raise _JsError(f"{path} must be a valid object")
    for name, (valid, message) in fields:
        value = obj
        for part in name.split("."):
            value = _get(value, part)
        if not valid(value):
            raise _JsError(f"{path}.{name} {message}")


def _schema_format(schema: Any) -> None:
    if not _is_object(schema):
        raise _JsError("Workflow schema must be a valid object")
    nodes, edges = _get(schema, "nodes"), _get(schema, "edges")
    if not isinstance(nodes, list):
        raise _JsError("Workflow schema must have a valid nodes array")
    if not isinstance(edges, list):
        raise _JsError("Workflow schema must have a valid edges array")
    for index, node in enumerate(nodes):
        _check_fields(node, f"nodes[{index}]", _NODE_FIELDS)
    for index, edge in enumerate(edges):
        _check_fields(edge, f"edges[{index}]", _EDGE_FIELDS)
    for node in nodes:
        nested = _nested(node)
        if nested is not None:
            _schema_format({"nodes": nested[0], "edges": nested[1] or []})


def _has_cycle(adjacency: dict[Any, list[Any]]) -> bool:
    """Depth-first search with visiting/visited colours (iterative, so deep graphs are fine)."""
    colour = dict.fromkeys(adjacency, 0)
    for root in adjacency:
        if colour[root]:
            continue
        colour[root] = 1
        stack = [(root, iter(adjacency[root]))]
        while stack:
            node, neighbours = stack[-1]
            for neighbour in neighbours:
                state = colour.get(neighbour)
                if state == 1:
                    return True
                if state == 0:
                    colour[neighbour] = 1
                    stack.append((neighbour, iter(adjacency[neighbour])))
                    break
            else:
                colour[node] = 2
                stack.pop()
    return False


def _cycle_detection(nodes: Any, edges: Any) -> None:
    nodes = _array(nodes, "nodes", "map")
    adjacency: dict[Any, list[Any]] = {js_set_key(_get(node, "id")): [] for node in nodes}
    for edge in _array(edges, "edges", "forEach"):
        targets = adjacency.get(js_set_key(_get(edge, "sourceNodeID")))
        if targets is not None:
            targets.append(js_set_key(_get(edge, "targetNodeID")))
    if _has_cycle(adjacency):
        raise _JsError("Workflow schema contains a cycle, which is not allowed")
    for node in nodes:
        nested = _nested(node)
        if nested is not None:
            _cycle_detection(*nested)


def _edge_source_target_exist(nodes: Any, edges: Any) -> None:
    nodes = _array(nodes, "nodes", "map")
    ids = {js_set_key(_get(node, "id")) for node in nodes}
    for edge in _array(edges, "edges", "forEach"):
        for end, name in (("source", "sourceNodeID"), ("target", "targetNodeID")):
            node_id = _get(edge, name)
            if js_set_key(node_id) not in ids:
                raise _JsError(f'Workflow schema edge {end} node "{js_string(node_id)}" not exist')
    for node in nodes:
        nested = _nested(node)
        if nested is not None:
            _edge_source_target_exist(*nested)


def _start_end_node(nodes: Any, *, block: bool = False) -> None:
    nodes = _array(nodes, "schema.nodes", "reduce")
    types = [_get(node, "type") for node in nodes]
    first, last = ("block-start", "block-end") if block else ("start", "end")
    starts, ends = types.count(first), types.count(last)
    messages = {  # FlowGram's wording, "an block-end" included
        f"must have a {first} node and {'a' if block else 'an'} {last} node": not starts and not ends,
        f"must have a {first} node": not starts,
        f"must have an {last} node": not ends,
        f"must have only one {first} node": starts > 1,
        f"must have only one {last} node": ends > 1,
    }
    failed = next((message for message, failure in messages.items() if failure), None)
    if failed:
        raise _JsError(f"Workflow {'block ' if block else ''}schema {failed}")
    for node in nodes:
        nested = _nested(node)
        if nested is not None:
            _start_end_node(nested[0], block=True)


_VALIDATORS: tuple[Callable[[Any], None], ...] = (
    _schema_format,
    lambda schema: _cycle_detection(*_destructure(schema)),
    lambda schema: _edge_source_target_exist(*_destructure(schema)),
    lambda schema: _start_end_node(_get(schema, "nodes")),
)


def validate_schema(schema: Any) -> list[str]:
    """Check a workflow document (parsed JSON) with FlowGram's four validators.

    :return: the errors, at most one per validator, in FlowGram's order, e.g.
        ``Workflow schema contains a cycle, which is not allowed``; empty when valid.
    """
    errors: list[str] = []
    for validator in _VALIDATORS:
        try:
            validator(schema)
        except _JsError as exc:
            errors.append(str(exc))
    return errors


# -- the JSON-schema validator for workflow inputs -------------------------------------------


def _child(path: str, name: str) -> str:
    return name if path == ROOT_PATH else f"{path}.{name}"


def _check_object(value: Any, schema: Any, path: str, kind: str) -> str | None:
    if value is None or value is UNDEFINED:
        return f"Expected {kind} at {path}, but got: {js_string(value)}"
    if not isinstance(value, dict):
        return f"Expected {kind} at {path}, but got: {'array' if isinstance(value, list) else js_typeof(value)}"
    properties = _get(schema, "properties") if kind == "object" else UNDEFINED
    required = _get(schema, "required") if kind == "object" else UNDEFINED
    if isinstance(required, (list, str)):
        for name in required:
            if js_string(name) not in value:
                return f'Missing required property "{js_string(name)}" at {path}'
    declared = js_object_keys(properties) if isinstance(properties, dict) else []
    error = _first_error((value[name], properties[name], _child(path, name)) for name in declared if name in value)
    extra = _get(schema, "additionalProperties")
    if error or not js_truthy(extra):
        return error
    defined = set(declared)
    extras = (name for name in js_object_keys(value) if name not in defined)
    return _first_error((value[name], extra, _child(path, name)) for name in extras)


def _first_error(checks: Iterable[tuple[Any, Any, str]]) -> str | None:
    """The first error of ``(value, schema, path)`` checks, checking no further."""
    return next((error for error in (_validate_value(*check) for check in checks) if error), None)


def _validate_value(value: Any, schema: Any, path: str) -> str | None:
    """FlowGram's ``validateValue``: the first error message, or ``None``."""
    if js_truthy(_get(schema, "$ref")):
        return None
    enum = _get(schema, "enum")
    if isinstance(enum, str) and enum and js_string(value) not in enum:
        raise _JsError("schema.enum.join is not a function")  # a string "enum" only has includes()
    if isinstance(enum, list) and enum:
        if not any(js_strict_equal(option, value, same_value_zero=True) for option in enum):
            options = js_join(enum, ", ")
            return f"Value at {path} must be one of: {options}, but got: {js_json_stringify(value)}"
    kind = _get(schema, "type")
    if kind in ("boolean", "string"):
        return None if js_typeof(value) == kind else f"Expected {kind} at {path}, but got: {js_typeof(value)}"
    if kind == "integer":
        integral = js_typeof(value) == "number" and workflow_type(value) == "integer"  # Number.isInteger
        return None if integral else f"Expected integer at {path}, but got: {js_json_stringify(value)}"
    if kind == "number":
        number = js_typeof(value) == "number" and value == value
        return None if number else f"Expected number at {path}, but got: {js_json_stringify(value)}"
    if kind in ("object", "map"):
        return _check_object(value, schema, path, kind)
    if kind == "array":
        if not isinstance(value, list):
            return f"Expected array at {path}, but got: {js_typeof(value)}"
        items = _get(schema, "items")
        if not js_truthy(items):
            return None
        return _first_error((item, items, f"{path}[{index}]") for index, item in enumerate(value))
    return f'Unknown type "{js_string(kind)}" at {path}'


def _validate_inputs(json_schema: Any, inputs: Any) -> list[str]:
    try:
        error = _validate_value(inputs, json_schema, ROOT_PATH)
    except _JsError as exc:
        error = f"Validation error: {exc}"
    except RecursionError:
        error = "Validation error: Maximum call stack size exceeded"
    return [f"JSON Schema validation failed: {error}"] if error else []


def validate_inputs(json_schema: dict[str, Any] | None, inputs: Any) -> list[str]:
    """Check workflow inputs against a JSON schema (the start node's ``data.outputs``), as FlowGram does.

    Types ``string``, ``integer``, ``number``, ``boolean``, ``object``, ``array`` and
    ``map``; ``required``, ``enum``, ``items``, ``properties`` and ``additionalProperties``;
    ``$ref`` is skipped, extra keys are allowed, and ``date-time`` is an unknown type.

    :param json_schema: ``None`` means the start node declares no outputs (FlowGram
        then fails with ``Cannot read properties of undefined (reading '$ref')``).
    :return: ``[]``, or one ``JSON Schema validation failed: <message>`` for the first
        error, e.g. ``Expected integer at BB, but got: "test-string"``.
    """
    return _validate_inputs(UNDEFINED if json_schema is None else json_schema, inputs)


def validate_task(schema: Any, inputs: Any) -> list[str]:
    """FlowGram's ``TaskValidate``: the schema's errors, else the inputs' errors against the start node.

    :return: the errors (empty when the task may run).
    """
    errors = validate_schema(schema)
    if errors:
        return errors
    start = next(node for node in schema["nodes"] if node.get("type") == "start")
    return _validate_inputs(_get(start["data"], "outputs"), inputs)
