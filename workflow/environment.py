"""The runtime's environment variables: their names, defaults and parsing, in one place.

A plain script (``TaskRunAPI``..., ``WorkflowApplication.instance()``) runs on
:func:`runtime_from_env`; the web app merges :data:`ENV_DEFAULTS` into its configuration and parses
these variables with :func:`read_environment`, so both read ``FLOWBRIDGE_ALLOWED_HOSTS``,
``LLM_BASE_URL``, ``LLM_MODEL``, the task limits and the task store the same way.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Mapping
from typing import Any

from .errors import WorkflowError
from .executor import RuntimeSettings
from .outbound import OutboundURLError, parse_allowed_host

#: Variable -> default. Task store: a SQLite file, a ``postgresql://`` URL (shared by every machine), or
#: "memory" (one process; also what a script gets when it is empty); hosts llm/http nodes may reach besides the LLM server; per-task
#: deadline (seconds); loop bound; tasks running per process; finished tasks are kept this many
#: hours, and at most this many.
ENV_DEFAULTS: dict[str, Any] = {
    "FLOWBRIDGE_TASK_DB": "",
    "FLOWBRIDGE_ALLOWED_HOSTS": "",
    "FLOWBRIDGE_TASK_DEADLINE": 600.0,
    "FLOWBRIDGE_MAX_LOOP_ITERATIONS": 10000,
    "FLOWBRIDGE_MAX_RUNNING_TASKS": 32,
    "FLOWBRIDGE_TASK_RETENTION_HOURS": 168.0,
    "FLOWBRIDGE_TASK_KEEP": 10000,
}
_INTS = ("FLOWBRIDGE_MAX_LOOP_ITERATIONS", "FLOWBRIDGE_MAX_RUNNING_TASKS", "FLOWBRIDGE_TASK_KEEP")
_FLOATS = ("FLOWBRIDGE_TASK_DEADLINE", "FLOWBRIDGE_TASK_RETENTION_HOURS")
#: Prefixes of the variables of the LLM client (``LLM_BASE_URL``, ``LLM_MODEL``, ``OPENAI_API_KEY``...).
LLM_PREFIXES = ("LLM_", "OPENAI_")


class WorkflowConfigError(WorkflowError, ValueError):
    """A variable has a value the runtime cannot use; the message names the variable."""


def read_environment(environ: Mapping[str, Any]) -> dict[str, Any]:
    """The variables of :data:`ENV_DEFAULTS`, parsed (an empty or missing one takes its default).

    :raises WorkflowConfigError: naming the variable and its value.
    """
    values = {key: environ.get(key) if environ.get(key, "") != "" else default for key, default in ENV_DEFAULTS.items()}
    for key in _INTS:
        values[key] = _number(key, values[key], int, minimum=1)
    for key in _FLOATS:
        values[key] = _number(key, values[key], float, minimum=0.001)
    values["FLOWBRIDGE_ALLOWED_HOSTS"] = parse_allowed_hosts(values["FLOWBRIDGE_ALLOWED_HOSTS"])
    return values


def parse_allowed_hosts(value: Any) -> list[str]:
    """``FLOWBRIDGE_ALLOWED_HOSTS``: ``host[:port]`` entries, comma-separated (or a list); each checked.

    :raises WorkflowConfigError: naming the entry.
    """
    items = value.split(",") if isinstance(value, str) else list(value or [])
    hosts = []
    for item in (str(i).strip().lower() for i in items):
        if not item:
            continue
        host, _, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
        if (port and not port.isdigit()) or "/" in item or " " in item:
            raise WorkflowConfigError(f"FLOWBRIDGE_ALLOWED_HOSTS entries are host or host:port, got {item!r}")
        try:  # the spelling workflow.outbound compares URLs with (no 127.1, 0x7f.1, trailing dots...)
            parse_allowed_host(item)
        except OutboundURLError as exc:
            raise WorkflowConfigError(f"FLOWBRIDGE_ALLOWED_HOSTS entry {item!r}: {exc}") from None
        hosts.append(item)
    return hosts


def _number(name: str, value: Any, kind: type, minimum: float) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise WorkflowConfigError(
            f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}") from None
    if number < minimum:
        raise WorkflowConfigError(f"{name} must be >= {minimum}, got {value!r}")
    return number


def llm_environment(environ: Mapping[str, Any]) -> dict[str, str]:
    """The ``LLM_*`` and ``OPENAI_*`` variables of ``environ``: the environment of an LLM client."""
    return {k: str(v) for k, v in environ.items() if k.startswith(LLM_PREFIXES)}


def settings_from_env(environ: Mapping[str, Any] | None = None) -> RuntimeSettings:
    """:meth:`RuntimeSettings.from_env <workflow.executor.RuntimeSettings.from_env>`."""
    from llm_client import LLMConfigError, LLMSettings  # the executor contract needs no HTTP client

    environ = os.environ if environ is None else environ
    try:
        llm = LLMSettings.load(llm_environment(environ))
    except LLMConfigError as exc:
        raise WorkflowConfigError(str(exc)) from None
    hosts = parse_allowed_hosts(environ.get("FLOWBRIDGE_ALLOWED_HOSTS", ""))
    return RuntimeSettings(allowed_hosts=frozenset(hosts), llm_base_url=llm.base_url, llm_model=llm.model)


def runtime_from_env(environ: Mapping[str, Any] | None = None) -> Any:
    """A :class:`~workflow.application.WorkflowRuntime` configured from ``environ`` (default: ``os.environ``).

    The same variables as the web app: ``LLM_BASE_URL``/``LLM_MODEL``/``LLM_API_KEY`` (llm nodes whose
    ``apiHost`` is that server use one client built from them), ``FLOWBRIDGE_ALLOWED_HOSTS``, the task
    limits, and ``FLOWBRIDGE_TASK_DB`` (a SQLite file or ``postgresql://`` URL shared with the server;
    empty: in memory).

    :raises WorkflowConfigError: naming a variable whose value is bad.
    """
    from llm_client import LLMClient

    from .application import WorkflowRuntime
    from .engine import Limits
    from .store import make_task_store

    environ = os.environ if environ is None else environ
    values = read_environment(environ)
    settings = settings_from_env(environ)
    llm_env = llm_environment(environ)
    lock, clients = threading.Lock(), []

    def llm_provider() -> Any:
        with lock:
            if not clients:
                clients.append(LLMClient(env=llm_env))
                atexit.register(clients[0].cleanup)  # after the runtime's shutdown (registered later)
            return clients[0]

    return WorkflowRuntime(
        make_task_store(values["FLOWBRIDGE_TASK_DB"] or "memory"),
        settings,
        llm_provider=llm_provider,
        limits=Limits(deadline=values["FLOWBRIDGE_TASK_DEADLINE"],
                      max_loop_iterations=values["FLOWBRIDGE_MAX_LOOP_ITERATIONS"]),
        max_running=values["FLOWBRIDGE_MAX_RUNNING_TASKS"],
        retention_seconds=values["FLOWBRIDGE_TASK_RETENTION_HOURS"] * 3600,
        max_tasks=values["FLOWBRIDGE_TASK_KEEP"],
    )
