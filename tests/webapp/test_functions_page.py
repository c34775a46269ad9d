"""The Functions page and the API docs page, through Flask's test client (no browser).

``GET /functions`` answers the page to browsers and the manifest JSON to everyone else; ``GET /api/docs``
is generated from the app's URL map.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.fake_upstream import FakeUpstream
from webapp import create_app
from webapp.functions import get_registry

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture
def app(upstream: FakeUpstream) -> Iterator[Flask]:
    app = create_app({"LLM_BASE_URL": upstream.base_url, "FLOWBRIDGE_TASK_DB": "memory", "TESTING": True})
    yield app
    from webapp.extensions import close_workflow_runtime

    close_workflow_runtime(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def cards(html: str) -> dict[str, str]:
    """``{function name: the HTML of its card}``."""
    found: dict[str, str] = {}
    for chunk in html.split('<section class="card fn"')[1:]:
        name = re.search(r'data-function="([^"]+)"', chunk).group(1)  # type: ignore[union-attr]
        found[name] = chunk.split("</section>")[0]
    return found


def test_browsers_get_a_card_with_a_form_per_function(app: Flask, client: FlaskClient) -> None:
    response = client.get("/functions", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    with app.app_context():
        manifest = get_registry().manifest()
    found = cards(html)
    assert list(found) == [entry["name"] for entry in manifest]  # every function, in manifest order
    for entry in manifest:
        card = found[entry["name"]]
        assert f'action="/invoke/{entry["name"]}"' in card
        assert ("streaming</span>" in card) == entry["streaming"], entry["name"]
        for param in entry["parameters"]:
            assert f'name="{param["name"]}"' in card, (entry["name"], param["name"])
        types = json.loads(re.search(r"data-types='([^']*)'", card).group(1))  # type: ignore[union-attr]
        assert types == {p["name"]: p["type"] for p in entry["parameters"]}
        assert ('class="danger stop"' in card) == entry["streaming"]
    assert re.search(r'<input type="file" id="in-process_text_file-file" name="file"[^>]* required>', found["process_text_file"])
    assert 'type="file"' not in found["count_to"]
    # Typed widgets with the manifest's defaults: an integer, a number, a JSON array, a long text.
    assert re.search(r'type="number" id="in-count_to-n" name="n" value="100" step="1"', found["count_to"])
    assert re.search(r'type="number" id="in-count_to-delay" name="delay" value="0.02" step="any"', found["count_to"])
    assert re.search(r'<textarea id="in-batch_process-items" name="items" class="code" required>', found["batch_process"])
    assert "field-error" not in html and "built-in method" not in html  # no error shown for "items"
    assert re.search(r'<textarea id="in-word_count-text" name="text" required>', found["word_count"])
    assert "/static/js/events.js" in html and "/static/js/functions.js" in html
    assert "/static/css/functions.css" in html


@pytest.mark.parametrize("accept", [None, "application/json", "*/*", "application/json, text/html;q=0.5"])
def test_programs_still_get_the_manifest(app: Flask, client: FlaskClient, accept: str | None) -> None:
    response = client.get("/functions", headers={"Accept": accept} if accept else {})
    assert response.status_code == 200 and response.is_json
    with app.app_context():
        assert response.json == {"functions": get_registry().manifest()}


def test_a_function_added_to_the_app_gets_its_card_and_its_strings_are_escaped(app: Flask) -> None:
    registry = get_registry(app)

    @registry.register
    def shout(text: str, times: int = 1, loud: bool = False) -> str:
        """Shout <b>text</b> & <script>alert(1)</script>.

        Args:
            text: what to shout.
            times: how often.
            loud: louder.
        """
        return text.upper() * times

    html = app.test_client().get("/functions", headers={"Accept": "text/html"}).get_data(as_text=True)
    card = cards(html)["shout"]
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in card
    assert 'type="checkbox" id="in-shout-loud" name="loud"' in card
    assert json.loads(re.search(r"data-types='([^']*)'", card).group(1)) == {  # type: ignore[union-attr]
        "text": "string", "times": "integer", "loud": "boolean"}


def test_the_page_has_no_csrf_field_the_api_would_take_for_an_input(client: FlaskClient) -> None:
    # /invoke is an API route (no CSRF check); a csrf_token form field would be an unknown input there.
    html = client.get("/functions", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert 'name="csrf_token"' not in html
    assert 'name="csrf-token"' in html  # the meta tag the script sends as X-CSRF-Token


def test_the_api_docs_list_the_json_api_from_the_url_map(client: FlaskClient) -> None:
    response = client.get("/api/docs", headers={"Accept": "text/html"})
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    rows = dict(re.findall(r'<tr data-endpoint="([^"]+)">(.*?)</tr>', html, re.S))
    expected = {
        "api.chat": ("POST", "/api/chat"),
        "functions.invoke": ("POST", "/invoke/&lt;name&gt;"),
        "functions.list_functions": ("GET", "/functions"),
        "tasks.run_task": ("POST", "/api/task/run"),
        "tasks.cancel_task": ("PUT", "/api/task/cancel"),
        "tasks.task_events": ("GET", "/api/task/events"),
        "ops.run_op_route": ("POST", "/api/ops/&lt;name&gt;"),
        "health.healthz": ("GET", "/healthz"),
        "health.readyz": ("GET", "/readyz"),
    }
    for endpoint, (method, path) in expected.items():
        row = rows[endpoint]
        assert f'<span class="method m-{method}">{method}</span>' in row, endpoint
        assert f"<code>{path}</code>" in row, endpoint
    # The first paragraph of the view's docstring, ``literals`` as code, the rest escaped text.
    assert "Answer one message or a conversation: <code>{&#34;response&#34;, &#34;model&#34;, &#34;usage&#34;}</code>" \
        in rows["api.chat"]
    assert "With" not in rows["api.chat"]  # only the first paragraph
    assert "Run a function" in rows["functions.invoke"]
    assert "(no description yet)" not in html
    # Groups, in order; pages (this one included), static files and /info are not API routes.
    headings = re.findall(r'<section class="card" id="([^"]+)">', html)
    assert headings == ["errors", "streams", "chat", "openai", "ops", "tasks", "functions", "health"]
    assert "<code>/v1/chat/completions</code>" in rows["openai.chat_completions"]  # the OpenAI API too
    assert "pages.api_docs" not in rows and "static" not in rows and "tasks.info" not in rows
    assert "curl -N" in html and "text/event-stream" in html and "Retry-After" in html


def test_a_new_api_route_is_documented_by_its_docstring(app: Flask) -> None:
    def frobnicate() -> str:
        """Frobnicate ``<things>`` & more.

        Not this paragraph.
        """
        return "ok"

    app.add_url_rule("/api/frobnicate", "frobnicate", frobnicate, methods=["POST", "DELETE"])
    html = app.test_client().get("/api/docs").get_data(as_text=True)
    row = re.search(r'<tr data-endpoint="frobnicate">(.*?)</tr>', html, re.S).group(1)  # type: ignore[union-attr]
    assert "m-POST" in row and "m-DELETE" in row and "OPTIONS" not in row
    assert "Frobnicate <code>&lt;things&gt;</code> &amp; more." in row and "Not this paragraph" not in row
    assert '<section class="card" id="other">' in html
