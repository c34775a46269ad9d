"""Security headers on every response: pages, JSON, event streams, static files and errors.

- ``Content-Security-Policy``: scripts, styles, images (and ``data:`` images), fetches and
  event streams from this server only; no inline script, no inline ``style`` attribute or
  ``<style>`` element, no plugins, no framing, forms post here only. The pages load their
  scripts and stylesheets from ``/static``; scripts that size things set
  ``element.style`` (CSSOM), which this policy allows.
- ``X-Content-Type-Options: nosniff``: a JSON answer or an upload echoed as text is
  never run as a script or rendered as HTML.
- ``X-Frame-Options: DENY`` (for browsers older than ``frame-ancestors``): no clickjacking.
- ``Referrer-Policy: same-origin``: task and result URLs do not leak to other sites.
- ``Cross-Origin-Opener-Policy: same-origin``: a page opened from another site cannot
  reach back through ``window.opener``.

A header a view set itself is kept (``setdefault``), so one route can loosen or tighten
its own policy.
"""

from __future__ import annotations

from flask import Flask, Response

__all__ = ["CONTENT_SECURITY_POLICY", "SECURITY_HEADERS", "init_app"]

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _add_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def init_app(app: Flask) -> None:
    """Add :data:`SECURITY_HEADERS` to every response of ``app`` (error pages and 500s included)."""
    app.after_request(_add_headers)
