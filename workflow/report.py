"""Statuses, snapshots and messages of one task, exported as FlowGram's ``IReport``."""

from __future__ import annotations

import copy
import itertools
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: A task's statuses, in the order a task moves through them (FlowGram's, plus ``pending``).
STATUSES = ("pending", "processing", "succeeded", "failed", "canceled")
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})
MESSAGE_TYPES = ("log", "info", "debug", "error", "warning")
#: Input names whose values never appear in reports.
SECRET_INPUTS = frozenset({"apiKey", "api_key", "apikey", "authorization", "Authorization", "password", "token"})
#: The same names and a few more, compared case-insensitively without ``-``, ``_`` and spaces (so
#: ``X-Api-Key``, ``API_KEY`` and ``proxy-authorization`` are secret too).
_SECRET_NAMES = frozenset({"apikey", "xapikey", "authorization", "proxyauthorization", "password", "passwd",
                           "token", "accesstoken", "refreshtoken", "secret", "clientsecret", "cookie"})
MASK = "******"
#: Query parameters that carry a credential in URLs (``?key=``, ``?access_token=``, ``?sig=``), besides
#: the secret names above.
_SECRET_PARAMS = frozenset({"key", "sig", "signature", "auth"})


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Status:
    """FlowGram's ``StatusData``."""

    status: str = "pending"
    start_time: int | None = None
    end_time: int | None = None
    #: the task's change counter (see :meth:`TaskState.node_status`); each :meth:`set` takes its next value
    clock: Callable[[], int] | None = field(default=None, repr=False, compare=False)
    #: position of the latest change among all status changes of the task (exported as ``seq``), so a
    #: reader of the stored report can tell which changes it has seen: event streams resume from it
    seq: int | None = None

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
        if self.clock is not None:
            self.seq = self.clock()

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
        if self.seq is not None:
            data["seq"] = self.seq
        return data


def is_secret_name(key: Any) -> bool:
    """Whether a value stored under ``key`` is a secret (``apiKey``, ``Authorization``, ``X-Api-Key``...)."""
    return key in SECRET_INPUTS or re.sub(r"[-_ ]", "", str(key)).lower() in _SECRET_NAMES


def _masked(value: Any) -> Any:
    """A secret value masked: every non-empty leaf becomes :data:`MASK`. A dict keeps its ``type``
    (a flow value ``{"type": "constant", "content": "sk-..."}`` or a JSON schema ``{"type": "string"}``
    still says what it is), so a workflow schema stays readable."""
    if value in (None, ""):
        return value
    if isinstance(value, dict):
        return {k: (v if k == "type" and isinstance(v, str) else _masked(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return MASK


def mask_secrets(values: Any) -> Any:
    """A copy of ``values`` with the values of secret-looking keys masked (apiKey, Authorization,
    password, ...), at any depth, and the credentials of URLs (see :func:`mask_url`). The one mask of
    every rendering of a task: its report, pages, lists and event streams, and its workflow schema (an
    llm node's ``apiKey`` and ``apiHost``, an http node's headers and URL)."""
    if isinstance(values, dict):
        return {k: (_masked(v) if is_secret_name(k) else mask_secrets(v)) for k, v in values.items()}
    if isinstance(values, list):
        return [mask_secrets(v) for v in values]
    if isinstance(values, str) and values.startswith(("http://", "https://")):
        return mask_url(values)
    return values


def mask_url(url: str) -> str:
    """``url`` with its user info and the values of secret-looking query parameters masked:
    ``https://sk-1@h/v1?key=k&a=1`` → ``https://******@h/v1?key=******&a=1``."""
    head, hash_, fragment = url.partition("#")
    head, question, query = head.partition("?")
    scheme, sep, rest = head.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = MASK + "@" + authority.rpartition("@")[2]
    if query:
        pairs = []
        for pair in query.split("&"):
            name, eq, value = pair.partition("=")
            secret = eq and value and (is_secret_name(name) or name.lower() in _SECRET_PARAMS)
            pairs.append(f"{name}={MASK}" if secret else pair)
        query = "&".join(pairs)
    return f"{scheme}{sep}{authority}{slash}{path}{question}{query}{hash_}{fragment}"


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
    #: numbers the status changes of the workflow and its nodes: 1, 2, 3... (see ``Status.seq``)
    changes: Callable[[], int] = field(default_factory=lambda: itertools.count(1).__next__, repr=False)
    #: node id -> its snapshots, oldest first (a node's snapshots run one after another)
    _by_node: dict[str, list[dict[str, Any]]] = field(default_factory=dict, init=False, repr=False, compare=False)
    #: node id / message type -> how many of its snapshots / messages :meth:`export_progress` handed out
    _handed: dict[tuple[str, str], int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.workflow.clock = self.changes

    def node_status(self, node_id: str) -> Status:
        status = self.nodes.get(node_id)
        if status is None:
            status = self.nodes[node_id] = Status(clock=self.changes)
        return status

    def add_message(self, kind: str, message: str, node_id: str | None = None) -> None:
        message = storable_text(message)  # e.g. a script's error naming a lone surrogate
        entry: dict[str, Any] = {"id": uuid.uuid4().hex, "type": kind, "message": message, "timestamp": now_ms()}
        if node_id is not None:
            entry["nodeID"] = node_id
        self.messages[kind].append(entry)

    def new_snapshot(self, node_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """A node's new snapshot; ``outputs`` is added when it succeeds (a failed one has none, as in FlowGram)."""
        snapshot = {"id": uuid.uuid4().hex, "nodeID": node_id, "inputs": {}, "data": data}
        self.snapshots.append(snapshot)
        self._by_node.setdefault(node_id, []).append(snapshot)
        return snapshot

    def export(self) -> dict[str, Any]:
        """FlowGram's report; ``id`` is the task ID and secrets are masked."""
        return self._export({})

    def export_progress(self) -> tuple[dict[str, Any], list[ReportPart]]:
        """The report as ``(rest, new parts)``, so that saving progress costs the same at a loop's
        10,000th iteration as at its first.

        The new parts are the workflow's inputs (the first time: a loop's items are often among them),
        the snapshots that can no longer change (every one of a node but a running node's latest) and
        the messages that this method has not returned before, masked and copied once each, oldest
        first; ``rest`` is the report without any of them: its size depends on the number of nodes,
        not on how many times they ran nor on the inputs. A store keeps the parts and gives back
        ``merge_report_parts(rest, all parts)``, which is :meth:`export`.
        """
        parts: list[ReportPart] = []
        if ("inputs", "") not in self._handed:
            parts.append(("inputs", "", {"inputs": mask_secrets(copy.deepcopy(self.inputs))}))
            self._handed["inputs", ""] = 1
        for node_id, snapshots in self._by_node.items():
            handed = self._handed.get(("snapshot", node_id), 0)
            status = self.nodes.get(node_id)
            final = len(snapshots) - (0 if status is None or status.terminated else 1)
            parts += [("snapshot", node_id, _shown(snapshot)) for snapshot in snapshots[handed:final]]
            self._handed["snapshot", node_id] = max(handed, final)
        for kind, messages in self.messages.items():
            handed = self._handed.get(("message", kind), 0)
            parts += [("message", kind, copy.deepcopy(message)) for message in messages[handed:]]
            self._handed["message", kind] = len(messages)
        return self._export(self._handed), parts

    def progress_mark(self) -> dict[tuple[str, str], int]:
        """Where :meth:`export_progress` stands; :meth:`rewind_progress` goes back to it when the store
        failed to save what it returned, so the next call returns those parts again (none is lost)."""
        return dict(self._handed)

    def rewind_progress(self, mark: dict[tuple[str, str], int]) -> None:
        """Go back to ``mark`` (from :meth:`progress_mark`)."""
        self._handed = dict(mark)

    def _export(self, handed: dict[tuple[str, str], int]) -> dict[str, Any]:
        """The report without the first ``handed[kind, key]`` snapshots of each node and messages of each type."""
        reports: dict[str, Any] = {}
        for node_id, status in self.nodes.items():
            snapshots = self._by_node.get(node_id, [])[handed.get(("snapshot", node_id), 0):]
            reports[node_id] = {"id": node_id, **status.export(), "snapshots": [_shown(s) for s in snapshots]}
        return {
            "id": self.task_id,
            "inputs": {} if ("inputs", "") in handed else mask_secrets(copy.deepcopy(self.inputs)),
            "outputs": mask_secrets(copy.deepcopy(self.outputs)),
            "workflowStatus": self.workflow.export(),
            "reports": reports,
            "messages": {kind: copy.deepcopy(messages[handed.get(("message", kind), 0):])
                         for kind, messages in self.messages.items()},
        }


#: ``(kind, key, value)``: ``("snapshot", nodeID, snapshot)``, ``("message", type, message)`` or
#: ``("inputs", "", {"inputs": the report's inputs})``.
ReportPart = tuple[str, str, dict[str, Any]]


def _shown(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A snapshot as a report shows it: a masked copy."""
    shown = dict(snapshot)
    for part in ("inputs", "outputs", "data"):  # data: the node's own, e.g. an http node's headers
        if part in shown:
            shown[part] = mask_secrets(shown[part])
    return copy.deepcopy(shown)


def merge_report_parts(report: dict[str, Any] | None, parts: list[ReportPart]) -> dict[str, Any] | None:
    """The whole report from :meth:`TaskState.export_progress`'s rest and every part it returned, in
    order: each node's stored snapshots and each type's stored messages go before those in ``report``.
    Changes and returns ``report``."""
    if report is None or not parts:
        return report
    snapshots: dict[str, list[dict[str, Any]]] = {}
    messages: dict[str, list[dict[str, Any]]] = {}
    for kind, key, value in parts:
        if kind == "inputs":
            report["inputs"] = value["inputs"]
        else:
            (snapshots if kind == "snapshot" else messages).setdefault(key, []).append(value)
    reports = report.setdefault("reports", {})
    for node_id, stored in snapshots.items():
        node = reports.setdefault(node_id, {"id": node_id, "snapshots": []})
        node["snapshots"] = stored + list(node.get("snapshots") or [])
    shown = report.setdefault("messages", {})
    for kind, stored in messages.items():
        shown[kind] = stored + list(shown.get(kind) or [])
    return report


def storable_text(text: str) -> str:
    """``text`` with lone surrogates (which UTF-8, hence the task store, cannot hold) written as ``\\udXXX``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
