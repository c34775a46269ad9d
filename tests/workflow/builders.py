"""Small builders of FlowGram schema pieces, shared by the workflow, task API and task page tests."""

from __future__ import annotations

from typing import Any


def node(node_id: str, node_type: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, "meta": {"position": {"x": 0, "y": 0}}, "data": data}


def edge(source: str, target: str, port: str | None = None) -> dict[str, Any]:
    found = {"sourceNodeID": source, "targetNodeID": target}
    if port:
        found["sourcePortID"] = port
    return found


def ref(*path: Any) -> dict[str, Any]:
    return {"type": "ref", "content": list(path)}


def obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}
