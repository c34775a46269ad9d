"""The Workflows page (being built)."""

from __future__ import annotations

from flask import render_template

from . import bp


@bp.get("/workflows")
def workflows() -> str:
    return render_template("placeholder.html", title="Workflows")
