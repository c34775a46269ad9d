"""The pieces of ``flowgram_gen``'s workflows: value kinds, operators, node/edge builders, broken copies.

See :mod:`tests.workflow.flowgram_gen` for the generator itself.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Any

# Left type -> operators FlowGram's condition rules accept for it (right-hand type in brackets).
OPERATORS: dict[str, list[str]] = {
    # is_empty/is_not_empty on strings: a documented difference (string-is-empty), left to its own case
    "string": ["eq", "neq", "contains", "not_contains", "in", "nin"],
    "number": ["eq", "neq", "gt", "gte", "lt", "lte", "in", "nin", "is_empty", "is_not_empty"],
    "integer": ["eq", "neq", "gt", "gte", "lt", "lte", "in", "nin", "is_empty", "is_not_empty"],
    "boolean": ["eq", "neq", "is_true", "is_false", "in", "nin", "is_empty", "is_not_empty"],
    "object": ["is_empty", "is_not_empty"],
    "array": ["is_empty", "is_not_empty"],
}
NO_RIGHT = {"is_empty", "is_not_empty", "is_true", "is_false"}
# strings the workflows start from; no "~" (see http-url-encoding in docs/flowgram-differences.md)
WORDS = ["alpha", "beta", "gamma", "", "Δelta", "a b", "x{y}", "42", "true", "a*b(c)!", "q=1&r"]
HEADER_TEXTS = ["plain", " padded\t", "a,b", "x=1; y=2", "caf\u00e9", ""]


@dataclass
class Var:
    """A value a node may refer to: its ref path and JSON-schema type (``items`` for arrays)."""

    path: list[str]
    type: str
    items: str | None = None


@dataclass
class Scope:
    """What a segment may refer to, and where it sits (loop depth, the loop's id for break/continue).

    ``stops``: whether a break/continue may end a path here. Not on one branch of a fan-out: there both
    engines race (the join after it runs only if its other branches finish after the condition skipped
    the rest of this one), so the two engines' runs are not comparable.
    """

    vars: list[Var]
    loop: str | None = None
    depth: int = 0
    stops: bool = True

    def child(self, **changes: Any) -> Scope:
        return Scope(list(self.vars), changes.get("loop", self.loop), changes.get("depth", self.depth),
                     changes.get("stops", self.stops))


@dataclass
class Graph:
    """The nodes and edges of one level (the workflow, or a loop's body)."""

    nodes: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)

    def edge(self, source: str, target: str, port: str | None = None) -> None:
        edge = {"sourceNodeID": source, "targetNodeID": target}
        if port is not None:
            edge["sourcePortID"] = port
        self.edges.append(edge)


def node(node_id: str, node_type: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, "meta": {"position": {"x": 0, "y": 0}}, "data": data}


def ref(path: list[str]) -> dict[str, Any]:
    return {"type": "ref", "content": list(path)}


def const(value: Any) -> dict[str, Any]:
    return {"type": "constant", "content": value}


def invalidate(rng: random.Random, schema: dict[str, Any],
               inputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A broken copy of a valid case, and what was broken."""
    schema, inputs = copy.deepcopy(schema), copy.deepcopy(inputs)
    how = rng.choice(["cycle", "no_end", "two_starts", "wrong_input_type", "missing_required", "unknown_edge"])
    if how == "cycle":
        schema["edges"].append({"sourceNodeID": schema["edges"][-1]["sourceNodeID"], "targetNodeID": "start_0"})
    elif how == "no_end":
        schema["nodes"] = [n for n in schema["nodes"] if n["type"] != "end"]
        schema["edges"] = [e for e in schema["edges"] if e["targetNodeID"] != "end_0"]
    elif how == "two_starts":
        schema["nodes"].append(node("start_1", "start", outputs={"type": "object", "properties": {}}))
        schema["edges"].append({"sourceNodeID": "start_1", "targetNodeID": "end_0"})
    elif how == "unknown_edge":
        schema["edges"].append({"sourceNodeID": "start_0", "targetNodeID": "nowhere_9"})
    elif how == "wrong_input_type":
        inputs["s_int"] = rng.choice(["7", 1.5, True, [1]])
    else:
        start = schema["nodes"][0]["data"]["outputs"]
        start["required"] = sorted(set(start.get("required", [])) | {"s_missing"})
        start["properties"]["s_missing"] = {"type": "string"}
    return schema, inputs, how
