"""The contract between the runtime and a task queue that runs its tasks in other processes.

With a queue, :meth:`WorkflowRuntime.run <workflow.application.WorkflowRuntime.run>` records the
task ``pending`` (owned by :meth:`TaskQueue.queued_owner`) and hands its ID to :meth:`TaskQueue.submit`;
a worker process calls :meth:`WorkflowRuntime.execute <workflow.application.WorkflowRuntime.execute>`
with it. The workflow package knows only this interface: the Celery-on-Redis implementation lives in
the web app (``webapp/server/task_queue.py``), which loads the configuration.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from .document import WorkflowDocument
from .engine import TaskRun
from .errors import WorkflowError
from .report import TaskState
from .store import TaskRecord, TaskStore, process_owner_id

__all__ = ["QueuedRuns", "TaskQueue", "TaskQueueError"]

logger = logging.getLogger(__name__)


class TaskQueueError(WorkflowError, RuntimeError):
    """The queue cannot take the task now (its broker is unreachable); the message says why."""


class TaskQueue(ABC):
    """Where :class:`~workflow.application.WorkflowRuntime` sends tasks to run elsewhere."""

    @abstractmethod
    def queued_owner(self) -> str:
        """The ``owner`` of a task waiting in the queue: whoever keeps such tasks' heartbeats
        (:meth:`housekeeping`) while the queue still holds them. Never holds a secret."""

    @abstractmethod
    def check_room(self) -> None:
        """:raises TaskCapacityError: when the queue holds as many tasks as it may (the caller says 503)
        :raises TaskQueueError: when the queue is unreachable"""

    @abstractmethod
    def submit(self, task_id: str) -> None:
        """Queue a recorded ``pending`` task. :raises TaskQueueError: when it could not be queued"""

    @abstractmethod
    def claim(self, task_id: str, owner: str) -> bool:
        """Whether ``owner`` may start ``task_id``: True for one caller only, however many copies of the
        task's message were delivered (the runtime then checks the task is still ``pending``)."""

    @abstractmethod
    def housekeeping(self, store: TaskStore) -> None:
        """Keep the heartbeats of the tasks the queue still holds, and queue again those it lost
        (its broker restarted empty). Called every heartbeat interval by every runtime using the queue."""

    def close(self) -> None:
        """Release connections."""


class QueuedRuns:
    """The queue's side of :class:`~workflow.application.WorkflowRuntime`: queue a task, run a queued one.

    A mixin: it uses the runtime's ``store``, ``queue``, ``settings``, ``limits``, its runs and loop.
    """

    store: TaskStore
    queue: TaskQueue | None
    settings: Any
    limits: Any
    _runs: dict[str, TaskRun]
    _futures: dict[str, Any]

    # the runtime's own (workflow.application)
    def _ensure_loop(self) -> asyncio.AbstractEventLoop: raise NotImplementedError
    def _saver(self, task_id: str) -> Callable[[TaskRun], None]: raise NotImplementedError
    async def _process(self, task_id: str, run: TaskRun) -> dict[str, Any]: raise NotImplementedError
    def _record_unsaved(self, task_id: str, message: str) -> None: raise NotImplementedError

    def _enqueue(self, record: TaskRecord, state: TaskState) -> str:
        """Record a valid task ``pending`` and queue it for a worker (:meth:`execute`).

        :raises TaskCapacityError: when the queue is full (nothing is recorded).
        :raises TaskQueueError: when the broker is unreachable (the task is recorded failed, saying so).
        """
        assert self.queue is not None
        self.queue.check_room()
        record.owner = self.queue.queued_owner()
        record.report = state.export()
        self.store.create(record)
        try:
            self.queue.submit(record.task_id)
        except Exception as exc:
            message = f"Task failed: it could not be queued: {exc}"
            self._record_unsaved(record.task_id, message)
            raise TaskQueueError(f"the task queue is unavailable: {exc}") from exc
        return record.task_id

    def _cancel_queued(self, task_id: str) -> None:
        """End a task still waiting in the queue canceled now, rather than when a worker takes it: once its
        claim is taken here, no worker starts it (one that claimed it first honours the cancel flag)."""
        assert self.queue is not None
        record = self.store.get(task_id)
        if record is None or record.status != "pending" or not self.queue.claim(task_id, "cancel"):
            return
        record = self.store.get(task_id)
        if record is None or record.status != "pending":
            return
        state = _queued_state(record)
        state.workflow.set("canceled")
        self.store.update(task_id, status="canceled", outputs={}, report=state.export(), finished_at=time.time())

    def execute(self, task_id: str, timeout: float | None = None) -> TaskRecord | None:
        """Run a queued task here, blocking until it ends (a queue worker calls this); its final record.

        The task starts only if the queue lets this process claim it and it is still ``pending``: a
        message delivered twice (a broker's redelivery) or for a task failed meanwhile (the queue lost
        it; it was orphaned) runs nothing. Once started, the task belongs to this process: its heartbeat
        is this process's, so if the process dies, housekeeping anywhere fails it within ``orphan_after``.
        """
        owner = process_owner_id()
        if self.queue is not None and not self.queue.claim(task_id, owner):
            logger.info("task %s is claimed by another worker: not run twice", task_id)
            return self.store.get(task_id)
        record = self.store.get(task_id)
        if record is None or record.status != "pending":
            logger.info("task %s is %s: nothing to run", task_id, record.status if record else "gone")
            return record
        state = _queued_state(record)
        now = time.time()
        state.workflow.set("processing")
        self.store.update(task_id, status="processing", owner=owner, heartbeat_at=now, started_at=now)
        run = TaskRun(
            WorkflowDocument(record.schema), state, self.settings, limits=self.limits, runtime=self,
            on_change=self._saver(task_id), is_cancel_requested=lambda: self.store.is_cancel_requested(task_id),
        )
        loop = self._ensure_loop()
        self._runs[task_id] = run
        future = asyncio.run_coroutine_threadsafe(self._process(task_id, run), loop)
        self._futures[task_id] = future
        try:
            future.result(timeout)
        except Exception:  # its outcome is in the store
            pass
        return self.store.get(task_id)


def _queued_state(record: TaskRecord) -> TaskState:
    """A new state for a queued task, with the messages :meth:`~QueuedRuns._enqueue` noted (the schema was
    normalised...)."""
    state = TaskState(record.task_id, record.inputs)
    for kind in ("warning", "log"):
        state.messages.setdefault(kind, []).extend(((record.report or {}).get("messages") or {}).get(kind) or [])
    return state
