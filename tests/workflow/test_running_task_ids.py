"""``WorkflowRuntime.running_task_ids``: the public view of the tasks a process runs (gunicorn's
worker_exit waits for them through ``webapp.extensions.finish_running_tasks``)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from tests.workflow.builders import edge, node, obj
from workflow import Limits, NodeResult, RuntimeSettings, WorkflowRuntime, register_node_executor
from workflow.store import MemoryTaskStore

_release = threading.Event()
_entered = threading.Event()


async def _held(ctx: Any) -> NodeResult:
    _entered.set()
    for _ in range(3000):  # bounded: 30 s at most
        if _release.is_set():
            break
        await asyncio.sleep(0.01)
    return NodeResult({})


register_node_executor("test-held", _held)


def test_running_task_ids_lists_a_task_while_it_runs_and_not_after() -> None:
    runtime = WorkflowRuntime(MemoryTaskStore(), RuntimeSettings(), limits=Limits(deadline=60))
    schema = {"nodes": [node("start_0", "start", outputs=obj()), node("held", "test-held"),
                        node("end_0", "end", inputs=obj(), inputsValues={})],
              "edges": [edge("start_0", "held"), edge("held", "end_0")]}
    try:
        assert runtime.running_task_ids() == []
        task_id = runtime.run(json.dumps(schema), {})
        assert _entered.wait(30)
        assert runtime.running_task_ids() == [task_id]
        _release.set()
        record = runtime.wait(task_id, 30)
        assert record is not None and record.status == "succeeded"
        deadline = time.monotonic() + 30  # the run leaves the list just after recording its outcome
        while runtime.running_task_ids() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runtime.running_task_ids() == []
    finally:
        _release.set()
        runtime.shutdown()
