"""Health checks: ``/healthz`` (the process is alive) and ``/readyz`` (each configured dependency answers).

``/readyz`` runs every readiness check registered on the app, all at once, each bounded by
``READY_TIMEOUT``, and reports each one: ``{"ok", "required", "latency_ms"}`` and, when it failed,
``"error"``. It answers 200 (``"status": "ready"``, or ``"degraded"`` when only optional dependencies
are down) or 503 with ``Retry-After`` when a required one is down (the error body carries the same
``"checks"``). Registered here: ``model_server`` (required) and, when ``LLM_CACHE`` is set,
``llm_cache`` (optional: chats go on uncached without it). Other subsystems register theirs with
:func:`add_readiness_check` when they are configured::

    add_readiness_check(app, "database", lambda timeout: store.ping(timeout))

A check takes the timeout in seconds, returns when the dependency answers, and raises (any
exception; its message is shown, with any URL password hidden) when it does not.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from flask.blueprints import BlueprintSetupState

from ..errors import error_response, wants_html
from ..extensions import describe_upstream, get_llm_client

bp = Blueprint("health", __name__)

#: Where an app keeps its checks (``app.extensions``).
_EXTENSION = "flowbridge_readiness"
#: The longest error message shown for one check.
MAX_ERROR = 300
_PASSWORD_IN_URL = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*):[^@\s]*@", re.IGNORECASE)


@dataclass(frozen=True)
class ReadinessCheck:
    """One dependency of ``/readyz``: ``check(timeout)`` returns when it answers, raises when not."""

    name: str
    check: Callable[[float], Any]
    #: Down makes ``/readyz`` answer 503 (else the app works without it, and says "degraded").
    required: bool = True


def add_readiness_check(app: Flask, name: str, check: Callable[[float], Any], *, required: bool = True) -> None:
    """Report ``name`` in ``app``'s ``/readyz`` (replacing a check of that name).

    Register a check only for what is configured (e.g. the broker when ``FLOWBRIDGE_BROKER_URL`` is
    set). The check runs on a thread of its own at each ``/readyz``; it must honour its timeout and
    must not create costly resources (use the ones the app already made for this process).
    """
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"a readiness check name is lowercase letters, digits and _, got {name!r}")
    app.extensions.setdefault(_EXTENSION, {})[name] = ReadinessCheck(name, check, required)


def readiness_checks(app: Flask) -> dict[str, ReadinessCheck]:
    """The checks registered on ``app``, in registration order."""
    return dict(app.extensions.get(_EXTENSION, {}))


@bp.record_once
def _register_builtin_checks(state: BlueprintSetupState) -> None:
    app = state.app

    def model_server(timeout: float) -> None:
        if not get_llm_client(app).ping(timeout=timeout):
            raise ConnectionError(f"the LLM server at {describe_upstream(app)['base_url']} does not answer")

    add_readiness_check(app, "model_server", model_server)
    if app.config["LLM_ENV"].get("LLM_CACHE", "").strip().lower() not in ("", "off", "none", "false", "0"):
        # optional: a chat whose cache is down goes to the upstream uncached
        add_readiness_check(app, "llm_cache", lambda timeout: get_llm_client(app).ping_cache(), required=False)


@bp.get("/healthz")
def healthz() -> Response:
    """Always cheap: never touches the LLM pool or the upstream."""
    return jsonify({"status": "ok", "pid": os.getpid()})


@bp.get("/readyz")
def readyz() -> Response:
    """200 when every required dependency answers, else 503; each dependency's result either way."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    checks = readiness_checks(app)
    results = run_checks(checks, float(app.config["READY_TIMEOUT"]))
    down = [name for name, result in results.items() if not result["ok"] and checks[name].required]
    if not down:
        degraded = any(not result["ok"] for result in results.values())
        return jsonify({"status": "degraded" if degraded else "ready", **describe_upstream(app), "checks": results})
    kind = "upstream_unavailable" if "model_server" in down else "dependency_unavailable"
    message = "; ".join(results[name]["error"] if name == "model_server" else f"{name}: {results[name]['error']}"
                        for name in down)
    if wants_html():
        return error_response(503, kind, message, {"Retry-After": "5"})
    response = jsonify({"error": {"type": kind, "message": message}, "status": "unavailable", "checks": results})
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return response


def run_checks(checks: dict[str, ReadinessCheck], timeout: float) -> dict[str, dict[str, Any]]:
    """Run ``checks`` at once (a thread each), waiting at most ``timeout`` (+1 s) for all of them."""
    if not checks:
        return {}
    if len(checks) == 1:
        (check,) = checks.values()
        return {check.name: _run_one(check, timeout)}
    pool = ThreadPoolExecutor(len(checks), thread_name_prefix="readyz")
    try:
        futures: dict[str, Future[dict[str, Any]]] = {
            name: pool.submit(_run_one, check, timeout) for name, check in checks.items()}
        wait_futures(futures.values(), timeout + 1)
    finally:
        pool.shutdown(wait=False)  # a check that ignores its timeout finishes on its own, reported as late
    results = {}
    for name, future in futures.items():
        if future.done():
            results[name] = future.result()
        else:
            results[name] = {"ok": False, "required": checks[name].required,
                             "latency_ms": round((timeout + 1) * 1000, 1),
                             "error": f"no answer within {timeout:g} s"}
    return results


def _run_one(check: ReadinessCheck, timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    error = None
    try:
        check.check(timeout)
    except Exception as exc:  # noqa: BLE001 - any failure is the dependency's state, shown to the operator
        error = _describe(exc)
    result: dict[str, Any] = {"ok": error is None, "required": check.required,
                              "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    if error is not None:
        result["error"] = error
    return result


def _describe(exc: BaseException) -> str:
    """The exception as one short line, with the password of any URL in it hidden."""
    text = str(exc).strip() or type(exc).__name__
    text = _PASSWORD_IN_URL.sub(r"\1:***@", " ".join(text.split()))
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"
