"""Security headers on every kind of response, and the favicon."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse



# app and client: tests/webapp/conftest.py


def check_headers(response: TestResponse) -> None:
    csp = {d.split()[0]: d.split()[1:] for d in response.headers["Content-Security-Policy"].split("; ")}
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]  # nothing inline
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'self'"] and csp["form-action"] == ["'self'"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize(("method", "url", "kwargs", "status"), [
    ("GET", "/", {}, 200),  # a page
    ("GET", "/api/docs", {}, 200),
    ("GET", "/api/ops", {}, 200),  # JSON
    ("POST", "/api/ops/echo_tool", {"json": {"inputs": {"text": "hi"}}}, 200),
    ("POST", "/api/chat", {"json": {}}, 400),  # a JSON error
    ("GET", "/nope", {"headers": {"Accept": "text/html"}}, 404),  # an HTML error page
    ("GET", "/static/css/app.css", {}, 200),
    ("GET", "/healthz", {}, 200),
    ("GET", "/favicon.ico", {}, 200),
])
def test_headers_on_every_kind_of_response(
    client: FlaskClient, method: str, url: str, kwargs: dict, status: int
) -> None:
    with client.open(url, method=method, **kwargs) as response:  # closes a static file
        assert response.status_code == status
        check_headers(response)


def test_headers_on_event_streams(client: FlaskClient) -> None:
    response = client.post("/api/chat", json={"message": "hi", "stream": True})
    assert response.mimetype == "text/event-stream"
    check_headers(response)
    response.close()


def test_headers_on_a_500(app: Flask) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom-for-test")
    def boom() -> str:
        raise RuntimeError("boom")

    response = app.test_client().get("/boom-for-test")
    assert response.status_code == 500
    check_headers(response)


def test_pages_carry_no_inline_style_or_script(client: FlaskClient) -> None:
    """What the CSP would block: the browser test (tests/browser/test_csp.py) checks the rest."""
    for url in ("/", "/chat", "/ops", "/ops/chat", "/workflows", "/tasks", "/functions", "/api/docs"):
        html = client.get(url).get_data(as_text=True)
        assert "<style" not in html, url
        assert " style=" not in html, url
        assert "<script>" not in html and "javascript:" not in html, url


def test_favicon(client: FlaskClient) -> None:
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/x-icon"
    assert icon.data[:4] == b"\x00\x00\x01\x00"  # an ICO file
    html = client.get("/").get_data(as_text=True)
    assert 'rel="icon" href="/favicon.ico"' in html and "/static/favicon.svg" in html
    with client.get("/static/favicon.svg") as svg:
        assert svg.status_code == 200 and svg.mimetype == "image/svg+xml"
