"""The task API: run workflows in the background, report on them from any process.

``WorkflowRuntime`` owns one background event loop per process (started on
first use, so after gunicorn forks) on which tasks run, bounded by
``max_running``. Progress goes to a :mod:`task store <workflow.store>`, so any
process can answer report, result and cancel for any task.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .document import WorkflowDocument
from .engine import Limits, TaskCanceled, TaskDeadline, TaskRun
from .errors import WorkflowError
from .executor import RuntimeSettings
from .llm_clients import LLMClients
from .progress import ProgressSaver
from .queue import QueuedRuns, TaskQueue, TaskQueueError
from .report import TaskState
from .request import (
    Validation,
    WorkflowInputError,
    check_request,
    parse_schema,
    schema_title,
    unknown_node_types,
    unknown_type_warning,
)
from .store import MemoryTaskStore, TaskRecord, TaskStore, _abandon_report, process_owner_id
from .validation import validate_schema, validate_task

__all__ = ["TaskCapacityError", "TaskQueueError", "WorkflowInputError", "WorkflowRuntime", "check_request",
           "parse_schema"]

logger = logging.getLogger(__name__)

#: Seconds between heartbeats of this process's running tasks.
HEARTBEAT_INTERVAL = 5.0
#: Seconds between checks of the cancel flags of this process's running tasks.
CANCEL_POLL_INTERVAL = 0.25
#: A task whose process has not beaten for this long is failed by whoever notices.
ORPHAN_AFTER = 30.0


class TaskCapacityError(WorkflowError, RuntimeError):
    """This process already runs ``max_running`` tasks."""


class WorkflowRuntime(QueuedRuns):
    """Runs workflow tasks in this process and answers for tasks of every process.

    :param store: where tasks live (default: in memory, this process only).
    :param settings: allowed hosts, LLM defaults, code limits.
    :param llm_provider: returns the app's :class:`~llm_client.LLMClient`.
    :param max_running: tasks this process runs at once; beyond, :class:`TaskCapacityError`.
    :param queue: run tasks in worker processes through this queue (:meth:`run` queues them, a worker
        calls :meth:`execute`); None: in this process.
    :param orphan_after: seconds without a heartbeat after which a task is failed as abandoned, by
        whichever process notices; heartbeats go every sixth of it (at most every ``HEARTBEAT_INTERVAL``).
    """

    def __init__(
        self,
        store: TaskStore | None = None,
        settings: RuntimeSettings | None = None,
        *,
        llm_provider: Callable[[], Any] | None = None,
        limits: Limits | None = None,
        max_running: int = 32,
        retention_seconds: float | None = 7 * 24 * 3600,
        max_tasks: int | None = 10_000,
        queue: TaskQueue | None = None,
        orphan_after: float = ORPHAN_AFTER,
    ) -> None:
        self.store = store or MemoryTaskStore()
        self.queue = queue
        self.orphan_after = orphan_after
        self.heartbeat_interval = min(HEARTBEAT_INTERVAL, orphan_after / 6)
        self.settings = settings or RuntimeSettings()
        self.limits = limits or Limits()
        self.max_running = max_running
        self.retention_seconds = retention_seconds
        self.max_tasks = max_tasks
        self._llm_clients = LLMClients(self.settings.llm_base_url, llm_provider)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._runs: dict[str, TaskRun] = {}
        self._futures: dict[str, Future[Any]] = {}

    # -- the background loop ---------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid() or not self._thread or not self._thread.is_alive():
                self._pid = os.getpid()
                self._runs, self._futures = {}, {}
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="workflow-runner", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
                asyncio.run_coroutine_threadsafe(self._housekeeping(), loop)
                asyncio.run_coroutine_threadsafe(self._watch_cancels(), loop)
            return self._loop

    async def _watch_cancels(self) -> None:
        """Cancel requested through another process reaches nodes still running here."""
        while True:
            for task_id, run in list(self._runs.items()):
                try:
                    if not run.cancelled and self.store.is_cancel_requested(task_id):
                        run.cancel()
                except Exception:
                    logger.exception("checking the cancel flag of %s failed", task_id)
            await asyncio.sleep(CANCEL_POLL_INTERVAL)

    async def _housekeeping(self) -> None:
        owner = process_owner_id()
        while True:
            try:
                self.store.heartbeat(owner, list(self._runs))
                if self.queue is not None:
                    await self._queue_housekeeping()
                self.store.fail_orphans(stale_after=self.orphan_after)
                self.store.prune(self.retention_seconds, self.max_tasks)
            except Exception:  # never let housekeeping die; the next round retries
                logger.exception("task store housekeeping failed")
            await asyncio.sleep(self.heartbeat_interval)

    async def _queue_housekeeping(self) -> None:
        """The queue's round (heartbeats of queued tasks...), off the loop: it talks to the broker. A broker
        that is down only delays it: tasks it keeps alive are failed as orphans if that lasts ``orphan_after``."""
        assert self.queue is not None
        try:
            await asyncio.to_thread(self.queue.housekeeping, self.store)
        except TaskQueueError as exc:  # one line a round, not a traceback
            logger.warning("task queue housekeeping: %s", exc)
        except Exception:
            logger.exception("task queue housekeeping failed")

    def start(self) -> None:
        """Start the background loop and housekeeping now (a queue worker, before its first task)."""
        self._ensure_loop()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop this process's running tasks, record each as failed, and stop and close the loop.

        A task this process stops will never finish, so it is recorded as failed
        ("the server shut down") at once, rather than left processing until
        another process notices its heartbeat stopped (``ORPHAN_AFTER``). Tasks a
        user canceled stay canceled; tasks that ended meanwhile keep their outcome.
        """
        interrupted = list(self._runs)
        message = f"Task failed: the server process running it ({process_owner_id()}) shut down before it finished"
        if interrupted and self._loop is not None and self._pid == os.getpid():
            try:
                asyncio.run_coroutine_threadsafe(_fail_all(list(self._runs.values()), message),
                                                 self._loop).result(timeout)
            except Exception:  # the loop is stuck or gone: _record_shutdown fails them through the store
                logger.exception("marking the running tasks failed at shutdown failed")
            self._record_shutdown(interrupted, message)  # now, not after the runs have unwound
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None and thread is not None and thread.is_alive() and self._pid == os.getpid():
            for future in list(self._futures.values()):
                try:
                    future.result(timeout)
                except Exception:  # the outcome is already in the store
                    pass
            asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(timeout)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()
        self._llm_clients.close()
        self.store.flush()
        self._record_shutdown(interrupted, message)
        if self.queue is not None:
            self.queue.close()

    def _record_shutdown(self, task_ids: list[str], message: str) -> None:
        """Fail the tasks the loop could not mark (it was stuck or gone); give failed ones their error."""
        for task_id in task_ids:
            try:
                record = self.store.get(task_id)
                if record is None or record.status in ("succeeded", "canceled"):
                    continue
                if record.status == "failed":
                    if record.error is None:  # marked by _fail_all; its run stopped before recording why
                        errors = ((record.report or {}).get("messages") or {}).get("error") or []
                        self.store.update(task_id, error="; ".join(m["message"] for m in errors) or message)
                    continue
                now = time.time()
                self.store.update(task_id, status="failed", error=message, finished_at=now,
                                  report=_abandon_report(record.report, message, now))
            except Exception:  # best effort at exit: the heartbeat check fails it later anyway
                logger.exception("recording task %s as failed at shutdown failed", task_id)

    def running_task_ids(self) -> list[str]:
        """The IDs of the tasks this process is running now (none in a forked child that has not run its own)."""
        if self._pid != os.getpid():
            return []
        return list(self._runs)

    # -- LLM clients -------------------------------------------------------------------------

    def llm_client(self, api_host: str, api_key: str | None) -> Any:
        """The client an llm node uses for ``api_host`` and ``api_key``: the app's own for the configured
        server, else one of a bounded cache of clients for other hosts (see :mod:`workflow.llm_clients`)."""
        return self._llm_clients.get(api_host, api_key)

    # -- the API -------------------------------------------------------------------------------

    def run(self, schema: Any, inputs: Any = None) -> str:
        """Validate and start a task; returns its ID (status ``processing``, or ``failed`` if invalid).

        :raises WorkflowInputError: when ``schema`` is not JSON or ``inputs`` not an object, or either
            holds a value a task cannot (before anything is recorded).
        :raises TaskCapacityError: when this process is full.
        """
        self._ensure_loop()  # also starts housekeeping: orphans of dead processes get failed
        schema_obj, inputs, warnings = check_request(schema, inputs)
        task_id = str(uuid.uuid4())
        state = TaskState(task_id, inputs)
        now = time.time()
        errors = validate_task(schema_obj, inputs) + self._unknown_type_errors(schema_obj)
        for message in warnings:  # the schema was normalised
            state.add_message("warning", message)
        record = TaskRecord(task_id=task_id, status="pending", schema=schema_obj, inputs=inputs, outputs=None,
                            report=None, error=None, created_at=now, started_at=None, finished_at=None,
                            cancel_requested=False, owner=process_owner_id(), heartbeat_at=now,
                            title=schema_title(schema_obj))
        if errors:
            return self._failed_at_once(record, state, errors, now)
        if self.queue is not None:
            return self._enqueue(record, state)
        if len(self._runs) >= self.max_running and self._pid == os.getpid():
            raise TaskCapacityError(f"this process already runs {self.max_running} tasks; try again later")
        try:  # before the task is recorded: a run that cannot start must not be left "processing"
            run = TaskRun(
                WorkflowDocument(schema_obj), state, self.settings, limits=self.limits, runtime=self,
                on_change=self._saver(task_id), is_cancel_requested=lambda: self.store.is_cancel_requested(task_id),
            )
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            logger.exception("task %s: the workflow could not be prepared", task_id)
            return self._failed_at_once(record, state, [f"the workflow could not be prepared: {exc}"], now)
        record.status, record.started_at = "processing", now
        state.workflow.set("processing")
        record.report = state.export()
        self.store.create(record)
        loop = self._ensure_loop()
        self._runs[task_id] = run
        future = asyncio.run_coroutine_threadsafe(self._process(task_id, run), loop)
        self._futures[task_id] = future
        return task_id

    def _failed_at_once(self, record: TaskRecord, state: Any, errors: list[str], now: float) -> str:
        """Record a task that failed before it started (each error a message of its report); its id."""
        for message in errors:
            state.add_message("error", message)
        state.workflow.status = "failed"
        state.workflow.end_time = None
        record.status, record.error, record.finished_at = "failed", "; ".join(errors), now
        record.report, record.outputs = state.export(), {}
        self.store.create(record)
        return record.task_id

    def validate(self, schema: Any, inputs: Any = None) -> Validation:
        """FlowGram's TaskValidate, plus warnings: the one validation behind every way in.

        ``TaskValidateAPI``, ``POST /api/task/validate`` and the Workflows page all answer with this.
        Errors are FlowGram's (the task would fail at once); warnings are ours: the schema was
        normalised (see :func:`~workflow.request.check_request`), a node type has no executor.

        :raises WorkflowInputError: when the request itself is malformed, as :meth:`run` does.
        """
        request = check_request(schema, inputs, inputs_object=False)
        unknown = unknown_node_types(request.schema)
        return Validation(validate_task(request.schema, request.inputs),
                          request.warnings + [unknown_type_warning(t) for t in unknown], unknown)

    def _unknown_type_errors(self, schema: dict[str, Any]) -> list[str]:
        if validate_schema(schema):
            return []
        return [f"No executor found for node type {t}" for t in unknown_node_types(schema)]

    def _saver(self, task_id: str) -> Callable[[TaskRun], None]:
        return ProgressSaver(self.store, task_id)

    async def _process(self, task_id: str, run: TaskRun) -> dict[str, Any]:
        try:
            try:
                outputs = await run.process()
            except Exception as exc:  # raised outside any node's own recording (saving progress...): say so
                logger.exception("task %s failed", task_id)
                outputs = _fail_run(run, f"Task failed: {str(exc) or type(exc).__name__}")
            state = run.state
            error = "; ".join(m["message"] for m in state.messages["error"]) or None
            rest, parts = state.export_progress()
            try:
                self.store.save_progress(task_id, state.workflow.status, rest, outputs=outputs, parts=parts,
                                         error=error if state.workflow.status == "failed" else None, force=True)
            except Exception as exc:  # never leave it processing: record the failure without the new report
                logger.exception("saving the outcome of task %s failed", task_id)
                self._record_unsaved(task_id, f"Task failed: its report could not be saved: {exc}")
                return {}
            return outputs
        finally:
            self._runs.pop(task_id, None)
            self._futures.pop(task_id, None)

    def _record_unsaved(self, task_id: str, message: str) -> None:
        """Fail a task whose outcome could not be saved, with ``message`` in its last saved report."""
        try:
            record = self.store.get(task_id)
            now = time.time()
            self.store.update(task_id, status="failed", error=message, outputs={}, finished_at=now,
                              report=_abandon_report(record.report if record else None, message, now))
        except Exception:  # the store itself is failing: the heartbeat check fails the task later
            logger.exception("recording task %s as failed failed", task_id)

    def report(self, task_id: str) -> dict[str, Any] | None:
        record = self.get(task_id)
        return record.report if record is not None else None

    def result(self, task_id: str) -> dict[str, Any] | None:
        """The outputs once the task terminated, else None (FlowGram's TaskResult)."""
        record = self.get(task_id)
        if record is None or not record.terminated:
            return None
        return record.outputs or {}

    def cancel(self, task_id: str) -> bool:
        """Request cancel (honoured by whichever process runs it); False for an unknown task."""
        known = self.store.request_cancel(task_id)
        if known and self.queue is not None:
            self._cancel_queued(task_id)
        run = self._runs.get(task_id)
        if run is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(run.cancel)
        return known

    def get(self, task_id: str) -> TaskRecord | None:
        self._ensure_loop()  # a process that only answers queries still fails orphans
        return self.store.get(task_id)

    def wait(self, task_id: str, timeout: float) -> TaskRecord | None:
        """Block until the task terminates or ``timeout`` passes; returns its record.

        A task running here is awaited through its future; a cheap look at the
        store's cancel flag lets a canceled task answer at once, even while a
        node in flight has not given up yet. Tasks of other processes are polled.
        """
        future = self._futures.get(task_id)
        deadline = time.monotonic() + timeout
        while future is not None and not future.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self.store.get(task_id)
            try:
                future.result(min(0.05, remaining))  # returns at once when the local run ends
            except Exception:  # a timeout, or the run's own outcome, which is in the store
                pass
            if not future.done() and self.store.is_cancel_requested(task_id):
                record = self.store.get(task_id)
                if record is None or record.terminated:
                    return record
        while True:
            record = self.store.get(task_id)
            remaining = deadline - time.monotonic()
            if record is None or record.terminated or remaining <= 0:
                return record
            time.sleep(min(0.05, remaining))

    async def wait_async(self, task_id: str, timeout: float) -> TaskRecord | None:
        return await asyncio.to_thread(self.wait, task_id, timeout)


def _fail_run(run: TaskRun, message: str) -> dict[str, Any]:
    """End ``run`` failed with ``message`` (unless it already ended); returns its outputs ({})."""
    run.fail(message)
    return run.state.outputs if run.state.workflow.status == "succeeded" else {}


async def _fail_all(runs: list[TaskRun], message: str) -> None:
    """Record each run as failed with ``message`` and make it stop at its next step (as its deadline does)."""
    for run in runs:
        state = run.state
        try:
            run.check_continue()
        except TaskCanceled:
            continue  # a user's cancel, not yet noticed: the task stays canceled
        except TaskDeadline:
            pass
        if state.workflow.terminated:
            continue
        run.fail(message)
        run.cancelled = True  # unwinds at the next node or loop iteration; the status stays failed
        run.changed()  # a terminal status is saved at once


async def _cancel_all() -> None:
    """Cancel every other task of the running loop (housekeeping) and wait for them."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
