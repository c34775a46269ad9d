"""The browser pages: server-rendered Jinja templates, with small vanilla JavaScript where a page is live.

One blueprint, ``pages``, whose views live in one module per section (chat,
ops and flows, workflows and tasks, functions, API docs). Every form that
changes something carries a CSRF token (see :mod:`webapp.guards.csrf`); every
user or LLM string is rendered as text (Jinja autoescapes, scripts use
``textContent``).
"""

from __future__ import annotations

from flask import Blueprint
from flask.blueprints import BlueprintSetupState

from ..guards.csrf import csrf_token, protect

bp = Blueprint("pages", __name__)
bp.before_request(protect)
bp.add_app_template_global(csrf_token, "csrf_token")

# The views register themselves on ``bp``.
from . import chat, docs, functions, home, ops, tasks, workflows  # noqa: E402,F401


@bp.record_once
def _offer_html_pages(state: BlueprintSetupState) -> None:
    """Routes that also answer browsers (``GET /functions``) find their page here, not by importing us."""
    state.app.extensions.setdefault("html_pages", {})["functions"] = functions.functions_page

__all__ = ["bp"]
