"""Configuration of the web app: defaults, then the environment, then the caller's mapping.

Read once, by :func:`webapp.create_app`. A bad value is a start-up error that
names the variable.
"""

from __future__ import annotations

import math
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workflow import ENV_DEFAULTS, LLM_PREFIXES, WorkflowConfigError, read_environment


DEFAULTS: dict[str, Any] = {
    # Request threads of one worker (gunicorn.conf.py exports its --threads here),
    # used to size the LLM pool when LLM_ASYNC_WORKERS is not set.
    "FLOWBRIDGE_REQUEST_THREADS": 1,
    # JSON bodies larger than this get 413.
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    # Seconds a request may take before a blocking endpoint answers 504 (event streams are exempt).
    "FLOWBRIDGE_REQUEST_TIMEOUT": 60.0,
    # Capacity of a worker (webapp.guards.capacity): request threads kept free for health and status
    # checks, requests that may wait for a work slot and for how many seconds at most; the rest of the
    # threads are work slots. gunicorn.conf.py sets the first two from GUNICORN_THREADS; 0 and 0: no guard.
    "FLOWBRIDGE_RESERVED_THREADS": 0,
    "FLOWBRIDGE_QUEUE_DEPTH": 0,
    "FLOWBRIDGE_QUEUE_WAIT": 10.0,
    # Seconds a client may take to send a request's headers, and then its body (webapp.server.worker;
    # gunicorn only): a slower one gets 408 and the connection is closed.
    "FLOWBRIDGE_HEADER_TIMEOUT": 10.0,
    "FLOWBRIDGE_BODY_TIMEOUT": 30.0,
    # Requests of a worker that may be computing at once, and seconds a request keeps its turn before it
    # reports a wait (webapp.guards.gate; gunicorn only). 0 slots: no gate.
    "FLOWBRIDGE_START_SLOTS": 2,
    "FLOWBRIDGE_START_LEASE": 0.05,
    # Seconds /readyz waits for the upstream before calling it unreachable.
    "READY_TIMEOUT": 2.0,
    # Ops: prompt language, op cache ("memory" or "sqlite:/path.db"), flows YAML file.
    "FLOWBRIDGE_LANGUAGE": "",
    "FLOWBRIDGE_OP_CACHE": "memory",
    "FLOWBRIDGE_FLOWS": "",
    # The OpenAI API (/v1): the folder whose *.json workflows are models workflow/<name> (relative to the
    # project), and upstream model names accepted besides LLM_MODEL (comma-separated), sent on as they are.
    "FLOWBRIDGE_WORKFLOWS_DIR": "examples/workflows",
    "FLOWBRIDGE_OPENAI_MODELS": "",
    # Workflows: task store (SQLite file; "memory" for one process; empty: instance/tasks.db), hosts
    # llm/http nodes may reach besides the LLM server, per-task deadline, loop bound, tasks running per
    # process, how long and how many finished tasks are kept. Defined and parsed by workflow.environment,
    # which a plain script's default runtime reads too.
    **ENV_DEFAULTS,
    # Seconds of silence after which an event stream sends a comment line, so proxies keep it open.
    "FLOWBRIDGE_SSE_HEARTBEAT": 15.0,
    # Workflow tasks on Celery workers (webapp/server/task_queue.py): the Redis broker (empty: tasks run in
    # the app server's processes), how many tasks may wait for a worker before /api/task/run answers 503,
    # and seconds a message delivered to a worker that died before starting its task waits for another.
    "FLOWBRIDGE_BROKER_URL": "",
    "FLOWBRIDGE_MAX_QUEUED_TASKS": 10000,
    "FLOWBRIDGE_BROKER_VISIBILITY_TIMEOUT": 300.0,
    # Seconds without a heartbeat after which a running task is failed as abandoned (its process died);
    # every app server and worker must use the same value.
    "FLOWBRIDGE_ORPHAN_AFTER": 30.0,
    # The instance folder (the default task DB, LLM cache file and secret key live there). Empty: instance/
    # beside the package. Two app servers started from one checkout give each its own.
    "FLOWBRIDGE_INSTANCE_DIR": "",
    # Signs the browser session (CSRF tokens). Empty: a random key kept in the instance folder,
    # shared by every worker on the machine.
    "FLOWBRIDGE_SECRET_KEY": "",
    # The session cookie: HttpOnly always; SameSite=Lax so other sites' forms do not carry it.
    "SESSION_COOKIE_SAMESITE": "Lax",
    # Logs (webapp/observability.py): "text" (human-readable) or "json" (one object per line),
    # and the root level. Checked by observability.init_app.
    "LOG_FORMAT": "text",
    "LOG_LEVEL": "INFO",
    # API keys (webapp/auth.py): comma-separated bearer tokens, each >= 16 printable ASCII characters;
    # empty: no authentication. Checked by auth.init_app; never logged.
    "FLOWBRIDGE_API_KEYS": "",
    # true: the session cookie is sent over HTTPS only (set it behind a TLS proxy); empty: Flask's default.
    "FLOWBRIDGE_SESSION_COOKIE_SECURE": "",
    # Where the server listens (gunicorn.conf.py's bind; gunicorn's on_starting exports the real one).
    # Bound to loopback only, the app answers only Host names localhost, 127.0.0.1, [::1] and
    # FLOWBRIDGE_TRUSTED_HOSTS (comma-separated names, ".example.com", or "*" for any). Unsafe
    # requests a browser sends from another site are refused unless their origin is one of
    # FLOWBRIDGE_TRUSTED_ORIGINS (comma-separated scheme://host[:port]). Checked by guards.origin.init_app.
    "FLOWBRIDGE_BIND": "127.0.0.1:8000",
    "FLOWBRIDGE_TRUSTED_HOSTS": "",
    "FLOWBRIDGE_TRUSTED_ORIGINS": "",
}

_INTS = ("FLOWBRIDGE_REQUEST_THREADS", "MAX_CONTENT_LENGTH", "FLOWBRIDGE_MAX_QUEUED_TASKS")
_FLOATS = ("READY_TIMEOUT", "FLOWBRIDGE_REQUEST_TIMEOUT", "FLOWBRIDGE_SSE_HEARTBEAT", "FLOWBRIDGE_HEADER_TIMEOUT",
           "FLOWBRIDGE_BODY_TIMEOUT", "FLOWBRIDGE_BROKER_VISIBILITY_TIMEOUT", "FLOWBRIDGE_ORPHAN_AFTER",
           "FLOWBRIDGE_START_LEASE")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the variable."""


def load_config(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Merge defaults, the environment and ``overrides`` into one validated dict.

    ``LLM_*`` and ``OPENAI_*`` entries are collected under ``"LLM_ENV"`` as the
    environment of the app's :class:`~llm_client.LLMClient`.
    """
    environ = os.environ if environ is None else environ
    config: dict[str, Any] = dict(DEFAULTS)
    for key in DEFAULTS:
        if environ.get(key, "") != "":
            config[key] = environ[key]
    llm_env = {k: v for k, v in environ.items() if k.startswith(LLM_PREFIXES)}
    for key, value in (overrides or {}).items():
        if key.startswith(LLM_PREFIXES):
            llm_env[key] = str(value)
        else:
            config[key] = value
    for key in _INTS:
        config[key] = _number(key, config[key], int, minimum=1)
    for key in _FLOATS:
        config[key] = _number(key, config[key], float, minimum=0.001)
    config["FLOWBRIDGE_START_SLOTS"] = _number("FLOWBRIDGE_START_SLOTS", config["FLOWBRIDGE_START_SLOTS"], int, minimum=0)
    config["LLM_ENV"] = llm_env
    broker = str(config["FLOWBRIDGE_BROKER_URL"]).strip()
    if broker and not broker.startswith(("redis://", "rediss://")):
        raise ConfigError(f"FLOWBRIDGE_BROKER_URL must be a redis:// or rediss:// URL, got {broker.split('@')[-1]!r}")
    config["FLOWBRIDGE_BROKER_URL"] = broker
    try:
        config.update(read_environment(config))  # the workflow runtime's variables, as a script reads them
    except WorkflowConfigError as exc:
        raise ConfigError(str(exc)) from None
    return config


def _number(name: str, value: Any, kind: type, minimum: float) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}") from None
    if kind is float and not math.isfinite(number):  # "nan" and "inf" are floats to Python
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if number < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value!r}")
    return number


def load_secret_key(folder: Path) -> str:
    """The key in ``folder/secret_key``, created (mode 0600) by the first process that needs it.

    Every gunicorn worker reads the same file, so a session signed by one is
    valid in all. Creation is atomic: a process that loses the race reads the
    winner's key.
    """
    path = folder / "secret_key"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the creator may not have written it yet
            key = path.read_text().strip()
            if key:
                return key
            time.sleep(0.01)
        raise ConfigError(f"{path} is empty; delete it or set FLOWBRIDGE_SECRET_KEY") from None
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key
