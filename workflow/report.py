"""Statuses, snapshots and messages of one task, exported as FlowGram's ``IReport``."""

from __future__ import annotations

import copy
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
MESSAGE_TYPES = ("log", "info", "debug", "error", "warning")
#: Input names whose values never appear in reports.
SECRET_INPUTS = frozenset({"apiKey", "api_key", "apikey", "authorization", "Authorization", "password", "token"})
MASK = "******"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Status:
    """FlowGram's ``StatusData``."""

    status: str = "pending"
    start_time: int | None = None
    end_time: int | None = None

    def set(self, status: str) -> None:
        if self.status in TERMINAL_STATUSES and status not in TERMINAL_STATUSES:
            # a loop runs its body nodes again: a new run starts a new clock
            self.end_time = None
        if status == "processing":
            self.start_time = now_ms()
            self.end_time = None
        elif status in TERMINAL_STATUSES:
            self.end_time = now_ms()
        self.status = status

    @property
    def terminated(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def export(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status, "terminated": self.terminated}
        if self.start_time is not None:
            data["startTime"] = self.start_time
        if self.end_time is not None:
            data["endTime"] = self.end_time
        if self.start_time is None:
            data["timeCost"] = 0
        else:
            data["timeCost"] = (self.end_time or now_ms()) - self.start_time
        return data


def mask_secrets(values: Any) -> Any:
    """A copy of ``values`` with secret-looking keys masked (apiKey, password, ...)."""
    if isinstance(values, dict):
        return {k: (MASK if k in SECRET_INPUTS and v not in (None, "") else mask_secrets(v)) for k, v in values.items()}
    if isinstance(values, list):
        return [mask_secrets(v) for v in values]
    return values


@dataclass
class TaskState:
    """Everything a report shows about a task, kept while it runs."""

    task_id: str
    inputs: dict[str, Any]
    workflow: Status = field(default_factory=Status)
    nodes: dict[str, Status] = field(default_factory=dict)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {t: [] for t in MESSAGE_TYPES})
    outputs: dict[str, Any] = field(default_factory=dict)

    def node_status(self, node_id: str) -> Status:
        return self.nodes.setdefault(node_id, Status())

    def add_message(self, kind: str, message: str, node_id: str | None = None) -> None:
        entry: dict[str, Any] = {"id": uuid.uuid4().hex, "type": kind, "message": message, "timestamp": now_ms()}
        if node_id is not None:
            entry["nodeID"] = node_id
        self.messages[kind].append(entry)

    def new_snapshot(self, node_id: str, data: dict[str, Any]) -> dict[str, Any]:
        snapshot = {"id": uuid.uuid4().hex, "nodeID": node_id, "inputs": {}, "outputs": {}, "data": data}
        self.snapshots.append(snapshot)
        return snapshot

    def export(self) -> dict[str, Any]:
        """FlowGram's report; ``id`` is the task ID and secrets are masked."""
        reports: dict[str, Any] = {}
        for node_id, status in self.nodes.items():
            reports[node_id] = {"id": node_id, **status.export(), "snapshots": []}
        for snapshot in self.snapshots:
            report = reports.get(snapshot["nodeID"])
            if report is not None:
                shown = dict(snapshot)
                shown["inputs"] = mask_secrets(snapshot["inputs"])
                shown["outputs"] = mask_secrets(snapshot["outputs"])
                report["snapshots"].append(copy.deepcopy(shown))
        return {
            "id": self.task_id,
            "inputs": mask_secrets(copy.deepcopy(self.inputs)),
            "outputs": mask_secrets(copy.deepcopy(self.outputs)),
            "workflowStatus": self.workflow.export(),
            "reports": reports,
            "messages": copy.deepcopy(self.messages),
        }
