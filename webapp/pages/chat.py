"""The Chat page: a multi-turn conversation streamed from ``POST /api/chat``.

The page is a shell: ``static/js/chat.js`` keeps the conversation (in
``sessionStorage``, so it survives a reload), sends the whole history with
``"stream": true`` and renders every message with ``textContent``. Nothing is
posted to this route; without JavaScript the page says that chat needs it.
"""

from __future__ import annotations

from typing import Any

from flask import render_template

from ..schemas import ChatRequest
from . import bp


def _setting(name: str) -> dict[str, Any]:
    """Default and bounds of a ``POST /api/chat`` field, for the form's number input."""
    schema = ChatRequest.model_json_schema()["properties"][name]
    setting: dict[str, Any] = {"default": schema["default"]}
    if "minimum" in schema:
        setting["min"] = schema["minimum"]
    if "maximum" in schema:
        setting["max"] = schema["maximum"]
    return setting


@bp.get("/chat")
def chat() -> str:
    return render_template("chat.html", temperature=_setting("temperature"), max_tokens=_setting("max_tokens"))
