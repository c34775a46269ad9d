"""Requests from other sites, and requests for other host names.

Two checks before every request, ahead of authentication:

**Cross-site requests.** A POST, PUT, PATCH or DELETE that a browser sends on behalf of another
site is refused with 403 ``cross_site_request``: another page's form could otherwise run an op, a
workflow or an ``/invoke`` function (a multipart form POST needs no CORS preflight), and without API
keys nothing else stops it. The browser says where a request comes from: ``Sec-Fetch-Site`` (every
current browser) must be ``same-origin`` or ``none`` (typed in, a bookmark); without it, an ``Origin``
header must name this server's host. ``same-site`` is refused too: another port or subdomain of the
same site is another application. Requests with neither header are not from a browser (curl, the
OpenAI SDK, legacy systems) and pass. Origins in ``FLOWBRIDGE_TRUSTED_ORIGINS`` (e.g. a front end on
another domain) pass. The login form and the pages' CSRF tokens (:mod:`.auth`, :mod:`.csrf`) stay.

**Host names.** A server that listens on loopback only (``FLOWBRIDGE_BIND`` 127.x, ``localhost``,
``[::1]`` or a unix socket) answers only requests whose ``Host`` is ``localhost``, ``127.0.0.1`` or
``[::1]`` (any port) or a name in ``FLOWBRIDGE_TRUSTED_HOSTS``; others get 400 ``bad_host``. This
stops DNS rebinding: a page whose name an attacker points at 127.0.0.1 would otherwise read
``/api/tasks`` with the victim's browser. Listening on other addresses, the check applies only when
``FLOWBRIDGE_TRUSTED_HOSTS`` is set (then the loopback names pass too). Health routes are checked
like the others: probes of a loopback-bound server come from the machine itself, and a probe that
sends another Host (Kubernetes sends the pod IP) can set the header (``httpGet.httpHeaders``).
``FLOWBRIDGE_TRUSTED_HOSTS=*`` turns the check off; ``.example.com`` matches the domain and its
subdomains.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, jsonify, request

from ..config import ConfigError
from ..errors import error_response

__all__ = ["LOOPBACK_NAMES", "OriginPolicy", "init_app", "is_loopback_bind", "parse_trusted_hosts",
           "parse_trusted_origins"]

#: Host names a loopback-bound server always answers to.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: ``Sec-Fetch-Site`` values of requests this server's own pages (or the user) made.
_OWN_SITE = frozenset({"same-origin", "none"})
_EXTENSION = "flowbridge.origin"


@dataclass(frozen=True)
class OriginPolicy:
    """What the two checks accept; built once by :func:`init_app`."""

    check_host: bool
    hosts: frozenset[str]  # exact names, lower case, IPv6 in brackets
    domains: tuple[str, ...]  # ".example.com": the domain and its subdomains
    origins: frozenset[str]  # "https://app.example.com"

    def host_ok(self, host: str) -> bool:
        name = host_name(host)
        return name in self.hosts or any(name == d[1:] or name.endswith(d) for d in self.domains)


def host_name(host: str) -> str:
    """The name of a ``Host`` header without its port: ``example.com``, ``127.0.0.1``, ``[::1]``."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.rpartition(":")[0] if ":" in host else host


def is_loopback_bind(bind: str) -> bool:
    """True when every address of ``bind`` (gunicorn's ``HOST:PORT[,HOST:PORT...]``) is local only."""
    entries = [e.strip() for e in bind.split(",") if e.strip()]
    return bool(entries) and all(_loopback_entry(e) for e in entries)


def _loopback_entry(entry: str) -> bool:
    if entry.startswith(("unix:", "fd://")):
        return entry.startswith("unix:")  # a unix socket is reachable from this machine only
    name = host_name(entry) if not entry.isdigit() else ""
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # "", 0.0.0.0 and other names: reachable from elsewhere


def parse_trusted_hosts(value: str | Iterable[str] | None) -> list[str]:
    """``FLOWBRIDGE_TRUSTED_HOSTS``: names or IP addresses, without ports; ``.example.com``; ``*``.

    :raises ConfigError: naming the variable and the entry.
    """
    hosts = []
    for item in _items(value):
        bare = item[1:] if item.startswith(".") else item
        ipv6 = bare.startswith("[") and bare.endswith("]")
        if item != "*" and (not bare or any(c in bare for c in "/@ *")
                            or (":" in bare and not ipv6)):
            raise ConfigError("FLOWBRIDGE_TRUSTED_HOSTS entries are host names or IP addresses without a port "
                              f"(IPv6 in brackets), '.example.com' or '*', got {item!r}")
        hosts.append(item)
    return hosts


def parse_trusted_origins(value: str | Iterable[str] | None) -> list[str]:
    """``FLOWBRIDGE_TRUSTED_ORIGINS``: ``scheme://host[:port]`` of sites that may POST here.

    :raises ConfigError: naming the variable and the entry.
    """
    origins = []
    for item in _items(value):
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/") \
                or parts.query or parts.fragment or "@" in parts.netloc:
            raise ConfigError(f"FLOWBRIDGE_TRUSTED_ORIGINS entries are scheme://host[:port], got {item!r}")
        origins.append(f"{parts.scheme}://{parts.netloc}")
    return origins


def _items(value: str | Iterable[str] | None) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [i for i in (str(i).strip().lower() for i in items) if i]


def build_policy(config: Any) -> OriginPolicy:
    """The policy of an app's configuration (``FLOWBRIDGE_BIND`` and the two lists).

    :raises ConfigError: naming the bad variable.
    """
    trusted = parse_trusted_hosts(config.get("FLOWBRIDGE_TRUSTED_HOSTS", ""))
    origins = parse_trusted_origins(config.get("FLOWBRIDGE_TRUSTED_ORIGINS", ""))
    bind = str(config.get("FLOWBRIDGE_BIND") or "")
    check_host = "*" not in trusted and (is_loopback_bind(bind) or bool(trusted))
    return OriginPolicy(
        check_host=check_host,
        hosts=LOOPBACK_NAMES | {h for h in trusted if not h.startswith(".")},
        domains=tuple(h for h in trusted if h.startswith(".")),
        origins=frozenset(origins),
    )


def _check_request() -> Response | None:
    policy: OriginPolicy = current_app.extensions[_EXTENSION]
    host = request.headers.get("Host", "")
    if policy.check_host and not policy.host_ok(host):
        # JSON even for browsers: the HTML error page shows server details to whoever reads it.
        response = jsonify({"error": {"type": "bad_host", "message": (
            f"this server does not answer to the host name {host_name(host)[:100]!r}; it answers to "
            f"{', '.join(sorted(policy.hosts))} (add names to FLOWBRIDGE_TRUSTED_HOSTS)")}})
        response.status_code = 400
        return response
    if request.method in _SAFE_METHODS:
        return None
    refused = _cross_site(policy, host)
    if refused:
        return error_response(403, "cross_site_request", refused)
    return None


def _cross_site(policy: OriginPolicy, host: str) -> str | None:
    """Why this unsafe request is refused as cross-site, or None when it may go on."""
    origin = request.headers.get("Origin")
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if origin is not None and origin.strip().lower().rstrip("/") in policy.origins:
        return None
    if fetch_site is not None:
        if fetch_site.strip().lower() in _OWN_SITE:
            return None
        where = f"from {origin[:100]!r} " if origin else ""
        return (f"a {fetch_site[:20]} {request.method} {where}is refused: this server accepts changes only from "
                "its own pages (a site may be allowed in FLOWBRIDGE_TRUSTED_ORIGINS)")
    if origin is None:
        return None  # no browser sent this: curl, the SDKs, legacy systems
    if urlsplit(origin.strip()).netloc.lower() == host.strip().lower() and host:
        return None
    return (f"a {request.method} from {origin[:100]!r} is refused: this server accepts changes only from its own "
            "pages (a site may be allowed in FLOWBRIDGE_TRUSTED_ORIGINS)")


def init_app(app: Flask) -> None:
    """Read the settings and install both checks before every request (before authentication).

    :raises ConfigError: naming ``FLOWBRIDGE_TRUSTED_HOSTS`` or ``FLOWBRIDGE_TRUSTED_ORIGINS``.
    """
    app.extensions[_EXTENSION] = build_policy(app.config)
    app.before_request(_check_request)
