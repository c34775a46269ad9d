"""Saving a running task's progress to its store, at a bounded rate."""

from __future__ import annotations

import asyncio
import time

from .engine import TaskRun
from .store import TaskStore


class ProgressSaver:
    """Saves a running task's report to the store at most every ``interval`` seconds.

    Exporting a report costs time in its size, and a node changes status twice, so
    saving on every change would make long chains quadratic. Changes in between
    are saved by a timer; terminal statuses are saved at once.
    """

    def __init__(self, store: TaskStore, task_id: str, interval: float = 0.1) -> None:
        self.store = store
        self.task_id = task_id
        self.interval = interval
        self.last = 0.0
        self.timer: asyncio.TimerHandle | None = None  # the scheduled save of changes in between

    def __call__(self, run: TaskRun) -> None:
        now = time.monotonic()
        if run.state.workflow.terminated or now - self.last >= self.interval:
            self.flush(run)
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.interval - (now - self.last), self.flush, run)

    def flush(self, run: TaskRun) -> None:
        if self.timer is not None:  # this save covers it: no second save (after the end, of the whole outputs)
            self.timer.cancel()
            self.timer = None
        self.last = time.monotonic()
        state = run.state
        mark = state.progress_mark()
        rest, parts = state.export_progress()  # each snapshot is written once: the cost stays flat
        try:
            self.store.save_progress(self.task_id, state.workflow.status, rest, parts=parts,
                                     outputs=state.outputs if state.workflow.terminated else None)
        except Exception:
            state.rewind_progress(mark)  # the next save writes these parts again
            raise
