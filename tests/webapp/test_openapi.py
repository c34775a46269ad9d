"""``/api/openapi.json``: OpenAPI 3.1 from the pydantic models, in step with the URL map and the routes.

The live check of behaviour against the spec is ``test_schemathesis.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from pydantic import ValidationError
from flask import Flask
from flask.testing import FlaskClient

from tests.fake_upstream import FakeUpstream
from webapp import create_app
from webapp import schemas as s
from webapp.errors import APIError
from webapp.openapi import OPERATIONS, build_spec, flask_path, openapi_path

KEY = "k" * 24
#: Path prefixes of the JSON API; every rule under them must be documented.
API_PREFIXES = ("/api", "/invoke", "/functions", "/v1", "/healthz", "/readyz")
#: Rules under those prefixes that are not JSON API operations: the docs themselves.
NOT_OPERATIONS = {"/api/docs", "/api/openapi.json"}
_IMPLICIT = {"HEAD", "OPTIONS"}


def _make(upstream: FakeUpstream, tmp_path: Path, **config: Any) -> Flask:
    return create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0",
                       "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db"), "FLOWBRIDGE_SECRET_KEY": "s" * 32,
                       **config})


@pytest.fixture
def app(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Flask]:
    from webapp.extensions import close_llm_client, close_workflow_runtime

    app = _make(upstream, tmp_path)
    yield app
    close_workflow_runtime(app)
    close_llm_client(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def spec(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.json  # type: ignore[return-value]


def _api_rules(app: Flask) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule in NOT_OPERATIONS or not rule.rule.startswith(API_PREFIXES):
            continue
        for method in set(rule.methods or ()) - _IMPLICIT:
            found.add((method, openapi_path(rule.rule)))
    return found


def test_every_documented_route_exists_and_every_api_route_is_documented(app: Flask, spec: dict[str, Any]) -> None:
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert documented == {(op.method, op.path) for op in OPERATIONS}  # the table drives the spec
    rules = _api_rules(app)
    assert documented - rules == set(), "documented but not served"
    assert rules - documented == set(), "served but not documented: add it to webapp.openapi.OPERATIONS"
    assert len(documented) == 22  # 18 + the OpenAI API's 4 (/v1)


def test_the_drift_check_notices_a_new_route(app: Flask) -> None:
    app.add_url_rule("/api/frobnicate", "frobnicate", lambda: "ok", methods=["DELETE"])
    documented = {(method.upper(), path) for path, item in build_spec(app)["paths"].items() for method in item}
    assert _api_rules(app) - documented == {("DELETE", "/api/frobnicate")}


def test_paths_convert_both_ways() -> None:
    assert openapi_path("/api/ops/<name>") == "/api/ops/{name}"
    assert openapi_path("/static/<path:filename>") == "/static/{filename}"
    assert flask_path("/invoke/{name}") == "/invoke/<name>"


def test_it_is_openapi_3_1_built_from_the_pydantic_models(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.1.0" and spec["info"]["title"] == "flowbridge"
    schemas = spec["components"]["schemas"]
    ref = "#/components/schemas/{model}"
    # The request body of /api/chat is ChatRequest's own JSON schema.
    chat = spec["paths"]["/api/chat"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatRequest"}
    expected = s.ChatRequest.model_json_schema(ref_template=ref)
    expected.pop("$defs")
    assert schemas["ChatRequest"] == expected
    assert schemas["ChatResponse"] == s.ChatResponse.model_json_schema(ref_template=ref, mode="serialization")
    # 200 is JSON or an event stream; the errors share one Error schema.
    ok = chat["responses"]["200"]["content"]
    assert ok["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatResponse"}
    assert ok["text/event-stream"]["schema"]["properties"]["data"]["contentSchema"] == {
        "$ref": "#/components/schemas/StreamEvent"}
    assert set(chat["responses"]) == {"200", "400", "413", "414", "415", "429", "502", "503", "504"}
    assert "Retry-After" in chat["responses"]["503"]["headers"]
    for status in ("400", "415", "502", "503", "504"):
        assert chat["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"}
    assert schemas["Error"]["required"] == ["error"]
    assert set(schemas["ErrorDetail"]["properties"]) == {"type", "message"}
    # Every $ref points to a schema that is there.
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(spec)))
    assert refs and refs <= set(schemas)


def test_query_parameters_and_path_examples_come_from_the_models_and_the_registries(spec: dict[str, Any]) -> None:
    params = {p["name"]: p for p in spec["paths"]["/api/tasks"]["get"]["parameters"]}
    assert params["limit"]["in"] == "query" and params["limit"]["schema"]["maximum"] == 500
    assert params["status"]["schema"]["enum"] == ["pending", "processing", "succeeded", "failed", "canceled"]
    result = {p["name"]: p for p in spec["paths"]["/api/task/result"]["get"]["parameters"]}
    assert result["taskID"]["required"] is True and result["wait"]["required"] is False
    name = spec["paths"]["/invoke/{name}"]["post"]["parameters"][0]
    assert name["in"] == "path" and name["required"] is True and "word_count" in name["examples"]


def test_the_spec_is_valid_for_schemathesis(spec: dict[str, Any]) -> None:
    loaded = schemathesis.openapi.from_dict(spec)
    labels = {result.ok().label for result in loaded.get_all_operations()}
    assert len(labels) == 22 and "PUT /api/task/cancel" in labels and "POST /v1/chat/completions" in labels


def test_bearer_auth_is_declared_and_applied_only_when_keys_are_set(
    upstream: FakeUpstream, tmp_path: Path, spec: dict[str, Any]
) -> None:
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "one of FLOWBRIDGE_API_KEYS"}
    assert "security" not in spec and "401" not in spec["paths"]["/api/chat"]["post"]["responses"]
    secured = _make(upstream, tmp_path, FLOWBRIDGE_API_KEYS=KEY)
    client = secured.test_client()
    assert client.get("/api/openapi.json").status_code == 401  # an /api route like the others
    spec = client.get("/api/openapi.json", headers={"Authorization": f"Bearer {KEY}"}).json
    assert spec["security"] == [{"bearer": []}]
    assert "401" in spec["paths"]["/api/chat"]["post"]["responses"]
    # The health checks stay open.
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert "401" not in spec["paths"]["/readyz"]["get"]["responses"]


def test_build_spec_matches_what_is_served(app: Flask, spec: dict[str, Any]) -> None:
    assert json.loads(json.dumps(build_spec(app))) == spec


@pytest.mark.parametrize(("path", "body", "named"), [
    ("/api/flows", {"flow_content": ""}, "flow_content"),  # was a 500 (FlowSpec's own check), found by schemathesis
    ("/api/flows", {"flow_content": "EchoToolOp()", "extra": 1}, "extra"),
    ("/api/task/run", {"inputs": {}}, "schema"),
    ("/api/task/run", {"schema": "{}", "inputs": [1]}, "inputs"),
    ("/api/task/validate", {"schema": 5}, "schema"),
])
def test_routes_validate_their_bodies_with_the_documented_models(
    client: FlaskClient, path: str, body: dict[str, Any], named: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 400, response.json
    assert named in response.json["error"]["message"]
    assert response.json["error"]["type"] == "invalid_request"


#: A real name for each path parameter, so the request reaches body validation.
_PATH_NAMES = {"/api/ops/{name}": "echo_tool", "/api/flows/{name}": "chat_summary", "/invoke/{name}": "count_to"}


@pytest.mark.parametrize("op", [op for op in OPERATIONS if op.request is not None],
                         ids=lambda op: f"{op.method} {op.path}")
def test_every_json_body_is_checked_by_its_documented_model(client: FlaskClient, op: Any) -> None:
    """The 400 for a body the model rejects is exactly what the model says, on every route that takes one."""
    path = op.path.replace("{name}", _PATH_NAMES.get(op.path, "")) if "{" in op.path else op.path
    assert "{" not in path, f"add an example name for {op.path} to _PATH_NAMES"
    body = {"inputs": {}, "unexpected_field": 1}
    with pytest.raises(ValidationError):
        op.request.model_validate(body)
    with pytest.raises(APIError) as expected:
        s.parse_body(op.request, body)
    response = client.open(path, method=op.method, json=body)
    assert response.status_code == 400, response.json
    assert response.json["error"]["message"] == str(expected.value)
    assert "unexpected_field" in response.json["error"]["message"]


def test_cancel_validates_its_body_with_the_model(client: FlaskClient) -> None:
    response = client.put("/api/task/cancel", json={"taskID": ""})
    assert response.status_code == 400 and "taskID" in response.json["error"]["message"]
    response = client.put("/api/task/cancel", json={"taskID": "nope"})
    assert response.status_code == 200 and response.json == {"success": False}


def test_the_api_docs_page_renders_from_the_spec(client: FlaskClient) -> None:
    response = client.get("/api/docs", headers={"Accept": "text/html"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert len(response.data) < 100_000  # the page budget
    assert '<a href="/api/openapi.json" id="openapi-link">' in html
    rows = dict(re.findall(r'<tr data-endpoint="([^"]+)">(.*?)</tr>', html, re.S))
    chat = rows["api.chat"]
    assert '<a href="#schema-ChatRequest"><code>ChatRequest</code></a>' in chat
    assert "<code>200</code> ChatResponse or event stream" in chat and "<code>415</code>" in chat
    assert "query: <code>status</code>, <code>limit</code>, <code>offset</code>" in rows["tasks.list_tasks"]
    # Every schema of the spec is shown, with its JSON schema as text.
    assert '<details id="schema-ChatRequest">' in html and '<details id="schema-Error">' in html
    assert "&#34;oneOf&#34;" in html
