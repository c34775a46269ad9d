"""FlowGram's API functions (``TaskRunAPI``... on a default runtime) and the sync facade.

``await TaskRunAPI({"schema": ..., "inputs": ...})`` and the others take and return the dicts
FlowGram's runtime does (see ``seeds/003_*``); :class:`WorkflowApplication` does the same
synchronously on a given runtime.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .application import WorkflowRuntime
from .request import WorkflowInputError, check_request, unknown_node_types
from .validation import validate_task

_default_runtime: WorkflowRuntime | None = None


def default_runtime() -> WorkflowRuntime:
    """The runtime the API functions use (created on first use, with an in-memory store)."""
    global _default_runtime
    if _default_runtime is None:
        _default_runtime = WorkflowRuntime()
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
    """``{schema, inputs}`` → ``{valid, errors?}``; node types with no executor add a warning."""
    schema, inputs = check_request(request.get("schema"), request.get("inputs") or {}, inputs_object=False)
    errors = validate_task(schema, inputs)
    result: dict[str, Any] = {"valid": not errors}
    if errors:
        result["errors"] = errors
    unknown = unknown_node_types(schema)
    if unknown:
        result["warnings"] = [f"No executor found for node type {t}: running it will fail" for t in unknown]
    return result


class WorkflowApplication:
    """A sync facade: ``run`` (optionally waiting), ``result``, ``report``, ``cancel``."""

    def __init__(self, runtime: WorkflowRuntime | None = None) -> None:
        self.runtime = runtime or default_runtime()

    def run(self, schema: Any, inputs: dict[str, Any] | None = None, *, wait: float | None = None) -> str:
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
