"""The Ops & flows pages: a list, a form per op and flow, and a permanent page per result.

``GET /ops`` lists the registered ops and the flows of ``FLOWBRIDGE_FLOWS``.
``GET /ops/<name>`` and ``GET /flows/<name>`` show a form generated from the
input schema (an op that is not a tool op takes its inputs as one JSON object).
Posting the form runs the op or flow on the server, stores the result and
redirects (303) to ``/results/<id>``: a page that renders without JavaScript
and can be shared, reloaded and opened by any worker (Post/Redirect/Get). Bad
input re-renders the form with the errors beside the fields (400); an op that
fails (a ``ValueError`` or an upstream error) is reported on the form page too.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from flask import redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from async_utils import AsyncHelper
from llm_client import LLMError
from ops import BaseAsyncToolOp, C, FlowContext
from ops.compose import run_op
from ops.runs import op_result

from ..errors import APIError, classify
from ..extensions import get_result_store
from ..routes.ops import describe_op
from . import bp
from .forms import Field, fields_from_schema, read_form

#: Context fields that inputs may not overwrite (as the JSON API refuses them).
_RESERVED_INPUTS = frozenset({"flow_id", "response", "stream_queue", "stream"})
#: The one field of an op without an input schema.
_JSON_INPUTS = Field(name="inputs", type="object",
                     description="the op's inputs as a JSON object, e.g. {\"text\": \"hi\"}")


@dataclass
class _Target:
    """An op or a flow, as the pages show and run it."""

    kind: str  # "op" or "flow"
    name: str
    description: str
    #: The JSON schema of the inputs; None when the op declares none.
    schema: dict[str, Any] | None
    stream: bool
    #: ``inputs -> problems`` (the tool schema's ``validate_inputs``).
    validate: Callable[[dict[str, Any]], list[str]]
    #: ``inputs -> {"answer", "outputs", "success", "metadata"}``.
    run: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

    @property
    def fields(self) -> list[Field]:
        return [_JSON_INPUTS] if self.schema is None else fields_from_schema(self.schema)

    @property
    def form_url(self) -> str:
        return url_for("pages.ops_op" if self.kind == "op" else "pages.ops_flow", name=self.name)

    @property
    def api_path(self) -> str:
        return f"/api/{self.kind}s/{self.name}"


def _op_target(name: str) -> _Target:
    try:
        cls = C.get_op_class(name)
    except KeyError:
        raise APIError(f"no op named {name!r}", status=404, type="not_found") from None
    info = describe_op(name, cls)
    sample = cls()
    tool = isinstance(sample, BaseAsyncToolOp)

    async def run(inputs: dict[str, Any]) -> dict[str, Any]:
        op = cls()
        context = FlowContext(**inputs)
        await run_op(op, context)
        return op_result(op, context)

    return _Target(
        kind="op", name=info["name"], description=info["description"],
        schema=sample.tool_call.input_json_schema() if tool else None, stream=False,
        validate=sample.tool_call.validate_inputs if tool else lambda inputs: [], run=run,
    )


def _flow_target(name: str) -> _Target:
    flow = C.flows.get(name)
    if flow is None:
        raise APIError(f"no flow named {name!r}", status=404, type="not_found")
    tool_call = flow.tool_call

    async def run(inputs: dict[str, Any]) -> dict[str, Any]:
        # a stream flow has no queue here, so it simply runs to completion
        response = await flow.run(FlowContext(**inputs))
        return {**response.model_dump(), "outputs": {}}

    return _Target(kind="flow", name=name, description=flow.description, schema=tool_call.input_json_schema(),
                   stream=flow.stream, validate=tool_call.validate_inputs, run=run)


@bp.get("/ops")
def ops() -> str:
    """Every registered op and every flow, each linking to its form."""
    op_list = [describe_op(name, cls) for name, cls in sorted(C.ops.items())]
    op_list.sort(key=lambda item: item["name"])
    flows = [{"name": name, "description": flow.description, "stream": flow.stream}
             for name, flow in sorted(C.flows.items())]
    return render_template("ops.html", ops=op_list, flows=flows)


@bp.get("/ops/<name>")
def ops_op(name: str) -> str:
    return _form(_op_target(name))


@bp.get("/flows/<name>")
def ops_flow(name: str) -> str:
    return _form(_flow_target(name))


@bp.post("/ops/<name>")
def ops_op_run(name: str) -> Response | tuple[str, int]:
    return _submit(_op_target(name))


@bp.post("/flows/<name>")
def ops_flow_run(name: str) -> Response | tuple[str, int]:
    return _submit(_flow_target(name))


@bp.get("/results/<result_id>")
def ops_result(result_id: str) -> str:
    """The permanent page of one result; works without JavaScript."""
    result = get_result_store().get(result_id)
    if result is None:
        raise APIError(f"no result {result_id!r}: the link is wrong, or the result was deleted to make room",
                       status=404, type="not_found")
    endpoint = "pages.ops_op" if result.kind == "op" else "pages.ops_flow"
    return render_template(
        "result.html", result=result,
        form_url=url_for(endpoint, name=result.name),
        again_url=url_for(endpoint, name=result.name, **{"from": result.id}),
        created=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(result.created_at)),
        created_iso=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(result.created_at)),
        pretty=_pretty,
    )


def _form(target: _Target, values: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
          problem: str = "", status: int = 200) -> Any:
    notice = ""
    if values is None:
        values = {}
        source = request.args.get("from")
        if source:
            previous = get_result_store().get(source)
            if previous is not None and (previous.kind, previous.name) == (target.kind, target.name):
                values = {"inputs": previous.inputs} if target.schema is None else dict(previous.inputs)
                notice = "The form holds the inputs of an earlier run."
            else:
                notice = "The earlier result was not found; the form is empty."
    page = render_template("op.html", target=target, fields=target.fields, values=values, errors=errors or {},
                           problem=problem, notice=notice)
    return page if status == 200 else (page, status)


def _submit(target: _Target) -> Response | tuple[str, int]:
    """Read the form, run the target, store the result and redirect to it (303)."""
    fields = target.fields
    values, errors = read_form(fields, request.form, request.files)
    if errors:
        return _form(target, _submitted(fields), errors, "Some inputs need fixing.", 400)
    inputs = values.get("inputs", {}) if target.schema is None else values
    errors, problems = _field_problems(fields, [*target.validate(inputs), *_reserved(inputs)])
    if errors or problems:
        return _form(target, _submitted(fields), errors, "; ".join(problems) or "Some inputs need fixing.", 400)
    started = time.monotonic()
    try:
        summary = AsyncHelper.run_async_in_sync(target.run(inputs))
    except (LLMError, asyncio.TimeoutError) as exc:
        status, _, message = classify(exc)
        return _form(target, _submitted(fields), {}, f"The {target.kind} failed: {message}", status)
    except ValueError as exc:  # input the op cannot work with, as the JSON API's 422
        return _form(target, _submitted(fields), {}, f"The {target.kind} failed: {exc}", 422)
    result_id = get_result_store().save(
        target.kind, target.name, inputs, summary.get("answer", ""), summary.get("outputs") or {},
        bool(summary.get("success", True)), summary.get("metadata") or {}, duration=time.monotonic() - started)
    return redirect(url_for("pages.ops_result", result_id=result_id), 303)


def _submitted(fields: list[Field]) -> dict[str, Any]:
    """What the user typed, as typed (checkboxes as booleans), to show the form again."""
    values: dict[str, Any] = {}
    for f in fields:
        if f.type == "boolean":
            values[f.name] = request.form.get(f.name) in ("on", "true", "1")
        elif f.type != "file":
            values[f.name] = request.form.get(f.name, "")
    return values


def _reserved(inputs: dict[str, Any]) -> list[str]:
    reserved = sorted(_RESERVED_INPUTS & set(inputs))
    return [f"{', '.join(map(repr, reserved))} cannot be used as input names"] if reserved else []


def _field_problems(fields: list[Field], problems: list[str]) -> tuple[dict[str, str], list[str]]:
    """Problems of ``validate_inputs`` by field (they start with ``'name'`` or ``'name[i]'``), and the rest."""
    errors: dict[str, str] = {}
    rest: list[str] = []
    for problem in problems:
        owner = next((f.name for f in fields if problem.startswith((f"'{f.name}'", f"'{f.name}["))), None)
        if owner is None:
            rest.append(problem)
        else:
            errors[owner] = f"{errors[owner]}; {problem}" if owner in errors else problem
    return errors, rest


def _pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)
