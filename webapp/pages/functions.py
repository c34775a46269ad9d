"""The Functions page: served at ``GET /functions`` to browsers (being built).

``GET /functions`` belongs to the JSON API (``webapp/routes/functions.py``); a
client that prefers ``text/html`` gets this page instead.
"""

from __future__ import annotations

from flask import render_template


def functions_page() -> str:
    return render_template("placeholder.html", title="Functions")
