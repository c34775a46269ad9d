"""Per-process resources of the app: the LLM client and the workflow runtime.

Each is created on first use in each process, so under gunicorn its threads
are born in the worker after the fork, never in the master.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app

from async_utils import AsyncConfig
from llm_client import LLMClient
from workflow import Limits, RuntimeSettings, WorkflowRuntime, make_task_store

from .results import ResultStore, make_result_store

T = TypeVar("T")

_lock = threading.Lock()


def _per_process(app: Flask | None, name: str, build: Callable[[Flask], T], close: Callable[[T], Any]) -> T:
    """``app``'s ``name`` for this process: built on first use, rebuilt after a fork."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    state = app.extensions.setdefault("flowbridge", {})
    entry = state.get(name)
    if entry is not None and entry[1] == os.getpid():
        return entry[0]
    with _lock:
        entry = state.get(name)
        if entry is None or entry[1] != os.getpid():
            resource = build(app)
            state[name] = entry = (resource, os.getpid())
            atexit.register(close, resource)
    return entry[0]


def _close(app: Flask, name: str, close: Callable[[Any], Any]) -> None:
    entry = app.extensions.get("flowbridge", {}).pop(name, None)
    if entry is not None and entry[1] == os.getpid():
        close(entry[0])


def get_llm_client(app: Flask | None = None) -> LLMClient:
    """The app's LLM client for this process."""
    return _per_process(app, "llm_client", _build_llm_client, LLMClient.cleanup)


def _build_llm_client(app: Flask) -> LLMClient:
    env = app.config["LLM_ENV"]
    if not env.get("LLM_CACHE_PATH"):  # a plain LLM_CACHE=sqlite: one file shared by every worker
        env = {**env, "LLM_CACHE_PATH": os.path.join(app.instance_path, "llm_cache.db")}
    return LLMClient(max_workers=pool_size(app), env=env)


def close_llm_client(app: Flask) -> None:
    """Clean up this process's client, if it has one (gunicorn's worker_exit calls this)."""
    _close(app, "llm_client", LLMClient.cleanup)


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


def describe_upstream(app: Flask) -> dict[str, str]:
    """Model and upstream for display, without creating the client or showing a key."""
    settings = app.extensions["flowbridge"]["settings"]
    return {"model": settings.model, "base_url": settings.base_url}


def get_workflow_runtime(app: Flask | None = None) -> WorkflowRuntime:
    """This process's workflow runtime (task store, runner loop)."""
    return _per_process(app, "workflow_runtime", _build_workflow_runtime, WorkflowRuntime.shutdown)


def _build_workflow_runtime(app: Flask) -> WorkflowRuntime:
    config = app.config
    return WorkflowRuntime(
        make_task_store(config["FLOWBRIDGE_TASK_DB"] or os.path.join(app.instance_path, "tasks.db")),
        # read as a plain script's default runtime reads them (the app's config: its environment and overrides)
        RuntimeSettings.from_env({**config["LLM_ENV"], "FLOWBRIDGE_ALLOWED_HOSTS": config["FLOWBRIDGE_ALLOWED_HOSTS"]}),
        llm_provider=lambda: get_llm_client(app),
        limits=Limits(deadline=config["FLOWBRIDGE_TASK_DEADLINE"],
                      max_loop_iterations=config["FLOWBRIDGE_MAX_LOOP_ITERATIONS"]),
        max_running=config["FLOWBRIDGE_MAX_RUNNING_TASKS"],
        retention_seconds=config["FLOWBRIDGE_TASK_RETENTION_HOURS"] * 3600,
        max_tasks=config["FLOWBRIDGE_TASK_KEEP"],
        queue=_build_task_queue(app),
        orphan_after=config["FLOWBRIDGE_ORPHAN_AFTER"],
    )


def _build_task_queue(app: Flask) -> Any:
    """The Celery queue of ``FLOWBRIDGE_BROKER_URL`` (imported only then: the embedded default needs no Celery)."""
    if not app.config["FLOWBRIDGE_BROKER_URL"]:
        return None
    from .server.task_queue import RedisTaskQueue

    return RedisTaskQueue(app.config)


def close_workflow_runtime(app: Flask, timeout: float = 5.0) -> None:
    """Fail and record this process's running tasks (gunicorn's worker_exit calls this).

    :param timeout: how long each step of the runtime's shutdown may wait for its loop.
    """
    _close(app, "workflow_runtime", lambda runtime: runtime.shutdown(timeout))


def finish_running_tasks(app: Flask, seconds: float) -> int:
    """Let this process's running workflow tasks finish, for ``seconds`` at most; how many still run.

    gunicorn's worker_exit calls this on a graceful stop, before :func:`close_workflow_runtime`
    fails what is left: a task that finishes within the grace keeps its result. Never creates
    the runtime.
    """
    entry = app.extensions.get("flowbridge", {}).get("workflow_runtime")
    if entry is None or entry[1] != os.getpid():
        return 0
    runtime: WorkflowRuntime = entry[0]
    until = time.monotonic() + seconds
    running = runtime.running_task_ids()
    for task_id in running:
        left = until - time.monotonic()
        if left <= 0:
            break
        runtime.wait(task_id, left)
    still = set(runtime.running_task_ids())
    return sum(1 for task_id in running if task_id in still)


def get_result_store(app: Flask | None = None) -> ResultStore:
    """This process's store of op and flow results (the pages' ``/results/<id>``), in the task DB file."""
    return _per_process(app, "result_store", _build_result_store, ResultStore.close)


def _build_result_store(app: Flask) -> ResultStore:
    config = app.config
    return make_result_store(config["FLOWBRIDGE_TASK_DB"] or os.path.join(app.instance_path, "tasks.db"),
                             keep=config["FLOWBRIDGE_TASK_KEEP"])
