"""Cross-site request forgery protection for the pages' forms.

A random token lives in the signed session cookie (HttpOnly, SameSite=Lax) and
in every form (``{{ csrf_token() }}`` in a hidden ``csrf_token`` field) or, for
scripts, in the ``X-CSRF-Token`` header (the pages expose it in
``<meta name="csrf-token">``). A POST to a page whose token does not match the
session's is refused with 400 before the view runs.
"""

from __future__ import annotations

import hmac
import secrets

from flask import request, session

from ..errors import APIError

__all__ = ["csrf_token", "protect"]

_KEY = "csrf_token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token() -> str:
    """This session's token, created on first use."""
    token = session.get(_KEY)
    if not isinstance(token, str) or not token:
        token = session[_KEY] = secrets.token_urlsafe(32)
    return token


def protect() -> None:
    """``before_request`` of the pages: refuse unsafe methods without the session's token."""
    if request.method in _SAFE_METHODS:
        return
    expected = session.get(_KEY)
    sent = request.headers.get("X-CSRF-Token") or request.form.get(_KEY, "")
    if not isinstance(expected, str) or not expected or not sent.isascii() \
            or not hmac.compare_digest(expected, sent):
        raise APIError("the form is out of date or came from another site: reload the page and try again",
                       status=400, type="csrf_failed")
