"""Secrets of a workflow (an llm node's ``apiKey``, an http node's ``Authorization``) appear in no
rendering of its task: the task page (schema section included), the report, the task list, the event
stream. Every one uses the report's mask, :func:`workflow.report.mask_secrets`.

Real workflows run against the fake upstream with Flask's test client (memory store).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.fake_upstream import FakeUpstream
from tests.workflow.builders import edge, node, obj, ref
from workflow.report import MASK, mask_secrets

LLM_KEY = "sk-secret-llm-0123456789abcdef"
BEARER = "tok-secret-http-fedcba9876543210"
SECRETS = (LLM_KEY, BEARER)
STRING = {"type": "string"}


def constant(value: Any) -> dict[str, Any]:
    return {"type": "constant", "content": value}


def secret_schema(base_url: str) -> dict[str, Any]:
    """start → llm (own apiKey) → http (Authorization: Bearer ...) → end."""
    llm = node("llm_0", "llm", title="Ask with my key",
               inputs=obj(modelName=STRING, apiKey=STRING, apiHost=STRING, prompt=STRING,
                          temperature={"type": "number"}),
               inputsValues={"modelName": constant("fake-model"), "apiKey": constant(LLM_KEY),
                             "apiHost": constant(base_url), "prompt": ref("start_0", "q"),
                             "temperature": constant(0)},
               outputs=obj(result=STRING))
    http = node("http_0", "http", title="Call with a token",
                api={"method": "GET", "url": {"type": "template", "content": f"{base_url}/models"}},
                headers=obj(Authorization=STRING, Accept=STRING),
                headersValues={"Authorization": constant(f"Bearer {BEARER}"), "Accept": constant("application/json")},
                body={"bodyType": "none"}, timeout={"timeout": 5000, "retryTimes": 0},
                outputs=obj(statusCode={"type": "number"}, body=STRING, headers={"type": "object"}))
    end = node("end_0", "end", inputs=obj(answer=STRING, code={"type": "number"}),
               inputsValues={"answer": ref("llm_0", "result"), "code": ref("http_0", "statusCode")})
    return {"nodes": [node("start_0", "start", outputs={**obj(q=STRING), "required": ["q"]}), llm, http, end],
            "edges": [edge("start_0", "llm_0"), edge("llm_0", "http_0"), edge("http_0", "end_0")]}


# app and client: tests/webapp/conftest.py


def run(client: FlaskClient, schema: dict[str, Any], inputs: dict[str, Any]) -> str:
    response = client.post("/api/task/run?wait=20", json={"schema": json.dumps(schema), "inputs": inputs})
    assert response.status_code == 200, response.json
    assert response.json["status"] == "succeeded", client.get(f"/api/task/report?taskID={response.json['taskID']}").json
    return response.json["taskID"]


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} shows a secret"


def test_no_rendering_of_a_task_shows_its_secrets(client: FlaskClient, upstream: FakeUpstream) -> None:
    task_id = run(client, secret_schema(upstream.base_url), {"q": "hello"})
    # the task page, as a browser gets it: the schema section too
    page = client.get(f"/tasks/{task_id}", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert_no_secret("the task page", page)
    schema_section = page[page.index('id="task-schema"'):]
    assert "apiKey" in schema_section and MASK in schema_section and "Authorization" in schema_section
    assert "http_0" in schema_section and "fake-model" in schema_section  # the rest stays readable
    # the report, the list, the events, the result
    report = client.get(f"/api/task/report?taskID={task_id}")
    assert report.status_code == 200
    assert_no_secret("the report", report.get_data(as_text=True))
    assert MASK in json.dumps(report.json["reports"]["llm_0"]["snapshots"])
    assert MASK in json.dumps(report.json["reports"]["http_0"]["snapshots"])
    assert_no_secret("the task list", client.get("/api/tasks").get_data(as_text=True))
    assert_no_secret("the task list page", client.get("/tasks").get_data(as_text=True))
    events = client.get(f"/api/task/events?taskID={task_id}").get_data(as_text=True)
    assert '"type":"done"' in events
    assert_no_secret("the event stream", events)
    # the result is the workflow's outputs (what its end node returns): no secret unless it returns one
    result = client.get(f"/api/task/result?taskID={task_id}")
    assert result.status_code == 200 and result.json["code"] == 200 and "hello" in result.json["answer"]
    assert_no_secret("the result", result.get_data(as_text=True))


def test_the_node_list_pages_and_outputs_are_masked_too(client: FlaskClient, upstream: FakeUpstream) -> None:
    # a workflow that outputs a secret-named field: the page and the stream mask it like the report does
    schema = secret_schema(upstream.base_url)
    schema["nodes"][-1]["data"]["inputs"]["properties"]["token"] = STRING
    schema["nodes"][-1]["data"]["inputsValues"]["token"] = constant(BEARER)
    task_id = run(client, schema, {"q": "hello"})
    page = client.get(f"/tasks/{task_id}?page=1").get_data(as_text=True)
    assert_no_secret("the task page", page)
    assert_no_secret("the event stream", client.get(f"/api/task/events?taskID={task_id}").get_data(as_text=True))
    assert client.get(f"/api/task/report?taskID={task_id}").json["outputs"]["token"] == MASK


def test_the_mask_keeps_what_a_secret_is_and_hides_its_value() -> None:
    schema = {"inputsValues": {"apiKey": constant("sk-1"), "prompt": constant("hi")},
              "inputs": {"properties": {"apiKey": {"type": "string"}}},
              "headers": {"X-Api-Key": "k", "authorization": ["Bearer b"], "Accept": "json"},
              "empty": {"password": ""}, "Token": None}
    masked = mask_secrets(schema)
    assert masked["inputsValues"] == {"apiKey": {"type": "constant", "content": MASK}, "prompt": constant("hi")}
    assert masked["inputs"] == schema["inputs"]  # a type says nothing secret
    assert masked["headers"] == {"X-Api-Key": MASK, "authorization": [MASK], "Accept": "json"}
    assert masked["empty"] == {"password": ""} and masked["Token"] is None
    assert schema["inputsValues"]["apiKey"]["content"] == "sk-1"  # a copy: the original is untouched


def test_credentials_in_a_url_are_masked_in_every_rendering(client: FlaskClient, upstream: FakeUpstream) -> None:
    """An llm node's apiHost or an http node's URL may carry the key itself: ``https://sk-...@host`` or
    ``?key=sk-...``. The page, report, list and events show the URL with those parts masked."""
    url_key, query_key = "sk-user-info-0123456789", "sk-query-0123456789"
    schema = secret_schema(upstream.base_url)
    schema["nodes"][2]["data"]["api"]["url"]["content"] = \
        f"{upstream.base_url.replace('http://', f'http://{url_key}@')}/models?key={query_key}&limit=5"
    task_id = client.post("/api/task/run?wait=20", json={"schema": schema, "inputs": {"q": "hi"}}).json["taskID"]
    renderings = {
        "the task page": client.get(f"/tasks/{task_id}", headers={"Accept": "text/html"}).get_data(as_text=True),
        "the report": client.get(f"/api/task/report?taskID={task_id}").get_data(as_text=True),
        "the task list": client.get("/api/tasks").get_data(as_text=True),
        "the event stream": client.get(f"/api/task/events?taskID={task_id}").get_data(as_text=True),
    }
    for where, text in renderings.items():
        assert url_key not in text and query_key not in text, f"{where} shows a key from a URL"
    assert f"key={MASK}&limit=5" in renderings["the report"]  # the rest of the URL stays readable


@pytest.mark.parametrize(("url", "masked"), [
    ("https://sk-1@api.example/v1?key=k&a=1", f"https://{MASK}@api.example/v1?key={MASK}&a=1"),
    ("http://user:pass@h:8080/x?access_token=t&x=#frag", f"http://{MASK}@h:8080/x?access_token={MASK}&x=#frag"),
    ("https://h/?a=1&Api-Key=z&sig=s", f"https://h/?a=1&Api-Key={MASK}&sig={MASK}"),
    ("https://h/v1/chat?model=m", "https://h/v1/chat?model=m"),
    ("https://h/p@x?token=", "https://h/p@x?token="),
])
def test_the_url_mask(url: str, masked: str) -> None:
    assert mask_secrets({"apiHost": url}) == {"apiHost": masked}
