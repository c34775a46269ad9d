"""Per-process resources of the app: the LLM client.

The client (and with it the async pool's threads) is created on first use in
each process, so under gunicorn it is born in the worker after the fork, never
in the master.
"""

from __future__ import annotations

import atexit
import os
import threading

from flask import Flask, current_app

from async_utils import AsyncConfig
from llm_client import LLMClient
from workflow import Limits, RuntimeSettings, WorkflowRuntime
from workflow.store import make_task_store

_lock = threading.Lock()


def get_llm_client(app: Flask | None = None) -> LLMClient:
    """The app's client for this process, created on first call."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    state = app.extensions.setdefault("flowbridge", {})
    client = state.get("llm_client")
    if client is not None and state.get("pid") == os.getpid():
        return client
    with _lock:
        client = state.get("llm_client")
        if client is None or state.get("pid") != os.getpid():
            client = LLMClient(max_workers=pool_size(app), env=app.config["LLM_ENV"])
            state["llm_client"], state["pid"] = client, os.getpid()
            atexit.register(client.cleanup)
    return client


def pool_size(app: Flask) -> int:
    """Threads of the LLM pool: ``LLM_ASYNC_WORKERS`` if set, else at least the request threads.

    The library default (5) would cap a 16-thread worker at 5 concurrent LLM
    calls, so the app sizes the pool to the worker's request threads.
    """
    env = app.config["LLM_ENV"]
    workers = AsyncConfig.get_worker_count(env)
    if AsyncConfig.is_explicit("LLM_ASYNC_WORKERS", env):
        return workers
    return max(workers, app.config["FLOWBRIDGE_REQUEST_THREADS"])


def close_llm_client(app: Flask) -> None:
    """Clean up this process's client, if it has one (gunicorn's worker_exit calls this)."""
    state = app.extensions.get("flowbridge", {})
    client = state.pop("llm_client", None)
    if client is not None:
        client.cleanup()


def describe_upstream(app: Flask) -> dict[str, str]:
    """Model and upstream for display, without creating the client or showing a key."""
    settings = app.extensions["flowbridge"]["settings"]
    return {"model": settings.model, "base_url": settings.base_url}


def get_workflow_runtime(app: Flask | None = None) -> WorkflowRuntime:
    """This process's workflow runtime (task store, runner loop), created on first use."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    state = app.extensions["flowbridge"]
    runtime = state.get("workflow_runtime")
    if runtime is not None and state.get("workflow_pid") == os.getpid():
        return runtime
    with _lock:
        runtime = state.get("workflow_runtime")
        if runtime is None or state.get("workflow_pid") != os.getpid():
            config = app.config
            settings = state["settings"]
            runtime = WorkflowRuntime(
                make_task_store(config["FLOWBRIDGE_TASK_DB"] or os.path.join(app.instance_path, "tasks.db")),
                RuntimeSettings(
                    allowed_hosts=frozenset(config["FLOWBRIDGE_ALLOWED_HOSTS"]),
                    llm_base_url=settings.base_url,
                    llm_model=settings.model,
                ),
                llm_provider=lambda: get_llm_client(app),
                limits=Limits(deadline=config["FLOWBRIDGE_TASK_DEADLINE"],
                              max_loop_iterations=config["FLOWBRIDGE_MAX_LOOP_ITERATIONS"]),
                max_running=config["FLOWBRIDGE_MAX_RUNNING_TASKS"],
                retention_seconds=config["FLOWBRIDGE_TASK_RETENTION_HOURS"] * 3600,
                max_tasks=config["FLOWBRIDGE_TASK_KEEP"],
            )
            state["workflow_runtime"], state["workflow_pid"] = runtime, os.getpid()
            atexit.register(runtime.shutdown)
    return runtime


def close_workflow_runtime(app: Flask) -> None:
    """Cancel and record this process's running tasks (gunicorn's worker_exit calls this)."""
    runtime = app.extensions.get("flowbridge", {}).pop("workflow_runtime", None)
    if runtime is not None:
        runtime.shutdown()
