"""The Ops & flows pages through Flask's test client: forms, validation, CSRF, Post/Redirect/Get, result pages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ops import BaseAsyncOp, C
from tests.fake_upstream import FakeUpstream
from webapp import create_app
from webapp.extensions import get_result_store
from webapp.results import MemoryResultStore, SQLiteResultStore, make_result_store

HTML = {"Accept": "text/html"}
ENUM_FLOWS = """
flows:
  shout:
    flow_content: "EchoToolOp()"
    description: "Echo in a chosen voice."
    input_schema:
      text: {type: string, description: "what to say", required: true}
      voice: {type: string, description: "how", enum: [calm, loud], required: false}
      times: {type: integer, description: "how often", required: false}
"""


# app and client: tests/webapp/conftest.py


def token(client: FlaskClient, url: str = "/ops") -> str:
    page = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def field_html(page: str, name: str) -> str:
    """The ``<div class="field">`` of one input, to check what is shown beside it."""
    match = re.search(rf'<div class="field" data-field="{name}">(.*?)\n</div>', page, re.S)
    assert match, f"no field {name}"
    return match.group(1)


def result_id(location: str) -> str:
    match = re.fullmatch(r"/results/([A-Za-z0-9_-]{16})", location)
    assert match, location
    return match.group(1)


def test_the_list_shows_ops_and_flows_with_descriptions(client: FlaskClient) -> None:
    page = client.get("/ops").get_data(as_text=True)
    assert 'href="/ops/chat"' in page and 'href="/ops/echo_tool"' in page and 'href="/ops/summarize"' in page
    assert 'href="/flows/chat_summary"' in page and 'href="/flows/stream_chat"' in page
    assert "Answer a question, then summarise the answer in at most 30 words." in page
    assert "EchoToolOp" in page
    assert re.search(r'data-name="stream_chat">\s*<h2>stream_chat <span class="badge', page)  # flow marked stream
    assert "<script" not in page


def test_every_listed_form_renders(client: FlaskClient) -> None:
    page = client.get("/ops").get_data(as_text=True)
    links = sorted(set(re.findall(r'href="(/(?:ops|flows)/[a-z_]+)"', page)))
    assert len(links) > 10
    for link in links:
        response = client.get(link)
        assert response.status_code == 200, link
        assert 'name="csrf_token"' in response.get_data(as_text=True)


def test_a_form_shows_required_marks_types_and_enum_select(upstream: FakeUpstream, tmp_path: Path) -> None:
    flows = tmp_path / "flows.yaml"
    flows.write_text(ENUM_FLOWS)
    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "FLOWBRIDGE_TASK_DB": "memory",
                      "FLOWBRIDGE_FLOWS": str(flows)})
    page = app.test_client().get("/flows/shout").get_data(as_text=True)
    assert 'class="req"' in field_html(page, "text") and "required" in field_html(page, "text")
    voice = field_html(page, "voice")
    assert "<select" in voice and "<option>calm</option>" in voice and "<option>loud</option>" in voice
    assert 'class="req"' not in voice
    assert 'type="number"' in field_html(page, "times") and 'step="1"' in field_html(page, "times")
    assert "Echo in a chosen voice." in page


def test_missing_required_field_is_400_beside_the_field_keeping_values(client: FlaskClient) -> None:
    csrf = token(client, "/flows/chat_summary")
    response = client.post("/flows/chat_summary", data={"csrf_token": csrf, "query": "",
                                                        "system_prompt": "Be <brief>"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'class="field-error" role="alert">required</div>' in field_html(page, "query")
    assert "Be &lt;brief&gt;" in field_html(page, "system_prompt")


def test_a_wrong_type_is_named_beside_its_field(client: FlaskClient) -> None:
    csrf = token(client, "/ops/chat")
    response = client.post("/ops/chat", data={"csrf_token": csrf, "query": "hi", "messages": '["not an object"]'})
    assert response.status_code == 400
    messages = field_html(response.get_data(as_text=True), "messages")
    assert "&#39;messages[0]&#39; must be object, got str" in messages
    assert "[&#34;not an object&#34;]" in messages  # what was typed is kept


def test_a_post_without_the_csrf_token_is_refused(client: FlaskClient, upstream: FakeUpstream) -> None:
    token(client)
    for data in ({"text": "hi"}, {"text": "hi", "csrf_token": "forged"}):
        response = client.post("/ops/echo_tool", data=data, headers=HTML)
        assert response.status_code == 400
        assert "reload the page" in response.get_data(as_text=True)
    assert upstream.stats()["requests"] == 0


def test_a_run_redirects_303_to_its_permanent_result_page(client: FlaskClient, upstream: FakeUpstream) -> None:
    upstream.configure(reply="Paris is the capital of France.")
    response = client.post("/ops/chat", data={"csrf_token": token(client), "query": "Capital of France?"})
    assert response.status_code == 303
    rid = result_id(response.headers["Location"])
    page = client.get(f"/results/{rid}").get_data(as_text=True)
    assert '<pre class="answer" id="answer">Paris is the capital of France.</pre>' in page
    assert "Capital of France?" in page  # the inputs
    assert "chat_result" in page  # the outputs, as JSON
    assert 'href="/ops/chat"' in page and f'href="/ops/chat?from={rid}"' in page
    assert "status-succeeded" in page


def test_a_flow_runs_and_a_stream_flow_runs_to_completion(client: FlaskClient, upstream: FakeUpstream) -> None:
    upstream.configure(reply="A short answer.")
    csrf = token(client)
    for url, data in (("/flows/chat_summary", {"query": "Why?"}), ("/flows/stream_chat", {"query": "Hi"})):
        response = client.post(url, data={"csrf_token": csrf, **data})
        assert response.status_code == 303, response.get_data(as_text=True)
        page = client.get(response.headers["Location"]).get_data(as_text=True)
        assert "A short answer." in page and "Result of flow" in page


def test_the_result_page_renders_an_answer_as_text_and_needs_no_script(client: FlaskClient,
                                                                      upstream: FakeUpstream) -> None:
    upstream.configure(reply="<script>alert(1)</script>")
    response = client.post("/ops/chat", data={"csrf_token": token(client), "query": "<b>hi</b>"})
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page and "<b>hi</b>" not in page


def test_run_again_prefills_the_form(client: FlaskClient) -> None:
    response = client.post("/ops/echo_tool", data={"csrf_token": token(client), "text": "again & again"})
    rid = result_id(response.headers["Location"])
    page = client.get(f"/ops/echo_tool?from={rid}").get_data(as_text=True)
    assert ">again &amp; again</textarea>" in field_html(page, "text")
    # another op's form, or an unknown result, starts empty
    assert "again" not in field_html(client.get(f"/ops/summarize?from={rid}").get_data(as_text=True), "text")
    assert "not found" in client.get("/ops/echo_tool?from=nope").get_data(as_text=True)


def test_an_op_that_fails_is_shown_on_the_form(client: FlaskClient, upstream: FakeUpstream) -> None:
    csrf = token(client)
    response = client.post("/ops/extract_json", data={"csrf_token": csrf, "text": "no json here"})
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert 'id="problem">The op failed:' in page and "no json here" in field_html(page, "text")

    upstream.push_faults({"status": 500})
    response = client.post("/ops/chat", data={"csrf_token": csrf, "query": "hi"})
    assert response.status_code == 502
    assert 'id="problem">The op failed:' in response.get_data(as_text=True)


def test_unknown_op_flow_and_result_are_404_pages(client: FlaskClient) -> None:
    for url in ("/ops/nope", "/flows/nope", "/results/nope"):
        response = client.get(url, headers=HTML)
        assert response.status_code == 404, url
        assert response.mimetype == "text/html" and "<h1>404</h1>" in response.get_data(as_text=True)
    assert client.post("/ops/nope", data={"csrf_token": token(client)}, headers=HTML).status_code == 404


class PlainInputsOp(BaseAsyncOp):
    """Adds a and b (an op without an input schema)."""

    name: ClassVar[str] = "plain_inputs_op"

    async def async_execute(self) -> Any:
        self.context.response.answer = str(self.context["a"] + self.context["b"])


def test_an_op_without_a_schema_takes_json_inputs(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(C._user_ops, "PlainInputsOp", PlainInputsOp)
    page = client.get("/ops/plain_inputs").get_data(as_text=True)
    assert "<textarea" in field_html(page, "inputs")
    csrf = token(client)
    response = client.post("/ops/plain_inputs", data={"csrf_token": csrf, "inputs": "[1]"})
    assert response.status_code == 400 and "enter a JSON object" in response.get_data(as_text=True)
    response = client.post("/ops/plain_inputs", data={"csrf_token": csrf, "inputs": '{"a": 2, "b": 3}'})
    assert response.status_code == 303
    assert '<pre class="answer" id="answer">5</pre>' in client.get(response.headers["Location"]).get_data(as_text=True)


def test_results_are_shared_by_two_workers_on_one_sqlite_file(upstream: FakeUpstream, tmp_path: Path) -> None:
    config = {"TESTING": True, "LLM_BASE_URL": upstream.base_url, "FLOWBRIDGE_TASK_DB": str(tmp_path / "t.db")}
    first, second = create_app(config), create_app(config)
    client = first.test_client()
    response = client.post("/ops/echo_tool", data={"csrf_token": token(client), "text": "shared"})
    location = response.headers["Location"]
    page = second.test_client().get(location).get_data(as_text=True)
    assert "Echo: shared" in page
    with second.app_context():
        assert get_result_store().get(result_id(location)).inputs == {"text": "shared"}  # type: ignore[union-attr]
    get_result_store(first).close()
    get_result_store(second).close()


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_store_keeps_the_newest_results(kind: str, tmp_path: Path) -> None:
    store = make_result_store("memory" if kind == "memory" else f"sqlite:{tmp_path}/r.db", keep=3)
    assert isinstance(store, MemoryResultStore if kind == "memory" else SQLiteResultStore)
    ids = [store.save("op", "echo_tool", {"text": str(i)}, f"Echo: {i}", {}, True, {"i": i}) for i in range(5)]
    assert len(set(ids)) == 5 and all(len(i) == 16 for i in ids)
    assert [store.get(i) is not None for i in ids] == [False, False, True, True, True]
    result = store.get(ids[-1])
    assert result is not None and (result.answer, result.metadata, result.success) == ("Echo: 4", {"i": 4}, True)
    with pytest.raises(ValueError, match="kind"):
        store.save("task", "x", {}, "", {}, True, {})
    store.close()
    store.close()
