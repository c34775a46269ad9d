"""The API docs page: a reference of the JSON API, generated from the app's URL map.

Every rule under ``/api``, ``/invoke``, ``/functions``, ``/healthz`` and
``/readyz`` (the pages themselves excepted) is listed with its methods, its
path and the first paragraph of its view's docstring, grouped by area. Adding
a route with a docstring documents it here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from flask import current_app, render_template
from werkzeug.routing import Rule

from . import bp

__all__ = ["Route", "api_routes"]

#: (group id, title, path prefixes), first match wins; rules matching none of them are not API routes.
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("chat", "Chat", ("/api/chat",)),
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


def api_routes() -> list[Route]:
    """The current app's API routes, in group order, then in the order they were registered."""
    routes: list[Route] = []
    for rule in current_app.url_map.iter_rules():
        group = _group(rule)
        if group is None:
            continue
        methods = tuple(sorted(set(rule.methods or ()) - _IMPLICIT, key=_method_order))
        view = current_app.view_functions.get(rule.endpoint)
        summary = _summary(view) or _UNDOCUMENTED
        routes.append(Route(group, methods, rule.rule, rule.endpoint, summary))
    # Within a group, the order the blueprints declare their routes in: list, run, report...
    rank = {group: i for i, (group, _title, _prefixes) in enumerate(GROUPS)}
    routes.sort(key=lambda r: rank[r.group])
    return routes


@bp.get("/api/docs")
def api_docs() -> str:
    """This page: the JSON API's routes, with an introduction to errors and event streams."""
    routes = api_routes()
    groups = [(group, title, [r for r in routes if r.group == group]) for group, title, _prefixes in GROUPS]
    return render_template("api_docs.html", groups=[g for g in groups if g[2]])
