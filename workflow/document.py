"""A workflow schema as a graph: every node (loop bodies included) by id, with its edges.

Built from FlowGram schema JSON without mutating it (FlowGram's ``flatSchema``
deletes ``blocks`` and ``edges`` from the caller's dict).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

#: Node data keys that describe the node's interface rather than its behaviour.
_DECLARE_KEYS = ("title", "inputsValues", "inputs", "outputs")
DEFAULT_OUTPUT_PORT = "defaultOutput"
#: Nodes that end a path: no next nodes expected.
TERMINAL_TYPES = frozenset({"end", "block-end", "break", "continue"})


@dataclass
class WorkflowNode:
    """One node, flattened out of its level."""

    id: str
    type: str
    #: what the executor sees (and the snapshot shows): data without title/inputs/outputs/inputsValues
    data: dict[str, Any]
    title: str
    inputs_schema: dict[str, Any] | None
    outputs_schema: dict[str, Any] | None
    inputs_values: dict[str, Any] | None
    #: the loop node this node is a block of, if any
    parent_id: str | None = None
    #: ids of this node's blocks (loop body)
    block_ids: list[str] = field(default_factory=list)
    #: predecessors on the same level
    prev: list[str] = field(default_factory=list)
    #: output port → successors on the same level
    next_by_port: dict[str, list[str]] = field(default_factory=dict)

    @property
    def next(self) -> list[str]:
        return [target for targets in self.next_by_port.values() for target in targets]


class WorkflowDocument:
    """All nodes of a schema by id; the top level's start and end; loop bodies' block-start.

    :raises ValueError: for edges naming missing nodes (validation reports these first).
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = copy.deepcopy(schema)
        self.nodes: dict[str, WorkflowNode] = {}
        self._add_level(self.schema.get("nodes", []), self.schema.get("edges", []), parent_id=None)
        self.global_schema: dict[str, Any] | None = self.schema.get("globalVariable")

    def _add_level(self, nodes: list[dict[str, Any]], edges: list[dict[str, Any]], parent_id: str | None) -> None:
        level: list[str] = []
        for raw in nodes:
            data = dict(raw.get("data") or {})
            node = WorkflowNode(
                id=raw["id"],
                type=raw["type"],
                data={k: v for k, v in data.items() if k not in _DECLARE_KEYS},
                title=data.get("title") or raw["id"],
                inputs_schema=data.get("inputs"),
                outputs_schema=data.get("outputs"),
                inputs_values=data.get("inputsValues"),
                parent_id=parent_id,
            )
            self.nodes[node.id] = node
            level.append(node.id)
            if raw.get("blocks"):
                node.block_ids = [block["id"] for block in raw["blocks"]]
                self._add_level(raw["blocks"], raw.get("edges") or [], parent_id=node.id)
        for edge in edges:
            source, target = edge["sourceNodeID"], edge["targetNodeID"]
            if source not in self.nodes or target not in self.nodes:
                missing = source if source not in self.nodes else target
                raise ValueError(f"Invalid edge schema ID: {missing}")
            port = edge.get("sourcePortID") or DEFAULT_OUTPUT_PORT
            self.nodes[source].next_by_port.setdefault(port, []).append(target)
            if source not in self.nodes[target].prev:
                self.nodes[target].prev.append(source)

    def find(self, node_type: str, parent_id: str | None = None) -> WorkflowNode | None:
        """The first node of ``node_type`` on the level of ``parent_id`` (None = top level)."""
        for node in self.nodes.values():
            if node.type == node_type and node.parent_id == parent_id:
                return node
        return None

    @property
    def start(self) -> WorkflowNode:
        node = self.find("start")
        if node is None:
            raise ValueError("Workflow schema must have a start node")
        return node

    def reachable(self, starts: list[str]) -> set[str]:
        """Every node reachable from ``starts`` on their level (starts included)."""
        seen: set[str] = set()
        stack = list(starts)
        while stack:
            node_id = stack.pop()
            if node_id in seen:
                continue
            seen.add(node_id)
            stack.extend(self.nodes[node_id].next)
        return seen
