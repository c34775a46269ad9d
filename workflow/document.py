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
            data = raw.get("data")
            data = dict(data) if isinstance(data, dict) else {}  # JS reads no fields of an array or a string
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


# -- the kernel format of seeds/003 ("runtime_py_core"), read as FlowGram's -------------------------

#: The port names the kernel format gives a node's single output and input.
_KERNEL_DEFAULT_PORTS = frozenset({"out", "in", DEFAULT_OUTPUT_PORT})


def normalise_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``schema`` in FlowGram's format and a warning saying what changed; ``(schema, [])`` when nothing did.

    The Python kernel documented in ``seeds/003_*`` writes nodes with a top-level ``position`` and
    ``ports`` (no ``meta``, maybe no ``data``) and edges as ``{"source": {"nodeId", "portId"},
    "target": {...}}``. Such nodes get ``meta.position`` and ``data`` (a start node without outputs
    declares an empty object, so the task runs with no variables instead of failing validation);
    such edges get ``sourceNodeID``/``targetNodeID``, and ``sourcePortID`` when the port is not the
    node's only (default) output. Anything already in FlowGram's format is left as it is, so
    FlowGram's own documents keep FlowGram's validation. Never changes the caller's dict.
    """
    counts = {"nodes": 0, "edges": 0}
    empty_starts: list[str] = []
    normalised = _normalise_level(schema, counts, empty_starts)
    if not counts["nodes"] and not counts["edges"]:
        return schema, []
    changed = ", ".join(f"{n} {kind[:-1] if n == 1 else kind}" for kind, n in counts.items() if n)
    starts = "".join(f'; start node "{s}" had no "data.outputs": it declares no variables' for s in empty_starts)
    return normalised, [
        f"The schema was normalised to FlowGram's format ({changed} in the kernel format: top-level "
        '"position"/"ports" became "meta.position", edges\' "source"/"target" objects became '
        f'"sourceNodeID"/"targetNodeID"/"sourcePortID"){starts}'
    ]


def _normalise_level(level: dict[str, Any], counts: dict[str, int], empty_starts: list[str]) -> dict[str, Any]:
    """``level`` (the schema or a loop node) with its nodes and edges in FlowGram's format."""
    key = "blocks" if "blocks" in level else "nodes"
    nodes, edges = level.get(key), level.get("edges", [] if key == "blocks" else None)
    if not isinstance(nodes, list) or not isinstance(edges, list):
        return level  # validation names what is wrong
    out_ports = {n["id"]: _out_ports(n) for n in nodes if isinstance(n, dict) and isinstance(n.get("id"), str)}
    new_nodes = [_normalise_node(n, counts, empty_starts) for n in nodes]
    new_edges = [_normalise_edge(e, out_ports, counts) for e in edges]
    if all(a is b for a, b in zip(new_nodes + new_edges, nodes + edges)):
        return level
    return {**level, key: new_nodes, "edges": new_edges}


def _out_ports(node: dict[str, Any]) -> list[Any]:
    ports = node.get("ports")
    outs = ports.get("out") if isinstance(ports, dict) else None
    return [p.get("id") for p in outs if isinstance(p, dict)] if isinstance(outs, list) else []


def _normalise_node(node: Any, counts: dict[str, int], empty_starts: list[str]) -> Any:
    if not isinstance(node, dict):
        return node
    if "blocks" in node:
        node = _normalise_level(node, counts, empty_starts)  # a loop body
    if "meta" in node or not ("position" in node or "ports" in node):
        return node
    counts["nodes"] += 1
    rest = {k: v for k, v in node.items() if k not in ("position", "ports")}
    data = rest.get("data", {})
    if isinstance(data, dict) and rest.get("type") == "start" and "outputs" not in data:
        data = {**data, "outputs": {"type": "object", "properties": {}}}
        empty_starts.append(str(rest.get("id")))
    position = node.get("position")
    return {**rest, "meta": {"position": position if isinstance(position, dict) else {"x": 0, "y": 0}},
            "data": data}


def _is_kernel_edge(edge: Any) -> bool:
    return isinstance(edge, dict) and "sourceNodeID" not in edge and isinstance(edge.get("source"), dict)


def _normalise_edge(edge: Any, out_ports: dict[str, list[Any]], counts: dict[str, int]) -> Any:
    if not _is_kernel_edge(edge):
        return edge
    counts["edges"] += 1
    source = edge["source"]
    target = edge.get("target") if isinstance(edge.get("target"), dict) else {}
    new: dict[str, Any] = {"sourceNodeID": source.get("nodeId"), "targetNodeID": target.get("nodeId")}
    port = source.get("portId")
    ports = out_ports.get(source["nodeId"], []) if isinstance(source.get("nodeId"), str) else []
    if port not in (None, "") and not (port in _KERNEL_DEFAULT_PORTS and len(ports) <= 1) and ports != [port]:
        new["sourcePortID"] = port
    target_port = target.get("portId")
    if target_port not in (None, "") and target_port not in _KERNEL_DEFAULT_PORTS:
        new["targetPortID"] = target_port
    return new
