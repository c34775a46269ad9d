"""The API docs page: a reference of the JSON API, from the app's URL map and its OpenAPI spec.

Every rule under ``/api``, ``/invoke``, ``/functions``, ``/v1``, ``/healthz`` and
``/readyz`` (the pages themselves excepted) is listed with its methods, its
path and the first paragraph of its view's docstring, grouped by area, and
with what ``/api/openapi.json`` says of it: the request body, the query
parameters and each response's status and schema. The spec's schemas follow.
Adding a route with a docstring documents it here (and the OpenAPI drift test
asks for its entry in :data:`webapp.openapi.OPERATIONS`).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, render_template
from werkzeug.routing import Rule

from ..openapi import build_spec, openapi_path
from . import bp

__all__ = ["Route", "api_routes"]

#: (group id, title, path prefixes), first match wins; rules matching none of them are not API routes.
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("chat", "Chat", ("/api/chat",)),
    ("openai", "OpenAI-compatible API (for OpenAI clients; base URL /v1)", ("/v1/",)),
    ("ops", "Ops & flows", ("/api/ops", "/api/flows")),
    ("tasks", "Tasks (FlowGram workflows)", ("/api/task",)),
    ("functions", "Functions", ("/functions", "/invoke")),
    ("health", "Health", ("/healthz", "/readyz")),
    ("other", "Other", ("/api/",)),
)
#: Methods every rule answers by itself.
_IMPLICIT = frozenset({"HEAD", "OPTIONS"})
#: Said for a view without a docstring, so the reference has no blank row.
_UNDOCUMENTED = "(no description yet)"


@dataclass(frozen=True)
class Route:
    """One documented route."""

    group: str
    methods: tuple[str, ...]
    path: str
    endpoint: str
    summary: str
    #: Per method, what the OpenAPI spec documents (see :func:`_documented`).
    spec: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)


def _summary(view: object) -> str:
    """The first paragraph of the view's docstring, on one line."""
    doc = inspect.getdoc(view) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def _group(rule: Rule) -> str | None:
    if rule.endpoint.startswith("pages.") or rule.endpoint == "static":
        return None
    for group, _title, prefixes in GROUPS:
        if rule.rule.startswith(prefixes):
            return group
    return None


def _method_order(method: str) -> int:
    order = ("GET", "POST", "PUT", "PATCH", "DELETE")
    return order.index(method) if method in order else len(order)


def _ref_name(schema: dict[str, Any] | None) -> str:
    ref = (schema or {}).get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref else ""


def _documented(operation: dict[str, Any]) -> dict[str, Any]:
    """Request body, query parameters and responses of one spec operation, as names for the page."""
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    responses = []
    for status, response in operation.get("responses", {}).items():
        kinds = [_ref_name(c.get("schema")) or ("event stream" if media == "text/event-stream" else media)
                 for media, c in response.get("content", {}).items()]
        responses.append((status, " or ".join(kinds), response.get("description", "")))
    query = [p["name"] for p in operation.get("parameters", ()) if p.get("in") == "query"]
    return {"request": _ref_name(body), "query": query, "responses": responses}


def api_routes(spec: dict[str, Any] | None = None) -> list[Route]:
    """The current app's API routes, in group order, then in the order they were registered.

    :param spec: the OpenAPI document whose entries are attached to the routes.
    """
    paths = (spec or {}).get("paths", {})
    routes: list[Route] = []
    for rule in current_app.url_map.iter_rules():
        group = _group(rule)
        if group is None or rule.endpoint == "api.openapi_json":  # the page links the spec itself
            continue
        methods = tuple(sorted(set(rule.methods or ()) - _IMPLICIT, key=_method_order))
        view = current_app.view_functions.get(rule.endpoint)
        summary = _summary(view) or _UNDOCUMENTED
        item = paths.get(openapi_path(rule.rule), {})
        documented = {m: _documented(item[m.lower()]) for m in methods if m.lower() in item}
        routes.append(Route(group, methods, rule.rule, rule.endpoint, summary, documented))
    # Within a group, the order the blueprints declare their routes in: list, run, report...
    rank = {group: i for i, (group, _title, _prefixes) in enumerate(GROUPS)}
    routes.sort(key=lambda r: rank[r.group])
    return routes


@bp.get("/api/docs")
def api_docs() -> str:
    """This page: the JSON API's routes, with an introduction to errors and event streams."""
    spec = build_spec(current_app._get_current_object())  # type: ignore[attr-defined]
    routes = api_routes(spec)
    groups = [(group, title, [r for r in routes if r.group == group]) for group, title, _prefixes in GROUPS]
    schemas = [(name, json.dumps(schema, indent=1)) for name, schema in spec["components"]["schemas"].items()]
    return render_template("api_docs.html", groups=[g for g in groups if g[2]], schemas=schemas)
