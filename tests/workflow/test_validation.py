"""workflow.validation: FlowGram's schema validators and JSON-schema input validator, message for message."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from workflow.validation import validate_inputs, validate_schema, validate_task

CONFORMANCE = Path(__file__).resolve().parent / "flowgram"  # FlowGram's own cases, copied in: see its README.md


def load(name: str) -> Any:
    return json.loads((CONFORMANCE / name).read_text())


def expected_results(key: str) -> list[dict[str, Any]]:
    cases = load("expected-results.json")[key]
    return [case for case in cases if key != "cases" or case["id"].startswith("validate_inputs")]


def n(node_id: str, node_type: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, "meta": {"position": {"x": 0, "y": 0}}, "data": {}, **extra}


def e(source: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"sourceNodeID": source, "targetNodeID": target, **extra}


def loop(blocks: list[dict[str, Any]], edges: list[dict[str, Any]]) -> dict[str, Any]:
    return n("loop_0", "loop", blocks=blocks, edges=edges)


def flow(*middle: dict[str, Any], edges: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    nodes = [n("start_0", "start", data={"outputs": {"type": "object", "properties": {}}}), *middle, n("end_0", "end")]
    if edges is None:
        ids = [node["id"] for node in nodes]
        edges = [e(a, b) for a, b in zip(ids, ids[1:])]
    return {"nodes": nodes, "edges": edges}


@pytest.mark.parametrize("case", expected_results("validationCases"), ids=lambda c: c["id"])
def test_flowgram_validation_cases(case: dict[str, Any]) -> None:
    schema = copy.deepcopy(case["schema"])
    errors = validate_task(schema, case.get("inputs") or {})
    assert (not errors) == case["expected"]["valid"]
    assert errors == case["expected"].get("errors", [])
    assert schema == case["schema"]  # never mutated


@pytest.mark.parametrize("case", expected_results("cases"), ids=lambda c: c["id"])
def test_validate_inputs_fixture(case: dict[str, Any]) -> None:
    schema = load("validate-inputs.json")
    expected = [message["message"] for message in case["expect"].get("errorMessages", [])]
    assert validate_task(schema, case["inputs"]) == expected
    start = schema["nodes"][0]["data"]["outputs"]
    assert validate_inputs(start, case["inputs"]) == expected


def test_valid_loop() -> None:
    body = [n("block_start_0", "block-start"), n("llm_0", "llm"), n("block_end_0", "block-end")]
    schema = flow(loop(body, [e("block_start_0", "llm_0"), e("llm_0", "block_end_0")]))
    before = copy.deepcopy(schema)
    assert validate_schema(schema) == []
    assert schema == before


@pytest.mark.parametrize(("blocks", "message"), [
    ([n("b", "block-start")], "Workflow block schema must have an block-end node"),
    ([n("b", "block-end")], "Workflow block schema must have a block-start node"),
    ([n("a", "block-start"), n("b", "block-start"), n("c", "block-end")],
     "Workflow block schema must have only one block-start node"),
    ([n("a", "block-start"), n("b", "block-end"), n("c", "block-end")],
     "Workflow block schema must have only one block-end node"),
    ([], "Workflow block schema must have a block-start node and a block-end node"),
])
def test_block_start_end(blocks: list[dict[str, Any]], message: str) -> None:
    assert validate_schema(flow(loop(blocks, []))) == [message]


def test_nested_edges_and_formats() -> None:
    body = [n("bs", "block-start"), n("be", "block-end")]
    assert validate_schema(flow(loop(body, [e("bs", "ghost")]))) == [
        'Workflow schema edge target node "ghost" not exist']
    # a nested node's path starts again at nodes[0] (FlowGram validates the sub-canvas as a schema)
    assert validate_schema(flow(loop([*body, {"id": "x"}], [e("bs", "be")]))) == [
        "nodes[2].type must be a non-empty string"]
    assert validate_schema(flow(loop(body, [e("bs", "be"), e("be", "bs")]))) == [
        "Workflow schema contains a cycle, which is not allowed"]


@pytest.mark.parametrize(("schema", "errors"), [
    (None, ["Workflow schema must be a valid object",
            "Cannot destructure property 'nodes' of 'schema' as it is null.",
            "Cannot destructure property 'nodes' of 'schema' as it is null.",
            "Cannot read properties of null (reading 'nodes')"]),
    ("text", ["Workflow schema must be a valid object", "Cannot read properties of undefined (reading 'map')",
              "Cannot read properties of undefined (reading 'map')",
              "Cannot read properties of undefined (reading 'reduce')"]),
    ({"nodes": []}, ["Workflow schema must have a valid edges array",
                     "Cannot read properties of undefined (reading 'forEach')",
                     "Cannot read properties of undefined (reading 'forEach')",
                     "Workflow schema must have a start node and an end node"]),
    ({"nodes": [None], "edges": []}, ["nodes[0] must be a valid object",
                                      "Cannot read properties of null (reading 'id')",
                                      "Cannot read properties of null (reading 'id')",
                                      "Cannot read properties of null (reading 'type')"]),
    ({"nodes": [n("s", "start"), n("e", "end")], "edges": "x"},
     ["Workflow schema must have a valid edges array", "edges.forEach is not a function",
      "edges.forEach is not a function"]),
])
def test_malformed_documents_give_javascripts_errors(schema: Any, errors: list[str]) -> None:
    assert validate_schema(schema) == errors


@pytest.mark.parametrize(("node", "message"), [
    ([], "nodes[1].id must be a non-empty string"),  # an array is an object in JavaScript
    (n(" ", "llm"), "nodes[1].id must be a non-empty string"),
    (n("x", ""), "nodes[1].type must be a non-empty string"),
    ({"id": "x", "type": "llm", "data": {}}, "nodes[1].meta must be a valid object"),
    ({"id": "x", "type": "llm", "meta": {}, "data": 0}, "nodes[1].data must be a valid object"),
    (n("x", "llm", blocks={}), "nodes[1].blocks must be an array if present"),
    (n("x", "llm", edges=None), "nodes[1].edges must be an array if present"),
    (n("x", "llm", data={"inputs": "x"}), "nodes[1].data.inputs must be a valid object if present"),
    (n("x", "llm", data={"outputs": None}), "nodes[1].data.outputs must be a valid object if present"),
    (n("x", "llm", data={"inputsValues": 1}), "nodes[1].data.inputsValues must be a valid object if present"),
    (n("x", "llm", data={"title": 1}), "nodes[1].data.title must be a string if present"),
])
def test_node_format(node: Any, message: str) -> None:
    schema = flow(node, edges=[e("start_0", "end_0")])
    assert validate_schema(schema)[0] == message


@pytest.mark.parametrize(("edge", "message"), [
    (None, "edges[0] must be a valid object"),
    (e("", "end_0"), "edges[0].sourceNodeID must be a non-empty string"),
    (e("start_0", "end_0", sourcePortID=1), "edges[0].sourcePortID must be a string if present"),
    (e("start_0", "end_0", targetPortID=None), "edges[0].targetPortID must be a string if present"),
])
def test_edge_format(edge: Any, message: str) -> None:
    assert validate_schema(flow(edges=[edge]))[0] == message


def test_one_error_per_validator_in_order() -> None:
    schema = {"nodes": [n("a", "llm"), n("b", "llm"), {"id": 1}],
              "edges": [e("a", "b"), e("b", "a"), e("a", "c"), e("d", "a")]}
    assert validate_schema(schema) == [
        "nodes[2].id must be a non-empty string",
        "Workflow schema contains a cycle, which is not allowed",
        'Workflow schema edge target node "c" not exist',
        "Workflow schema must have a start node and an end node",
    ]


SCHEMA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "ok": {"type": "boolean"},
        "color": {"type": "string", "enum": ["red", "green"]},
        "when": {"type": "date-time"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {"type": "object", "additionalProperties": {"type": "number"}},
        "scores": {"type": "map", "additionalProperties": {"type": "integer"}},
        "ref": {"$ref": "#/definitions/anything"},
        "loose": {},
    },
}


@pytest.mark.parametrize(("inputs", "message"), [
    ({"name": "a"}, None),
    ({"name": "a", "extra": [1]}, None),  # extra keys are allowed
    ({"name": "a", "ref": {"x": 1}}, None),
    ({}, 'Missing required property "name" at root'),
    ({"name": 1}, "Expected string at name, but got: number"),
    ({"name": None}, "Expected string at name, but got: object"),
    ({"name": "a", "count": 1.5}, "Expected integer at count, but got: 1.5"),
    ({"name": "a", "count": 2.0}, None),
    ({"name": "a", "count": True}, "Expected integer at count, but got: true"),
    ({"name": "a", "ratio": "1"}, 'Expected number at ratio, but got: "1"'),
    ({"name": "a", "ok": "yes"}, "Expected boolean at ok, but got: string"),
    ({"name": "a", "color": "blue"}, 'Value at color must be one of: red, green, but got: "blue"'),
    ({"name": "a", "when": "2000-01-01T00:00:00Z"}, 'Unknown type "date-time" at when'),
    ({"name": "a", "loose": 1}, 'Unknown type "undefined" at loose'),
    ({"name": "a", "tags": ["x", 2]}, "Expected string at tags[1], but got: number"),
    ({"name": "a", "tags": {}}, "Expected array at tags, but got: object"),
    ({"name": "a", "meta": []}, "Expected object at meta, but got: array"),
    ({"name": "a", "meta": None}, "Expected object at meta, but got: null"),
    ({"name": "a", "meta": {"x": 1, "y": "2"}}, 'Expected number at meta.y, but got: "2"'),
    ({"name": "a", "scores": {"x": 1.5}}, "Expected integer at scores.x, but got: 1.5"),
    ({"name": "a", "scores": "x"}, "Expected map at scores, but got: string"),
    ([], "Expected object at root, but got: array"),
])
def test_validate_inputs(inputs: Any, message: str | None) -> None:
    expected = [] if message is None else [f"JSON Schema validation failed: {message}"]
    assert validate_inputs(SCHEMA, inputs) == expected


def test_validate_inputs_javascript_errors() -> None:
    assert validate_inputs(None, {}) == [
        "JSON Schema validation failed: Validation error: Cannot read properties of undefined (reading '$ref')"]
    schema = {"type": "object", "properties": {"a": None}}
    assert validate_inputs(schema, {"a": 1}) == [
        "JSON Schema validation failed: Validation error: Cannot read properties of null (reading '$ref')"]
    loose = {"type": "object", "properties": {}, "additionalProperties": True}
    assert validate_inputs(loose, {"x": 1}) == ['JSON Schema validation failed: Unknown type "undefined" at x']


def test_validate_task_uses_the_start_outputs() -> None:
    schema = flow()
    outputs = {"type": "object", "required": ["q"], "properties": {"q": {"type": "string"}}}
    schema["nodes"][0]["data"]["outputs"] = outputs
    assert validate_task(schema, {"q": "hi"}) == []
    assert validate_task(schema, {}) == ['JSON Schema validation failed: Missing required property "q" at root']
    del schema["nodes"][0]["data"]["outputs"]
    assert validate_task(schema, {})[0].endswith("Cannot read properties of undefined (reading '$ref')")
    schema["edges"].append(e("end_0", "start_0"))
    assert validate_task(schema, {"q": 1}) == ["Workflow schema contains a cycle, which is not allowed"]
