"""Every JSON body goes through one parser: too deep, broken or lone-surrogate JSON is a 400, never a 500.

The routes are walked from the app's URL map, so a route added later is covered (or, if its URL
needs a value this file does not know, the test asks for one).
"""

from __future__ import annotations

import json

import pytest
from flask import Flask
from flask.testing import FlaskClient

from webapp.guards.jsonbody import MAX_DEPTH, JSONInputError, loads_json

#: A value for each URL variable of a route with a JSON body: a real op, flow or function, so that
#: the route gets as far as reading the body.
URL_VALUES = {
    "/api/ops/<name>": {"name": "echo_tool"},
    "/api/flows/<name>": {"name": "chat"},
    "/invoke/<name>": {"name": "word_count"},
}
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
#: Nested ~1,000 levels: json.loads itself raises RecursionError on it.
DEEP = "[" * 1000 + "]" * 1000
#: Deep enough to pass json.loads, deeper than we accept.
DEEPER_THAN_ALLOWED = '{"inputs": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}"
#: json.loads accepts the escape; the string cannot be encoded later (upstream request, SQLite, logs).
SURROGATES = [
    '{"message": "\\ud800", "inputs": {"text": "\\ud800"}, "schema": "\\ud800", "taskID": "\\ud800"}',
    '{"inputs": {"text": "ok", "\\udfff": 1}}',  # in a key
    b'{"message": "\xed\xa0\x80", "inputs": {"text": "\xed\xa0\x80"}}',  # a surrogate encoded as UTF-8 bytes
]


# app and client: tests/webapp/conftest.py


def json_routes(app: Flask) -> list[tuple[str, str]]:
    """``(method, url)`` of every API route that takes a body: /api/*, /invoke/*, /v1/*."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/api/", "/invoke/", "/v1/")):
            continue
        for method in sorted(set(rule.methods or ()) & set(UNSAFE)):
            values = URL_VALUES.get(rule.rule, {})
            missing = set(rule.arguments) - set(values)
            assert not missing, f"add a value for {sorted(missing)} of {rule.rule} to URL_VALUES"
            routes.append((method, rule.rule if not rule.arguments else _build(rule.rule, values)))
    return routes


def _build(rule: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        rule = rule.replace(f"<{name}>", value)
    return rule


def test_the_walk_finds_the_documented_routes(app: Flask) -> None:
    found = {url for _, url in json_routes(app)}
    assert {"/api/chat", "/api/ops/echo_tool", "/api/flows", "/api/flows/chat", "/invoke/word_count",
            "/api/task/run", "/api/task/validate", "/api/task/cancel"} <= found


@pytest.mark.parametrize(("label", "body", "named"), [
    ("1,000 levels", DEEP, "nested too deeply"),
    ("just too deep", DEEPER_THAN_ALLOWED, "nested too deeply"),
    *[(f"surrogate {i}", body, "lone surrogate") for i, body in enumerate(SURROGATES)],
    ("NaN", '{"message": NaN, "inputs": {"text": NaN}}', "NaN is not a JSON value"),
    ("broken", '{"message": "hi"', "not valid JSON"),
])
def test_every_json_route_answers_400_naming_the_problem(
    app: Flask, client: FlaskClient, label: str, body: str | bytes, named: str
) -> None:
    failures = []
    for method, url in json_routes(app):
        response = client.open(url, method=method, data=body, content_type="application/json")
        error = (response.get_json(silent=True) or {}).get("error") or {}
        kind = error.get("code") if url.startswith("/v1/") else error.get("type")  # /v1: OpenAI's shape
        if response.status_code != 400 or kind != "invalid_json" or named not in error.get("message", ""):
            failures.append(f"{method} {url}: {response.status_code} {response.get_data(as_text=True)[:200]}")
    assert failures == []


def test_the_message_says_where_the_surrogate_is(client: FlaskClient) -> None:
    response = client.post("/api/chat", data='{"messages": [{"role": "user", "content": "a\\udc00"}]}',
                           content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"]["message"] == ("the request body holds a lone surrogate (\\udc00) at "
                                                 "messages.0.content: strings must be valid Unicode")


def test_a_pair_of_surrogates_is_one_character_and_fine(client: FlaskClient) -> None:
    response = client.post("/api/ops/echo_tool", data='{"inputs": {"text": "\\ud83d\\ude00"}}',
                           content_type="application/json")
    assert response.status_code == 200 and response.json["answer"] == "Echo: \U0001F600"


def test_deep_but_allowed_bodies_still_work(client: FlaskClient) -> None:
    nested: object = "x"
    for _ in range(MAX_DEPTH - 2):  # the body and its "inputs" objects, then the lists: MAX_DEPTH levels
        nested = [nested]
    response = client.post("/api/flows/chat", json={"inputs": {"query": "hi", "extra": nested}})
    assert response.status_code == 200, response.get_data(as_text=True)


def test_invoke_form_field_inputs_goes_through_the_same_parser(client: FlaskClient) -> None:
    for text, named in [(DEEP, "nested too deeply"), ('{"text": "\\ud800"}', "lone surrogate")]:
        response = client.post("/invoke/word_count", data={"inputs": text})
        assert response.status_code == 400, response.get_data(as_text=True)
        assert response.json["error"]["type"] == "invalid_json"
        assert named in response.json["error"]["message"] and "'inputs'" in response.json["error"]["message"]


def test_loads_json_names_what_it_reads() -> None:
    with pytest.raises(JSONInputError, match="^the form text is nested too deeply"):
        loads_json(DEEP, "the form text")
    assert loads_json(b'{"a": [1, 2.5, "\\u00e9"]}') == {"a": [1, 2.5, "é"]}


@pytest.mark.parametrize(("url", "field", "extra"), [
    ("/ops/chat", "messages", {}),  # a JSON form field of an op page
    ("/workflows", "workflow_schema", {"action": "load"}),  # the pasted workflow schema
])
@pytest.mark.parametrize(("text", "named"), [
    (DEEP, "nested too deeply"),
    ('[{"role": "user", "content": "\\ud800"}]', "lone surrogate"),
])
def test_pages_with_json_fields_answer_400_naming_the_problem(
    client: FlaskClient, url: str, field: str, extra: dict, text: str, named: str
) -> None:
    html = client.get(url).get_data(as_text=True)
    token = html.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    response = client.post(url, data={"csrf_token": token, field: text, **extra})
    assert response.status_code == 400
    assert named in response.get_data(as_text=True)
