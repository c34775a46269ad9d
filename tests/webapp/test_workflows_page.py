"""The Workflows run page without a browser: examples, load, validate, run, errors, CSRF, uploads."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape

from tests.fake_upstream import FakeUpstream
from webapp import create_app
from webapp.extensions import get_workflow_runtime
from webapp.pages.workflows import EXAMPLES_DIR
from workflow import TaskCapacityError

HTML = {"Accept": "text/html"}
BRANCH = (EXAMPLES_DIR / "branch.json").read_text()


@pytest.fixture
def app(upstream: FakeUpstream) -> Iterator[Flask]:
    app = create_app({"LLM_BASE_URL": upstream.base_url, "FLOWBRIDGE_TASK_DB": "memory", "TESTING": True,
                      "FLOWBRIDGE_SECRET_KEY": "test-key"})
    yield app
    with app.app_context():
        get_workflow_runtime(app).shutdown()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def token(client: FlaskClient) -> str:
    page = client.get("/workflows", headers=HTML).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def post(client: FlaskClient, action: str, schema: str = BRANCH, **fields: Any) -> Any:
    data = {"csrf_token": token(client), "action": action, "workflow_schema": schema, **fields}
    return client.post("/workflows", data=data, headers=HTML, content_type="multipart/form-data")


def field_block(page: str, name: str) -> str:
    """The ``<div class="field" data-field=name>`` of the input form (its label, widget and error)."""
    start = page.index(f'data-field="{name}"')
    ends = [i for i in (page.find('<div class="field" ', start), page.find("</section>", start)) if i > 0]
    return page[start:min(ends)]


def broken_schema() -> str:
    schema = json.loads(BRANCH)
    schema["edges"].append({"sourceNodeID": "llm_short", "targetNodeID": "ghost"})
    return json.dumps(schema, indent=2)


def test_the_page_lists_every_example(client: FlaskClient) -> None:
    response = client.get("/workflows", headers=HTML)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    names = sorted(p.stem for p in EXAMPLES_DIR.glob("*.json"))
    assert {"branch", "loop", "op_node", "code"} <= set(names)
    for name in names:
        assert f'href="/workflows?example={name}"' in page
    assert "Short or detailed answer" in page  # the start node's title names the example
    assert 'id="workflow_schema"' in page and 'id="workflow_file"' in page and 'value="load"' in page
    assert 'id="run"' not in page  # nothing to run before a schema is loaded
    assert 'href="/static/css/workflows.css"' in page
    assert "<script" not in page  # works without JavaScript


def test_an_example_shows_its_input_form_and_node_summary(client: FlaskClient) -> None:
    page = client.get("/workflows?example=branch", headers=HTML).get_data(as_text=True)
    question, detail = field_block(page, "question"), field_block(page, "detail")
    assert 'class="req"' in question and "<textarea" in question and "Why is the sky blue?" in question
    assert 'class="req"' in detail and "<option selected>short</option><option>detailed</option>" in detail
    summary = re.findall(r'data-type="([^"]+)" data-count="(\d+)"', page)
    assert summary == [("start", "1"), ("condition", "1"), ("llm", "2"), ("end", "1")]
    assert "5 nodes" in page
    assert str(escape(BRANCH)) in page  # the schema travels in the textarea
    assert 'aria-current="true">Short or detailed answer' in page
    loop = client.get("/workflows?example=loop", headers=HTML).get_data(as_text=True)
    assert re.findall(r'data-type="([^"]+)" data-count="(\d+)"', loop) == [
        ("start", "1"), ("loop", "1"), ("block-start", "1"), ("llm", "1"), ("block-end", "1"), ("end", "1")]
    assert "(JSON array)" in field_block(loop, "topics")


def test_an_unknown_example_is_a_404_naming_it(client: FlaskClient) -> None:
    response = client.get("/workflows?example=../secrets", headers=HTML)
    assert response.status_code == 404
    assert "There is no example named &#39;../secrets&#39;." in response.get_data(as_text=True)


def test_load_parses_pasted_json(client: FlaskClient) -> None:
    response = post(client, "load", question="kept?")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "kept?</textarea>" in field_block(page, "question")  # what was typed survives a reload
    assert 'class="field-error"' not in page


def test_invalid_json_names_line_and_column_and_keeps_the_text(client: FlaskClient) -> None:
    pasted = '{\n  "nodes": [\n    {"id": "start_0",, }\n  ]\n}'
    response = post(client, "load", schema=pasted)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "The schema is not valid JSON: Expecting property name enclosed in double quotes at line 3, column 22" \
        in page
    assert f">{escape(pasted)}</textarea>" in page
    assert 'id="run"' not in page
    for schema, message in (("[1, 2]", "got an array"), ("  ", "paste a workflow schema")):
        response = post(client, "validate", schema=schema)
        assert response.status_code == 400 and message in response.get_data(as_text=True)


def test_validate_shows_flowgrams_errors_or_valid(client: FlaskClient) -> None:
    response = post(client, "validate", schema=broken_schema(), question="q", detail="short")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    found = re.search(r'<ul class="wf-errors" id="validation-errors">(.*?)</ul>', page, re.S)
    assert found is not None
    assert re.findall(r"<li>(.*?)</li>", found.group(1)) == ["Workflow schema edge target node &#34;ghost&#34; not exist"]
    assert "q</textarea>" in field_block(page, "question")  # the inputs stay as typed
    page = post(client, "validate", question="Why?", detail="detailed").get_data(as_text=True)
    assert 'id="validation-ok"' in page and "valid:" in page and 'id="validation-errors"' not in page


def test_validate_checks_the_inputs_and_warns_of_unknown_node_types(client: FlaskClient) -> None:
    page = post(client, "validate", detail="short").get_data(as_text=True)
    assert "JSON Schema validation failed: Missing required property &#34;question&#34; at root" in page
    assert '<div class="field-error" role="alert">required</div>' in field_block(page, "question")
    schema = json.loads(BRANCH)
    schema["nodes"][1]["type"] = "teleport"
    page = post(client, "validate", schema=json.dumps(schema), question="q", detail="short").get_data(as_text=True)
    assert 'id="validation-ok"' in page
    assert "No executor found for node type teleport: running it will fail" in page


def test_run_with_a_missing_required_input_shows_the_error_beside_the_field(client: FlaskClient,
                                                                          app: Flask) -> None:
    response = post(client, "run", question="  ", detail="short")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert '<div class="field-error" role="alert">required</div>' in field_block(page, "question")
    assert 'class="field-error"' not in field_block(page, "detail")
    assert "Some inputs need fixing" in page
    response = post(client, "run", detail="sideways", question="q")
    assert "choose one of short, detailed" in field_block(response.get_data(as_text=True), "detail")
    with app.app_context():
        assert get_workflow_runtime(app).store.count() == 0  # nothing was started


def test_run_starts_the_task_and_redirects_to_its_page(client: FlaskClient, app: Flask) -> None:
    response = post(client, "run", question="Why is the sky blue?", detail="short")
    assert response.status_code == 303
    match = re.fullmatch(r"/tasks/([0-9a-f-]{36})", response.headers["Location"])
    assert match
    with app.app_context():
        record = get_workflow_runtime(app).wait(match.group(1), 30)
    assert record is not None and record.status == "succeeded"
    assert record.outputs == {"answer": "echo: Why is the sky blue?", "detail": "short"}
    assert record.title == "Short or detailed answer"


def test_run_refuses_a_schema_that_fails_validation(client: FlaskClient, app: Flask) -> None:
    response = post(client, "run", schema=broken_schema(), question="q", detail="short")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "did not pass validation" in page and "&#34;ghost&#34; not exist" in page
    with app.app_context():
        assert get_workflow_runtime(app).store.count() == 0


def test_run_shows_capacity_and_input_errors_on_the_page(client: FlaskClient, app: Flask,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with app.app_context():
        runtime = get_workflow_runtime(app)

    def full(*args: Any) -> str:
        raise TaskCapacityError("this process already runs 32 tasks; try again later")

    monkeypatch.setattr(runtime, "run", full)
    response = post(client, "run", question="q", detail="short")
    assert response.status_code == 503
    page = response.get_data(as_text=True)
    assert "The server is busy: this process already runs 32 tasks" in page
    assert "q</textarea>" in field_block(page, "question")


def test_every_post_needs_the_csrf_token(client: FlaskClient) -> None:
    token(client)  # the session has a token; the form does not send it
    for data in ({"action": "run", "workflow_schema": BRANCH, "question": "q", "detail": "short"},
                 {"action": "load", "workflow_schema": BRANCH, "csrf_token": "forged"}):
        response = client.post("/workflows", data=data, headers=HTML)
        assert response.status_code == 400
        assert "out of date or came from another site" in response.get_data(as_text=True)


def test_an_unknown_action_is_refused(client: FlaskClient) -> None:
    assert post(client, "explode").status_code == 400


def test_an_uploaded_file_replaces_the_textarea(client: FlaskClient) -> None:
    upload = (io.BytesIO((EXAMPLES_DIR / "loop.json").read_bytes()), "loop.json")
    response = post(client, "load", schema="not json", workflow_file=upload)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "One sentence per topic" in page and 'data-field="topics"' in page
    assert "&#34;loopFor&#34;" in page  # the file's text is now in the textarea
    bad = post(client, "load", schema="{}", workflow_file=(io.BytesIO(b"\xff\xfe{"), "bad.json"))
    assert bad.status_code == 400 and "bad.json is not UTF-8 text" in bad.get_data(as_text=True)


def test_an_uploaded_file_can_be_run_directly(client: FlaskClient, app: Flask) -> None:
    upload = (io.BytesIO((EXAMPLES_DIR / "code.json").read_bytes()), "code.json")
    response = post(client, "run", schema="", workflow_file=upload, text="a b a")
    assert response.status_code == 303
    with app.app_context():
        record = get_workflow_runtime(app).wait(response.headers["Location"].rsplit("/", 1)[1], 30)
    assert record.outputs == {"words": 3, "unique": ["a", "b"], "shout": "A B A"}


def test_strings_of_the_schema_are_shown_as_text(client: FlaskClient) -> None:
    schema = json.loads(BRANCH)
    schema["nodes"][0]["data"]["title"] = "<script>alert(1)</script>"
    schema["nodes"][0]["data"]["outputs"]["properties"]["question"]["description"] = "<img src=x onerror=alert(1)>"
    page = post(client, "load", schema=json.dumps(schema)).get_data(as_text=True)
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_start_input_named_like_a_page_field_is_explained(client: FlaskClient) -> None:
    schema = json.loads(BRANCH)
    schema["nodes"][0]["data"]["outputs"]["properties"]["action"] = {"type": "string"}
    page = post(client, "load", schema=json.dumps(schema)).get_data(as_text=True)
    assert "cannot take a start input named action" in page and 'data-field="question"' not in page
    assert post(client, "run", schema=json.dumps(schema)).status_code == 400


def test_a_schema_without_start_node_loads_with_a_note(client: FlaskClient) -> None:
    page = post(client, "load", schema='{"nodes": [], "edges": []}').get_data(as_text=True)
    assert "has no start node" in page and "0 nodes" in page


def test_the_first_load_is_small(client: FlaskClient) -> None:
    page = client.get("/workflows?example=loop", headers=HTML).data
    css = 0
    for name in ("app.css", "workflows.css"):
        with client.get(f"/static/css/{name}") as response:
            css += len(response.data)
    assert len(page) + css < 100_000


def test_examples_dir_is_the_repository_folder() -> None:
    assert EXAMPLES_DIR == Path(__file__).resolve().parent.parent.parent / "examples" / "workflows"
