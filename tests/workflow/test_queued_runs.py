"""WorkflowRuntime with a task queue (workflow/queue.py), on an in-process queue: ``run`` records the task
pending and hands it to the queue; ``execute`` runs it once, whatever the number of deliveries; a full or
broken queue refuses before or after recording, saying why. (The Celery/Redis queue is tested end to end in
tests/webapp/test_task_queue_services.py.)"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from workflow import TaskCapacityError, WorkflowRuntime
from workflow.store import MemoryTaskStore, TaskStore
from workflow.queue import TaskQueue, TaskQueueError


def schema() -> dict[str, Any]:
    return {"nodes": [
        {"id": "start_0", "type": "start", "meta": {"position": {"x": 0, "y": 0}},
         "data": {"outputs": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}},
        {"id": "end_0", "type": "end", "meta": {"position": {"x": 0, "y": 0}},
         "data": {"inputs": {"type": "object", "properties": {"answer": {"type": "string"}}},
                  "inputsValues": {"answer": {"type": "ref", "content": ["start_0", "q"]}}}},
    ], "edges": [{"sourceNodeID": "start_0", "targetNodeID": "end_0"}]}


class ListQueue(TaskQueue):
    """Task IDs in a list; claims in a set (as Redis' SET NX would)."""

    def __init__(self, room: int = 100, broken: bool = False) -> None:
        self.sent: list[str] = []
        self.claims: set[str] = set()
        self.room, self.broken = room, broken
        self.lock = threading.Lock()

    def queued_owner(self) -> str:
        return "queued on test"

    def check_room(self) -> None:
        if len(self.sent) >= self.room:
            raise TaskCapacityError(f"the task queue is full ({len(self.sent)})")

    def submit(self, task_id: str) -> None:
        if self.broken:
            raise ConnectionError("broker down")
        self.sent.append(task_id)

    def claim(self, task_id: str, owner: str) -> bool:
        with self.lock:
            if task_id in self.claims:
                return False
            self.claims.add(task_id)
            return True

    def housekeeping(self, store: TaskStore) -> None:
        pending = [r.task_id for r in store.list(status="pending", limit=1000)]
        store.heartbeat(self.queued_owner(), pending)


@pytest.fixture
def store() -> MemoryTaskStore:
    return MemoryTaskStore()


def runtime(store: MemoryTaskStore, queue: TaskQueue) -> WorkflowRuntime:
    return WorkflowRuntime(store, queue=queue, orphan_after=6)


def test_run_queues_the_task_pending_and_a_worker_runs_it_once(store: MemoryTaskStore) -> None:
    queue = ListQueue()
    app, worker = runtime(store, queue), runtime(store, queue)
    try:
        task_id = app.run(schema(), {"q": "hi"})
        record = store.get(task_id)
        assert record is not None and record.status == "pending" and record.owner == "queued on test"
        assert queue.sent == [task_id] and app.running_task_ids() == []
        done = worker.execute(task_id, timeout=30)
        assert done is not None and done.status == "succeeded" and done.outputs == {"answer": "hi"}
        assert done.report is not None and done.report["workflowStatus"]["status"] == "succeeded"
        assert app.wait(task_id, 5).status == "succeeded"  # type: ignore[union-attr]
        # a second delivery of the same message runs nothing (claimed), nor does one after the claim expired
        assert worker.execute(task_id, timeout=30).finished_at == done.finished_at  # type: ignore[union-attr]
        queue.claims.clear()
        assert worker.execute(task_id, timeout=30).finished_at == done.finished_at  # type: ignore[union-attr]
    finally:
        app.shutdown()
        worker.shutdown()


def test_a_task_canceled_while_queued_ends_canceled_at_once_and_never_runs(store: MemoryTaskStore) -> None:
    queue = ListQueue()
    app = runtime(store, queue)
    try:
        task_id = app.run(schema(), {"q": "hi"})
        assert app.cancel(task_id)
        record = store.get(task_id)
        assert record is not None and record.status == "canceled" and record.outputs == {}
        assert (record.report or {})["workflowStatus"]["status"] == "canceled" and record.finished_at
        assert app.execute(task_id, timeout=30).status == "canceled"  # type: ignore[union-attr]
        queue.claims.clear()  # the claim expired: still nothing runs
        done = app.execute(task_id, timeout=30)
        assert done is not None and done.status == "canceled" and not (done.report or {}).get("reports")
    finally:
        app.shutdown()


def test_a_task_a_worker_claimed_is_canceled_by_its_flag(store: MemoryTaskStore) -> None:
    queue = ListQueue()
    app = runtime(store, queue)
    try:
        task_id = app.run(schema(), {"q": "hi"})
        queue.claims.add(task_id)  # a worker is starting it: cancel only sets the flag
        assert app.cancel(task_id) and store.get(task_id).status == "pending"  # type: ignore[union-attr]
        queue.claims.clear()
        assert app.execute(task_id, timeout=30).status == "canceled"  # type: ignore[union-attr]
    finally:
        app.shutdown()


def test_a_full_queue_refuses_before_recording_and_a_broken_one_records_why(store: MemoryTaskStore) -> None:
    full = runtime(store, ListQueue(room=1))
    try:
        full.run(schema(), {"q": "1"})
        with pytest.raises(TaskCapacityError, match="full"):
            full.run(schema(), {"q": "2"})
        assert store.count() == 1
    finally:
        full.shutdown()
    broken = runtime(store, ListQueue(broken=True))
    try:
        with pytest.raises(TaskQueueError, match="broker down"):
            broken.run(schema(), {"q": "3"})
        failed = store.list(status="failed")
        assert len(failed) == 1 and "could not be queued: broker down" in (failed[0].error or "")
    finally:
        broken.shutdown()


def test_invalid_tasks_fail_at_once_without_being_queued(store: MemoryTaskStore) -> None:
    queue = ListQueue()
    app = runtime(store, queue)
    try:
        task_id = app.run({"nodes": [], "edges": []}, {})
        assert store.get(task_id).status == "failed" and queue.sent == []  # type: ignore[union-attr]
    finally:
        app.shutdown()
