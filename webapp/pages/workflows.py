"""The Workflows run page: choose a FlowGram schema, fill its inputs, validate or run it.

A schema comes from one of the shipped examples (``/workflows?example=branch``,
files in ``examples/workflows/``), from JSON pasted into the textarea, or from an
uploaded ``.json`` file. The page is stateless and needs no JavaScript: the
schema travels in the form's textarea, and ``POST /workflows`` takes
``action=load`` (show the input form generated from the start node's
``data.outputs``), ``action=validate`` (FlowGram's validation, as
``POST /api/task/validate``) or ``action=run`` (start a task and redirect to its
page ``/tasks/<taskID>``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import redirect, render_template, request
from werkzeug.wrappers import Response

from workflow import TaskCapacityError, Validation, WorkflowInputError

from ..errors import APIError
from ..guards.jsonbody import MAX_DEPTH, JSONInputError, check_value
from ..extensions import get_workflow_runtime
from . import bp
from .forms import Field, fields_from_schema, read_form

#: Where the shipped example workflows live, one ``<name>.json`` each.
EXAMPLES_DIR = Path(__file__).resolve().parent.parent.parent / "examples" / "workflows"
#: Form fields of the page itself: a start node input of the same name could not be told apart.
RESERVED_NAMES = frozenset({"action", "csrf_token", "workflow_schema", "workflow_file"})
ACTIONS = ("load", "validate", "run")


@dataclass
class Example:
    """A shipped example: its file name (without ``.json``), title and JSON text."""

    name: str
    title: str
    text: str


@dataclass
class Loaded:
    """What the page knows of the schema in its textarea."""

    text: str = ""
    schema: dict[str, Any] | None = None
    #: a parse error, naming line and column
    error: str = ""
    fields: list[Field] = field(default_factory=list)
    #: ``[(type, count)]`` in order of first appearance, loop bodies included
    node_counts: list[tuple[str, int]] = field(default_factory=list)
    title: str = ""
    #: why the inputs cannot be shown (no start node, a reserved input name)
    form_problem: str = ""
    #: the page cannot run it (a start input named like one of the page's own fields)
    blocked: bool = False

    @property
    def total_nodes(self) -> int:
        return sum(count for _, count in self.node_counts)


def list_examples() -> list[Example]:
    """The example workflows, by name."""
    examples = []
    for path in sorted(EXAMPLES_DIR.glob("*.json")):
        text = path.read_text(encoding="utf-8")
        try:
            title = _start_title(json.loads(text))
        except ValueError:
            title = ""
        examples.append(Example(path.stem, title or path.stem, text))
    return examples


def _start_node(schema: Mapping[str, Any]) -> Mapping[str, Any] | None:
    nodes = schema.get("nodes")
    if not isinstance(nodes, list):
        return None
    return next((n for n in nodes if isinstance(n, Mapping) and n.get("type") == "start"), None)


def _start_title(schema: Any) -> str:
    start = _start_node(schema) if isinstance(schema, Mapping) else None
    data = start.get("data") if start is not None else None
    title = data.get("title") if isinstance(data, Mapping) else None
    return title if isinstance(title, str) else ""


def _node_types(schema: Mapping[str, Any]) -> list[str]:
    """The type of every node in document order, each loop body right after its loop."""
    types: list[str] = []

    def visit(nodes: Any) -> None:
        for node in nodes if isinstance(nodes, list) else []:
            if isinstance(node, Mapping):
                types.append(str(node.get("type")))
                visit(node.get("blocks"))

    visit(schema.get("nodes"))
    return types


def load_schema(text: str) -> Loaded:
    """Parse ``text`` and derive the input form and the node summary."""
    loaded = Loaded(text=text)
    if not text.strip():
        loaded.error = "paste a workflow schema (JSON), upload a .json file or pick an example"
        return loaded
    try:
        schema = json.loads(text)
        check_value(schema, "The schema")  # too deep, or a lone surrogate
    except RecursionError:
        loaded.error = f"The schema is nested too deeply (more than {MAX_DEPTH} levels)"
        return loaded
    except JSONInputError as exc:
        loaded.error = str(exc)
        return loaded
    except json.JSONDecodeError as exc:
        loaded.error = f"The schema is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        return loaded
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        loaded.error = f"The schema is not valid JSON: {exc}"
        return loaded
    if not isinstance(schema, dict):
        loaded.error = ('The schema must be a JSON object {"nodes": [...], "edges": [...]}, '
                        f"got {_json_type(schema)}")
        return loaded
    loaded.schema = schema
    loaded.title = _start_title(schema)
    loaded.node_counts = list(Counter(_node_types(schema)).items())
    start = _start_node(schema)
    if start is None:
        loaded.form_problem = "This workflow has no start node, so it takes no inputs."
        return loaded
    data = start.get("data")
    loaded.fields = fields_from_schema(data.get("outputs") if isinstance(data, Mapping) else None)
    clashes = sorted(f.name for f in loaded.fields if f.name in RESERVED_NAMES)
    if clashes:
        loaded.fields, loaded.blocked = [], True
        loaded.form_problem = (f"This page cannot take a start input named {', '.join(clashes)}; "
                               "run this workflow through POST /api/task/run instead.")
    return loaded


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a number"


def validation_errors(schema: dict[str, Any], inputs: dict[str, Any]) -> Validation:
    """FlowGram's validation of the task and our warnings (node types no executor runs...): the
    runtime's one validation, as ``POST /api/task/validate`` answers it."""
    try:
        return get_workflow_runtime().validate(schema, inputs)
    except WorkflowInputError as exc:  # a value no task could hold
        return Validation([str(exc)], [])


def _render(loaded: Loaded | None, *, status: int = 200, **context: Any) -> tuple[str, int]:
    context.setdefault("values", {})
    context.setdefault("errors", {})
    return render_template("workflows.html", examples=list_examples(), loaded=loaded, **context), status


@bp.get("/workflows")
def workflows() -> tuple[str, int]:
    """The page; ``?example=<name>`` loads that example."""
    name = request.args.get("example")
    if name is None:
        return _render(None)
    example = next((e for e in list_examples() if e.name == name), None)
    if example is None:
        return _render(None, status=404, page_error=f"There is no example named {name!r}.")
    return _render(load_schema(example.text), example=example.name)


def _submitted_text() -> tuple[str, str]:
    """``(schema text, error)``: an uploaded file wins over the textarea."""
    upload = request.files.get("workflow_file")
    if upload is not None and upload.filename:
        raw = upload.read()
        try:
            return raw.decode("utf-8-sig"), ""
        except UnicodeDecodeError:
            return request.form.get("workflow_schema", ""), f"{upload.filename} is not UTF-8 text"
    return request.form.get("workflow_schema", ""), ""


@bp.post("/workflows")
def workflows_action() -> Response | tuple[str, int]:
    """``action=load|validate|run`` on the schema of the form (or its uploaded file)."""
    action = request.form.get("action", "load")
    if action not in ACTIONS:
        raise APIError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    text, upload_error = _submitted_text()
    if upload_error:
        loaded = Loaded(text=text, error=upload_error)
        return _render(loaded, status=400)
    loaded = load_schema(text)
    if loaded.schema is None:
        return _render(loaded, status=400)
    if action == "load":
        # Keep what was typed into inputs that still exist; show no errors yet.
        kept = {f.name: request.form[f.name] for f in loaded.fields if f.name in request.form}
        return _render(loaded, values=kept)
    values, field_errors = read_form(loaded.fields, request.form, request.files)
    # Show what was typed (a JSON array as the user wrote it), booleans as read.
    shown = {**values, **{f.name: request.form[f.name] for f in loaded.fields if f.name in request.form}}
    if action == "validate":
        checked = validation_errors(loaded.schema, values)
        return _render(loaded, values=shown, errors=field_errors, validated=True,
                       validation=checked.errors, warnings=checked.warnings)
    if loaded.blocked:
        return _render(loaded, status=400, run_error=loaded.form_problem)
    if field_errors:
        return _render(loaded, status=400, values=shown, errors=field_errors,
                       run_error="Some inputs need fixing (see beside each field).")
    checked = validation_errors(loaded.schema, values)
    if not checked.runnable:
        return _render(loaded, status=400, values=shown, validated=True, validation=checked.errors,
                       warnings=checked.warnings, run_error="The workflow did not pass validation, so it was not run.")
    try:
        task_id = get_workflow_runtime().run(loaded.schema, values)
    except TaskCapacityError as exc:
        return _render(loaded, status=503, values=shown, run_error=f"The server is busy: {exc}")
    except WorkflowInputError as exc:
        return _render(loaded, status=400, values=shown, run_error=str(exc))
    return redirect(f"/tasks/{task_id}", code=303)
