"""``GET /functions`` (the manifest) and ``POST /invoke/<name>`` (run a function).

``POST /invoke/<name>`` takes ``{"inputs": {...}}`` as JSON, or a
``multipart/form-data`` (or urlencoded) form whose fields are the inputs
(``file`` parameters as uploads; other fields are converted to the declared
type; a field named ``inputs`` may hold them all as a JSON object). The inputs
are checked against the manifest first: 400 naming ``inputs.<field>``. A plain
function answers ``{"result": ...}`` (also when the client accepts
``text/event-stream``); a streaming one answers an event stream.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState

from .. import sse
from ..errors import APIError, wants_html
from ..functions import FunctionSpec, InvalidInputs, UploadedFile, get_registry, init_app, validate_inputs
from ..functions.inputs import coerce_form_value
from ..functions.invoke import call, open_stream
from ..functions.registry import InputError
from ..guards.jsonbody import JSONInputError, loads_json
from ..schemas import InvokeRequest, parse_body

bp = Blueprint("functions", __name__)


@bp.record_once
def _give_app_its_registry(state: BlueprintSetupState) -> None:
    init_app(state.app)


@bp.get("/functions")
def list_functions() -> Response | str:
    """``{"functions": [manifest entries]}``, by name; browsers (preferring HTML) get the Functions page."""
    page = current_app.extensions.get("html_pages", {}).get("functions") if wants_html() else None
    if page is not None:  # the pages blueprint renders the Functions page (see webapp.pages)
        return page()
    return jsonify({"functions": get_registry().manifest()})


@bp.get("/functions/<name>")
def describe_function(name: str) -> Response:
    """One function's manifest entry."""
    return jsonify(_find(name).manifest())


@bp.post("/invoke/<name>")
def invoke(name: str) -> Response:
    """Run a function: ``{"result": ...}``, or an event stream for a streaming function."""
    spec = _find(name)
    try:
        arguments = validate_inputs(spec, _inputs(spec))
    except InvalidInputs as exc:
        raise APIError(f"invalid inputs for {spec.name}: {exc}") from None
    if spec.streaming:
        return sse.sse_response(open_stream(spec, arguments))
    return jsonify({"result": call(spec, arguments)})


def _find(name: str) -> FunctionSpec:
    spec = get_registry().get(name)
    if spec is None:
        raise APIError(f"no function named {name!r}; see GET /functions", status=404, type="not_found")
    return spec


def _inputs(spec: FunctionSpec) -> dict[str, Any]:
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        return _form_inputs(spec)
    if request.is_json:
        return _json_inputs()
    if not request.mimetype and not request.content_length:
        return {}  # a bare POST: no inputs
    raise APIError("send JSON ({\"inputs\": {...}}) or multipart/form-data", status=415,
                   type="unsupported_media_type")


def _json_inputs() -> dict[str, Any]:
    parsed = parse_body(InvokeRequest, request.get_json(silent=True))
    assert isinstance(parsed, InvokeRequest)
    return parsed.inputs


def _form_inputs(spec: FunctionSpec) -> dict[str, Any]:
    """Inputs of a form: the JSON ``inputs`` field, then one field or upload per input."""
    inputs: dict[str, Any] = {}
    if "inputs" in request.form:
        try:
            inputs = loads_json(request.form["inputs"], "the form field 'inputs'")
        except JSONInputError as exc:
            raise APIError(str(exc), type="invalid_json") from None
        if not isinstance(inputs, dict):
            raise APIError("the form field 'inputs' must hold a JSON object")
    problems: list[str] = []
    for key in request.form:
        if key == "inputs":
            continue
        try:
            inputs[_once(key, inputs, request.form.getlist(key))] = _form_value(spec, key, request.form[key])
        except InputError as exc:
            problems.append(str(exc))
    for key in request.files:
        try:
            _once(key, inputs, request.files.getlist(key))
        except InputError as exc:
            problems.append(str(exc))
            continue
        storage = request.files[key]
        inputs[key] = UploadedFile(storage.read(), storage.filename or None, storage.mimetype or None)
    if problems:
        raise APIError(f"invalid inputs for {spec.name}: {'; '.join(problems)}")
    return inputs


def _once(key: str, inputs: dict[str, Any], values: list[Any]) -> str:
    if key in inputs or len(values) > 1:
        raise InputError(key, "given more than once")
    return key


def _form_value(spec: FunctionSpec, key: str, raw: str) -> Any:
    param = spec.parameter(key)
    return raw if param is None else coerce_form_value(param, raw)
