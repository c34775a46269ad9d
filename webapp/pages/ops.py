"""The Ops & flows page (being built)."""

from __future__ import annotations

from flask import render_template

from . import bp


@bp.get("/ops")
def ops() -> str:
    return render_template("placeholder.html", title="Ops & flows")
