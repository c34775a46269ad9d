"""FlowGram's API functions (``TaskRunAPI``... on a default runtime) and the sync facade.

``await TaskRunAPI({"schema": ..., "inputs": ...})`` and the others take and return the dicts
FlowGram's runtime does (see ``seeds/003_*``); :class:`WorkflowApplication` does the same
synchronously (``WorkflowApplication.instance()``: on the default runtime). The default runtime
reads the web app's variables (``LLM_BASE_URL``, ``FLOWBRIDGE_ALLOWED_HOSTS``...: see
:func:`~workflow.environment.runtime_from_env`), so a plain script behaves as the server does.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from .application import WorkflowRuntime
from .environment import runtime_from_env
from .request import WorkflowInputError

_default_runtime: WorkflowRuntime | None = None
_default_lock = threading.Lock()


def default_runtime() -> WorkflowRuntime:
    """The runtime the API functions use: created on first use from the environment, as the web app's.

    Its store is ``FLOWBRIDGE_TASK_DB`` (in memory when empty); it is shut down at exit, failing
    the tasks still running (as the server does), so a store shared with the server is left right.

    :raises WorkflowConfigError: naming a variable whose value is bad.
    """
    global _default_runtime
    with _default_lock:
        if _default_runtime is None:
            _default_runtime = runtime_from_env()
            atexit.register(_default_runtime.shutdown)
        return _default_runtime


def set_default_runtime(runtime: WorkflowRuntime) -> None:
    """Make the API functions use ``runtime`` (the webapp's, or a test's)."""
    global _default_runtime
    _default_runtime = runtime


def _api(fn: Callable[[WorkflowRuntime, dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Awaitable[Any]]:
    async def call(request: dict[str, Any]) -> Any:
        if not isinstance(request, dict):
            raise WorkflowInputError("the request must be an object")
        return fn(default_runtime(), request)

    call.__name__ = fn.__name__
    call.__doc__ = fn.__doc__
    return call


@_api
def TaskRunAPI(runtime: WorkflowRuntime, request: dict[str, Any]) -> dict[str, str]:  # noqa: N802
    """``{schema, inputs}`` → ``{taskID}``."""
    return {"taskID": runtime.run(request.get("schema"), request.get("inputs"))}


@_api
def TaskReportAPI(runtime: WorkflowRuntime, request: dict[str, Any]) -> dict[str, Any] | None:  # noqa: N802
    """``{taskID}`` → the report, or None for an unknown task."""
    return runtime.report(str(request.get("taskID")))


@_api
def TaskResultAPI(runtime: WorkflowRuntime, request: dict[str, Any]) -> dict[str, Any] | None:  # noqa: N802
    """``{taskID}`` → the outputs once terminated, else None."""
    return runtime.result(str(request.get("taskID")))


@_api
def TaskCancelAPI(runtime: WorkflowRuntime, request: dict[str, Any]) -> dict[str, bool]:  # noqa: N802
    """``{taskID}`` → ``{success}`` (False only for an unknown task)."""
    return {"success": runtime.cancel(str(request.get("taskID")))}


@_api
def TaskValidateAPI(runtime: WorkflowRuntime, request: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
    """``{schema, inputs}`` → ``{valid, errors?, warnings?}`` (:meth:`WorkflowRuntime.validate`)."""
    return runtime.validate(request.get("schema"), request.get("inputs") or {}).as_dict()


class WorkflowApplication:
    """A sync facade: ``run`` (optionally waiting), ``result``, ``report``, ``cancel``.

    ``WorkflowApplication.instance()`` is the process-wide one, on :func:`default_runtime`;
    ``WorkflowApplication(runtime)`` works on the runtime given.
    """

    _instance: WorkflowApplication | None = None

    def __init__(self, runtime: WorkflowRuntime | None = None) -> None:
        self._runtime = runtime

    @classmethod
    def instance(cls) -> WorkflowApplication:
        """The process-wide application (``seeds/003_*``): on the default runtime, whichever it is now."""
        with _default_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    @property
    def runtime(self) -> WorkflowRuntime:
        return self._runtime if self._runtime is not None else default_runtime()

    def run(self, schema: Any, inputs: dict[str, Any] | None = None, *, wait: float | None = None) -> str:
        """Start a task; its ID. ``run(schema, inputs)``, or the seed's ``run({"schema": ..., "inputs": ...})``.

        :param wait: seconds to wait for the task to end (it may still run after).
        """
        if inputs is None and _is_run_request(schema):
            schema, inputs = schema["schema"], schema.get("inputs")
        task_id = self.runtime.run(schema, inputs)
        if wait:
            self.runtime.wait(task_id, wait)
        return task_id

    def result(self, task_id: str) -> dict[str, Any] | None:
        return self.runtime.result(task_id)

    def report(self, task_id: str) -> dict[str, Any] | None:
        return self.runtime.report(task_id)

    def cancel(self, task_id: str) -> bool:
        return self.runtime.cancel(task_id)


def _is_run_request(value: Any) -> bool:
    """Whether ``value`` is a TaskRun request ``{"schema", "inputs"?}`` rather than a schema (which has nodes)."""
    return isinstance(value, dict) and "schema" in value and "nodes" not in value and set(value) <= {"schema", "inputs"}
