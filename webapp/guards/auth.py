"""API keys: optional bearer-token authentication (``FLOWBRIDGE_API_KEYS``).

With no keys configured nothing is checked. With keys, every request except
the open ones (:data:`OPEN_PATHS`, static files) must be authenticated:

- programs send ``Authorization: Bearer <key>``. The key is compared in
  constant time with every configured key (their SHA-256 digests, so neither
  which key nor its length leaks). Without a valid key an API route
  (:func:`is_api_path`: ``/api/*``, ``/invoke/*``, ``/functions``, ``/info``, ``/mcp``, ``/v1/*``)
  answers 401 JSON with ``WWW-Authenticate: Bearer`` (a browser navigating to
  one, a GET preferring HTML, is sent to the login form instead);
- browsers sign in once at ``/login``; the signed session cookie (HttpOnly,
  SameSite=Lax) then holds a fingerprint of the key (an HMAC under the app's
  secret key, never the key itself), so removing a key from the configuration
  signs its sessions out. A page asked for without it redirects to
  ``/login?next=...``. The pages' scripts call the API with that cookie; an
  unsafe method (POST, PUT...) then also needs the session's CSRF token in
  ``X-CSRF-Token``, so another site cannot ride the cookie (403 otherwise).

Deny by default: a route that is neither open nor an API route is a page and
needs the session. Keys are never logged, echoed, or put in error messages.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Flask, Response, current_app, jsonify, redirect, render_template, request, session

from ..config import ConfigError
from ..errors import APIError, wants_html

__all__ = ["OPEN_PATHS", "authenticated", "enabled", "init_app", "is_api_path", "is_open_path", "parse_keys",
           "safe_next", "signed_in"]

#: Keys shorter than this are refused at start-up.
MIN_KEY_LENGTH = 16
#: Paths anyone may request: health checks for the orchestrator, metrics for the scraper, the login form.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/login", "/logout", "/favicon.ico"})
#: Path prefixes of the JSON API (each also matches the bare path, e.g. ``/functions``).
API_PREFIXES = ("/api", "/invoke", "/functions", "/info", "/mcp", "/v1")
#: Where the session keeps the fingerprint of the key it signed in with.
SESSION_KEY = "authenticated"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_EXTENSION = "flowbridge_auth"

bp = Blueprint("auth", __name__)


@dataclass(frozen=True)
class _Keys:
    """The SHA-256 digests of the configured keys (the keys themselves are not kept)."""

    digests: tuple[bytes, ...]

    def match(self, candidate: str) -> bytes | None:
        """The digest of ``candidate`` if it is a configured key; every key is compared, no early exit."""
        sent = _digest(candidate)
        found = False
        for digest in self.digests:
            found = hmac.compare_digest(digest, sent) | found
        return sent if found else None

    def session_ok(self, secret: bytes) -> bool:
        """True when the session holds the fingerprint of a configured key."""
        held = session.get(SESSION_KEY)
        if not isinstance(held, str):
            return False
        found = False
        for digest in self.digests:
            found = hmac.compare_digest(_fingerprint(secret, digest), held) | found
        return found


def init_app(app: Flask) -> None:
    """Read ``FLOWBRIDGE_API_KEYS``, install the check before every request and the login views.

    :raises ConfigError: naming ``FLOWBRIDGE_API_KEYS`` or ``FLOWBRIDGE_SESSION_COOKIE_SECURE`` (never
        showing a key).
    """
    keys = parse_keys(app.config.get("FLOWBRIDGE_API_KEYS", ""))
    app.extensions[_EXTENSION] = _Keys(tuple(_digest(k) for k in keys)) if keys else None
    secure = _flag("FLOWBRIDGE_SESSION_COOKIE_SECURE", app.config.get("FLOWBRIDGE_SESSION_COOKIE_SECURE", ""))
    if secure is not None:
        app.config["SESSION_COOKIE_SECURE"] = secure
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.register_blueprint(bp)
    app.before_request(_authenticate)
    app.add_template_global(authenticated, "authenticated")
    app.add_template_global(signed_in, "signed_in")


def enabled(app: Flask) -> bool:
    """True when ``app`` requires API keys."""
    return app.extensions.get(_EXTENSION) is not None


def authenticated() -> bool:
    """True when this request may see the app: authentication is off, or a valid key or session came with it.

    Templates use it (``{% if authenticated() %}``) to keep server details out of pages that anyone can
    reach, such as error pages of open paths.
    """
    keys: _Keys | None = current_app.extensions.get(_EXTENSION)
    if keys is None:
        return True
    return _valid_bearer(keys) is True or keys.session_ok(_secret())


def signed_in() -> bool:
    """True when keys are configured and this browser's session is signed in (templates: a Sign out button)."""
    keys: _Keys | None = current_app.extensions.get(_EXTENSION)
    return keys is not None and keys.session_ok(_secret())


def parse_keys(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """The keys of ``FLOWBRIDGE_API_KEYS`` (comma-separated, or a list), stripped and checked.

    :raises ConfigError: a key shorter than :data:`MIN_KEY_LENGTH`, a key with a space, control or
        non-ASCII character, or a value that holds no key at all. The message gives the key's
        position, never the key.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return ()  # unset: no authentication
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    keys: list[str] = []
    for position, item in enumerate(items, 1):
        key = item.strip()
        if not key:
            continue
        if len(key) < MIN_KEY_LENGTH:
            raise ConfigError(f"FLOWBRIDGE_API_KEYS: key {position} is shorter than {MIN_KEY_LENGTH} characters")
        if not all(33 <= ord(c) <= 126 for c in key):
            raise ConfigError(f"FLOWBRIDGE_API_KEYS: key {position} holds a space, control or non-ASCII "
                              "character; keys are printable ASCII")
        if key not in keys:
            keys.append(key)
    if items and not keys:
        raise ConfigError("FLOWBRIDGE_API_KEYS is set but holds no key; unset it to turn authentication off")
    return tuple(keys)


def is_api_path(path: str) -> bool:
    """True for the JSON API: ``/api/*``, ``/invoke/*``, ``/functions`` (manifest and page), ``/info``, ``/mcp``,
    ``/v1/*`` (the OpenAI API)."""
    return any(path == p or path.startswith(p + "/") for p in API_PREFIXES)


def is_open_path(path: str, static_url_path: str | None = "/static") -> bool:
    """True for paths that never need a key: :data:`OPEN_PATHS` and static files."""
    return path in OPEN_PATHS or bool(static_url_path and path.startswith(static_url_path.rstrip("/") + "/"))


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else ``"/"``: the login form never redirects elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(c) < 32 or ord(c) == 127 for c in target):  # browsers drop tabs and newlines: "/\t/evil"
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return "/"
    return target


# -- the check before every request ------------------------------------------------------------------


def _authenticate() -> Response | None:
    keys: _Keys | None = current_app.extensions.get(_EXTENSION)
    path = request.path
    if keys is None or is_open_path(path, current_app.static_url_path):
        return None
    bearer = _valid_bearer(keys)
    if bearer is True:
        return None
    if bearer is False:
        return _unauthorized("the API key is not valid", invalid=True)
    api = is_api_path(path)
    if keys.session_ok(_secret()):
        if api and request.method not in _SAFE_METHODS and not _csrf_header_ok():
            return _json_error(403, "csrf_failed",
                               "a request signed in by the session cookie needs the page's X-CSRF-Token header; "
                               "programs send Authorization: Bearer <key>")
        return None
    if api and not _page_request():
        return _unauthorized("this route needs an API key: send Authorization: Bearer <key>")
    return _to_login()


def _valid_bearer(keys: _Keys) -> bool | None:
    """``None`` without an ``Authorization`` header, else whether it is ``Bearer <a configured key>``."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return scheme.lower() == "bearer" and keys.match(token.strip()) is not None


def _page_request() -> bool:
    """A browser navigating (GET preferring HTML), e.g. to the pages served under API paths
    (``/functions``, ``/api/docs``): it is sent to the login form rather than shown JSON."""
    return request.method in ("GET", "HEAD") and wants_html()


def _csrf_header_ok() -> bool:
    expected = session.get("csrf_token")
    sent = request.headers.get("X-CSRF-Token", "")
    return isinstance(expected, str) and bool(expected) and hmac.compare_digest(
        expected.encode(), sent.encode("utf-8", "surrogateescape"))


def _to_login() -> Response:
    if request.method in ("GET", "HEAD"):
        target = safe_next(request.full_path.rstrip("?"))
        query = "" if target == "/" else "?" + urlencode({"next": target})
        return redirect("/login" + query, 302)
    return redirect("/login", 303)  # a form posted after the session ended: sign in, then start again


def _unauthorized(message: str, *, invalid: bool = False) -> Response:
    challenge = 'Bearer realm="flowbridge"' + (', error="invalid_token"' if invalid else "")
    return _json_error(401, "unauthorized", message, {"WWW-Authenticate": challenge})


def _json_error(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"error": {"type": type_, "message": message}})
    response.status_code = status
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response


# -- the login form ----------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int]:
    """The sign-in form: one field, the API key; on success back to ``next`` (a path on this site)."""
    keys: _Keys | None = current_app.extensions.get(_EXTENSION)
    target = safe_next(request.values.get("next"))
    if keys is None:
        return redirect(target)  # authentication is off
    error = None
    if request.method == "POST":
        from .csrf import csrf_token, protect

        try:
            protect()
        except APIError:
            error = "The form was out of date. Enter the key again."
        else:
            digest = keys.match(request.form.get("key", "").strip())
            if digest is not None:
                session.clear()  # a fresh session (and CSRF token) for the signed-in browser
                session[SESSION_KEY] = _fingerprint(_secret(), digest)
                csrf_token()
                return redirect(target, 303)
            error = "That key is not valid."
    html = render_template("login.html", next=target, error=error)
    return html, 401 if error else 200


@bp.post("/logout")
def logout() -> Response:
    """Forget the session's sign-in (CSRF-protected), then show the sign-in form."""
    keys: _Keys | None = current_app.extensions.get(_EXTENSION)
    if keys is not None and keys.session_ok(_secret()):
        from .csrf import protect

        protect()  # a signed-in browser: another site must not sign it out
    session.clear()
    return redirect("/login", 303)


# -- helpers -----------------------------------------------------------------------------------------


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def _fingerprint(secret: bytes, digest: bytes) -> str:
    return hmac.new(secret, b"flowbridge-session:" + digest, hashlib.sha256).hexdigest()


def _secret() -> bytes:
    secret: Any = current_app.secret_key
    return secret if isinstance(secret, bytes) else str(secret).encode()


def _flag(name: str, value: Any) -> bool | None:
    """A yes/no setting; ``None`` when unset."""
    if isinstance(value, bool):
        return value
    text = str(value or "").strip().lower()
    if not text:
        return None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")
