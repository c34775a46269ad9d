"""The checks of a TaskRun or TaskValidate request, made before anything is recorded.

A refused request raises :class:`WorkflowInputError` naming what is wrong (the webapp answers 400
with it), so a schema or inputs no task can hold (see :mod:`workflow.storable`) never leaves a
task row behind.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .document import normalise_schema
from .errors import WorkflowError
from .executor import get_node_executor
from .storable import UnstorableValue, check_storable, loads

#: Node types that need no executor of their own (the engine runs loops; comments are never reached).
ENGINE_TYPES = frozenset({"loop", "comment", "group"})


class WorkflowInputError(WorkflowError, ValueError):
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


class Validation(NamedTuple):
    """What :meth:`WorkflowRuntime.validate <workflow.application.WorkflowRuntime.validate>` finds."""

    #: FlowGram's TaskValidate errors (the task would fail at once)
    errors: list[str]
    #: ours: the schema was normalised, a node type has no executor
    warnings: list[str]
    #: the node types no executor runs (each has a warning): a run would fail at once
    unknown_types: list[str] = []

    @property
    def valid(self) -> bool:
        """FlowGram's ``valid``: no errors."""
        return not self.errors

    @property
    def runnable(self) -> bool:
        """Whether a run would get past its start: valid, and every node type has an executor."""
        return not self.errors and not self.unknown_types

    def as_dict(self) -> dict[str, Any]:
        """FlowGram's TaskValidate answer ``{valid, errors?}``, with ``warnings`` when there are some."""
        answer: dict[str, Any] = {"valid": self.valid}
        if self.errors:
            answer["errors"] = list(self.errors)
        if self.warnings:
            answer["warnings"] = list(self.warnings)
        return answer


class TaskRequest(NamedTuple):
    """A checked TaskRun or TaskValidate request."""

    #: the schema in FlowGram's format (see :func:`~workflow.document.normalise_schema`)
    schema: dict[str, Any]
    inputs: Any
    #: what the task's report (or the validation) should warn of: the schema was normalised
    warnings: list[str]


def check_request(schema: Any, inputs: Any, *, inputs_object: bool = True) -> TaskRequest:
    """The schema and inputs of a TaskRun or TaskValidate request, checked before anything is recorded.

    Every way in (the API functions, the HTTP routes, the pages, validation) comes through here, so a
    schema in the kernel format of ``seeds/003_*`` is read the same everywhere: normalised to
    FlowGram's, with a warning saying so.

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
    schema_obj, warnings = normalise_schema(schema_obj)
    return TaskRequest(schema_obj, inputs, warnings)


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
            data = node.get("data")
            return str(data.get("title") or "") if isinstance(data, dict) else ""
    return ""


def unknown_node_types(schema: dict[str, Any]) -> list[str]:
    """The node types of ``schema`` that have no executor (sorted): running them would fail."""
    return sorted({t for t in node_types(schema) if t not in ENGINE_TYPES and get_node_executor(t) is None})


def unknown_type_warning(node_type: str) -> str:
    """The warning for a node type no executor runs (a run of it fails at once)."""
    return f"No executor found for node type {node_type}: running it will fail"
