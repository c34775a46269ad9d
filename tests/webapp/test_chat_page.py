"""The Chat page through Flask's test client (no browser): what the server renders, and the API it calls."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.fake_upstream import FakeUpstream
from webapp import create_app
from webapp.schemas import ChatRequest

MODEL = "chat-test-model"


@pytest.fixture
def app(upstream: FakeUpstream) -> Iterator[Flask]:
    app = create_app({"LLM_BASE_URL": upstream.base_url, "LLM_MODEL": MODEL, "LLM_MAX_RETRIES": 0,
                      "FLOWBRIDGE_TASK_DB": "memory", "TESTING": True})
    yield app
    from webapp.extensions import close_workflow_runtime

    close_workflow_runtime(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def sse_events(body: str) -> list[dict]:
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


def attribute(html: str, element_id: str, name: str) -> str:
    tag = re.search(rf'<[^>]*\bid="{element_id}"[^>]*>', html)
    assert tag, element_id
    value = re.search(rf'\b{name}="([^"]*)"', tag.group(0))
    assert value, (element_id, name)
    return value.group(1)


def test_the_page_has_the_csrf_token_the_model_and_a_no_javascript_note(client: FlaskClient) -> None:
    response = client.get("/chat")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert token
    with client.session_transaction() as session:
        assert session["csrf_token"] == token.group(1)
    assert f'<code class="model-name">{MODEL}</code>' in html
    assert f'data-model="{MODEL}"' in html
    noscript = re.search(r"<noscript>(.*?)</noscript>", html, re.S)
    assert noscript and "Chat needs JavaScript" in noscript.group(1)
    # Without JavaScript the conversation UI stays hidden: chat.js shows it.
    assert re.search(r'<div class="chat" id="chat"[^>]*\bhidden>', html)
    assert attribute(html, "chat", "data-api") == "/api/chat"
    assert '<script src="/static/js/events.js">' in html and '<script src="/static/js/chat.js">' in html
    assert 'aria-current="page">Chat</a>' in html


def test_the_settings_inputs_carry_the_bounds_of_the_api(client: FlaskClient) -> None:
    html = client.get("/chat").get_data(as_text=True)
    for element_id, name in (("chat-temperature", "temperature"), ("chat-max-tokens", "max_tokens")):
        field = ChatRequest.model_fields[name]
        ge = next(rule.ge for rule in field.metadata if hasattr(rule, "ge"))
        le = next(rule.le for rule in field.metadata if hasattr(rule, "le"))
        assert (float(attribute(html, element_id, "min")), float(attribute(html, element_id, "max"))) == (ge, le)
        assert float(attribute(html, element_id, "placeholder")) == field.default


def test_the_model_name_is_escaped(upstream: FakeUpstream) -> None:
    app = create_app({"LLM_BASE_URL": upstream.base_url, "LLM_MODEL": "<b>m</b>", "FLOWBRIDGE_TASK_DB": "memory",
                      "TESTING": True})
    html = app.test_client().get("/chat").get_data(as_text=True)
    assert "<b>m</b>" not in html and "&lt;b&gt;m&lt;/b&gt;" in html


def test_the_first_load_is_well_under_100_kb(client: FlaskClient) -> None:
    html = client.get("/chat").get_data()
    assets = re.findall(rb'(?:href|src)="(/static/[^"]+)"', html)
    assert {a.rsplit(b"/", 1)[-1] for a in assets} == {b"app.css", b"chat.css", b"events.js", b"chat.js",
                                                      b"favicon.svg"}
    total = len(html)
    for asset in assets:
        response = client.get(asset.decode())
        assert response.status_code == 200
        total += len(response.get_data())
        response.close()
    assert total < 60_000, total


def test_the_request_the_page_sends_streams_an_answer_with_the_whole_history(
    client: FlaskClient, upstream: FakeUpstream
) -> None:
    """The body chat.js builds: history (with a stopped partial answer), settings, stream."""
    upstream.configure(reply="Third answer")
    token_page = client.get("/chat").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', token_page).group(1)  # type: ignore[union-attr]
    history = [{"role": "user", "content": "One"}, {"role": "assistant", "content": "Partial, then sto"},
               {"role": "user", "content": "Two"}]
    response = client.post("/api/chat", json={"messages": history, "stream": True, "system_prompt": "Be brief.",
                                              "temperature": 0.2, "max_tokens": 64},
                           headers={"Accept": "text/event-stream", "X-CSRF-Token": token})
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    events = sse_events(response.get_data(as_text=True))
    assert [e["type"] for e in events][0] == "start" and events[-1]["type"] == "done"
    assert "".join(e["data"] for e in events if e["type"] == "content") == "Third answer"
    sent = upstream.stats()["last_request"]["json"]
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, *history]
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 64


def test_an_out_of_range_setting_is_a_400_naming_the_field(client: FlaskClient) -> None:
    """What the page shows inline if its own check is bypassed."""
    response = client.post("/api/chat", json={"messages": [{"role": "user", "content": "hi"}], "stream": True,
                                              "temperature": 5})
    assert response.status_code == 400
    assert "temperature" in response.get_json()["error"]["message"]


def test_an_upstream_failure_is_an_error_event(client: FlaskClient, upstream: FakeUpstream) -> None:
    upstream.push_faults({"status": 500})
    response = client.post("/api/chat", json={"messages": [{"role": "user", "content": "hi"}], "stream": True})
    events = sse_events(response.get_data(as_text=True))
    assert events[-1]["type"] == "error" and events[-1]["data"]
    assert events[-1]["error_code"] == "upstream_error"

