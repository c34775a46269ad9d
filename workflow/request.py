"""The checks of a TaskRun or TaskValidate request, made before anything is recorded.

A refused request raises :class:`WorkflowInputError` naming what is wrong (the webapp answers 400
with it), so a schema or inputs no task can hold (see :mod:`workflow.storable`) never leaves a
task row behind.
"""

from __future__ import annotations

from typing import Any

from .executor import get_node_executor
from .storable import UnstorableValue, check_storable, loads

#: Node types that need no executor of their own (the engine runs loops; comments are never reached).
ENGINE_TYPES = frozenset({"loop", "comment", "group"})


class WorkflowInputError(ValueError):
    """The TaskRun request itself is malformed (schema not JSON, inputs not an object, a value a task
    cannot hold: see :mod:`workflow.storable`); the message names what is wrong."""


def parse_schema(schema: Any) -> dict[str, Any]:
    """The schema as a dict: FlowGram sends it as a JSON string; an object is accepted too."""
    if isinstance(schema, str):
        try:
            schema = loads(schema, "schema")
        except UnstorableValue as exc:
            raise WorkflowInputError(str(exc)) from None
        except ValueError as exc:
            raise WorkflowInputError(f"schema is not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise WorkflowInputError("schema must be a JSON object (or a JSON string of one)")
    return schema


def check_request(schema: Any, inputs: Any, *, inputs_object: bool = True) -> tuple[dict[str, Any], Any]:
    """The schema and inputs of a TaskRun or TaskValidate request, checked before anything is recorded.

    :raises WorkflowInputError: naming the problem: the schema is not a JSON object (or a JSON string
        of one), the inputs are not an object, or either holds a value a task cannot hold (nested
        deeper than :data:`~workflow.storable.MAX_NESTING`, a lone surrogate, NaN, a huge integer).
    :param inputs_object: False to let TaskValidate report inputs that are not an object as FlowGram does.
    """
    schema_obj = parse_schema(schema)
    if inputs is None:
        inputs = {}
    if inputs_object and not isinstance(inputs, dict):
        raise WorkflowInputError("inputs must be a JSON object")
    try:
        check_storable(schema_obj, "schema")
        check_storable(inputs, "inputs")
    except UnstorableValue as exc:
        raise WorkflowInputError(str(exc)) from None
    return schema_obj, inputs


def node_types(schema: dict[str, Any]) -> set[str]:
    """Every node type in ``schema``, blocks of loops included."""
    types: set[str] = set()
    stack = list(schema.get("nodes") or [])
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            types.add(str(node.get("type")))
            stack.extend(node.get("blocks") or [])
    return types


def schema_title(schema: dict[str, Any]) -> str:
    """The start node's title (a task's title in lists), or ""."""
    for node in schema.get("nodes") or []:
        if isinstance(node, dict) and node.get("type") == "start":
            return str((node.get("data") or {}).get("title") or "")
    return ""


def unknown_node_types(schema: dict[str, Any]) -> list[str]:
    """The node types of ``schema`` that have no executor (sorted): running them would fail."""
    return sorted({t for t in node_types(schema) if t not in ENGINE_TYPES and get_node_executor(t) is None})
