"""The API docs page (being built)."""

from __future__ import annotations

from flask import render_template

from . import bp


@bp.get("/api/docs")
def api_docs() -> str:
    return render_template("placeholder.html", title="API docs")
