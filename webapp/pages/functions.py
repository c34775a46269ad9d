"""The Functions page: the manifest of invokable functions, a form per function.

``GET /functions`` belongs to the JSON API (``webapp/routes/functions.py``); a
client that prefers ``text/html`` gets this page instead, so there is no route
here. The forms are generated from each function's manifest ``parameters``;
``static/js/functions.js`` submits them to ``POST /invoke/<name>`` and shows
the result, or the live events of a streaming function. Without JavaScript a
form still posts to ``/invoke/<name>`` (multipart) and the browser shows the
API's answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import render_template

from ..functions import get_registry
from .forms import Field, fields_from_manifest

__all__ = ["functions_page"]


@dataclass
class FunctionCard:
    """What the page shows for one function."""

    name: str
    description: str
    streaming: bool
    fields: list[Field]
    #: ``{parameter: type}``, so the script sends each input in its JSON type
    types: dict[str, str]
    returns: str

    @property
    def has_file(self) -> bool:
        return any(f.type == "file" for f in self.fields)


def _card(entry: dict[str, Any]) -> FunctionCard:
    fields = fields_from_manifest(entry.get("parameters") or [])
    returns = entry.get("returns") or {}
    return FunctionCard(
        name=entry["name"],
        description=entry.get("description") or "",
        streaming=bool(entry.get("streaming")),
        fields=fields,
        types={f.name: f.type for f in fields},
        returns=str(returns.get("description") or "") if isinstance(returns, dict) else "",
    )


def functions_page() -> str:
    """Every function of the current app's registry, by name, as a card with its form."""
    return render_template("functions.html", functions=[_card(e) for e in get_registry().manifest()])
