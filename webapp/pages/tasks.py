"""The Tasks page (being built)."""

from __future__ import annotations

from flask import render_template

from . import bp


@bp.get("/tasks")
def tasks() -> str:
    return render_template("placeholder.html", title="Tasks")
