"""What every page relies on: schema-driven form fields, CSRF protection, the session key, the layout."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.datastructures import FileStorage, MultiDict

from webapp import create_app
from webapp.config import load_secret_key
from webapp.pages import bp
from webapp.guards.csrf import protect
from webapp.pages.forms import Field, fields_from_manifest, fields_from_schema, read_form

SCHEMA = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "description": "the question"},
        "n": {"type": "integer", "default": 3},
        "ratio": {"type": "number"},
        "flag": {"type": "boolean"},
        "items": {"type": "array"},
        "options": {"type": "object"},
        "mode": {"type": "string", "enum": ["fast", "slow"]},
        "tag": {"type": ["string", "null"], "required": True},
    },
    "required": ["query"],
}


def test_fields_follow_the_schema() -> None:
    fields = {f.name: f for f in fields_from_schema(SCHEMA)}
    assert [f.widget for f in fields.values()] == ["textarea", "number", "number", "checkbox", "json", "json",
                                                   "select", "text"]
    assert fields["query"].required and fields["tag"].required and not fields["n"].required
    assert fields["n"].default == 3
    assert fields["mode"].enum == ["fast", "slow"]
    assert fields_from_schema(None) == []


def test_manifest_parameters_become_fields() -> None:
    fields = fields_from_manifest([{"name": "file", "type": "file", "required": True},
                                   {"name": "every", "type": "integer", "required": False, "default": 100}])
    assert [(f.name, f.widget, f.required) for f in fields] == [("file", "file", True), ("every", "number", False)]


def test_read_form_converts_types_and_names_each_bad_field() -> None:
    fields = fields_from_schema(SCHEMA)
    values, errors = read_form(fields, MultiDict({
        "query": "hi", "n": "7", "ratio": "0.5", "flag": "on", "items": "[1, 2]", "options": '{"a": 1}',
        "mode": "slow", "tag": "x",
    }))
    assert errors == {}
    assert values == {"query": "hi", "n": 7, "ratio": 0.5, "flag": True, "items": [1, 2], "options": {"a": 1},
                      "mode": "slow", "tag": "x"}
    values, errors = read_form(fields, MultiDict({"n": "seven", "ratio": "x", "items": "{", "options": "[]",
                                                  "mode": "medium", "tag": " "}))
    assert errors == {
        "query": "required", "n": "enter a whole number", "ratio": "enter a number",
        "items": "not valid JSON (Expecting property name enclosed in double quotes at line 1)",
        "options": "enter a JSON object {...}", "mode": "choose one of fast, slow", "tag": "required",
    }
    assert values == {"flag": False}


def test_read_form_reads_uploaded_text_files() -> None:
    fields = [Field(name="file", type="file", required=True)]
    good = MultiDict({"file": FileStorage(stream=io.BytesIO("héllo".encode()), filename="a.txt")})
    assert read_form(fields, MultiDict(), good) == ({"file": "héllo"}, {})
    bad = MultiDict({"file": FileStorage(stream=io.BytesIO(b"\xff\xfe"), filename="b.bin")})
    assert read_form(fields, MultiDict(), bad)[1] == {"file": "the file is not UTF-8 text"}
    assert read_form(fields, MultiDict(), MultiDict())[1] == {"file": "choose a file"}


@pytest.fixture
def app() -> Flask:
    app = create_app({"LLM_BASE_URL": "http://127.0.0.1:9/v1", "FLOWBRIDGE_TASK_DB": "memory",
                      "FLOWBRIDGE_SECRET_KEY": "test-key"})

    def change_something() -> str:
        protect()  # what the pages blueprint runs before each of its views
        return "changed"

    app.add_url_rule("/_test/form", "test_form", change_something, methods=["POST"])
    return app


def test_a_page_form_needs_the_session_token(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/", headers={"Accept": "text/html"}).get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    refused = client.post("/_test/form", data={"x": "1"}, headers={"Accept": "text/html"})
    assert refused.status_code == 400
    assert "out of date or came from another site" in refused.get_data(as_text=True)
    assert client.post("/_test/form", data={"csrf_token": "forged"}).status_code == 400
    assert client.post("/_test/form", data={"csrf_token": token}).status_code == 200
    assert client.post("/_test/form", headers={"X-CSRF-Token": token}).status_code == 200
    other = app.test_client()  # another browser: its own session, so the token is no good there
    assert other.post("/_test/form", data={"csrf_token": token}).status_code == 400


def test_the_pages_blueprint_checks_every_unsafe_request() -> None:
    assert protect in bp.before_request_funcs[None]


def test_the_session_cookie_is_httponly_and_samesite(app: Flask) -> None:
    response = app.test_client().get("/", headers={"Accept": "text/html"})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_the_secret_key_is_created_once_and_shared(tmp_path: Path) -> None:
    first = load_secret_key(tmp_path / "instance")
    assert len(first) == 64
    assert load_secret_key(tmp_path / "instance") == first
    assert (tmp_path / "instance" / "secret_key").stat().st_mode & 0o777 == 0o600
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "secret_key").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_secret_key(tmp_path / "empty")


def test_every_page_shares_the_layout(app: Flask) -> None:
    client = app.test_client()
    for url in ["/", "/chat", "/ops", "/workflows", "/tasks", "/functions", "/api/docs"]:
        response = client.get(url, headers={"Accept": "text/html"})
        assert response.status_code == 200, url
        html = response.get_data(as_text=True)
        assert 'href="/static/css/app.css"' in html, url
        assert "<nav>" in html and "SmolLM2" in html, url
