"""The Chat page (being built)."""

from __future__ import annotations

from flask import render_template

from . import bp


@bp.get("/chat")
def chat() -> str:
    return render_template("placeholder.html", title="Chat")
