"""API keys (``FLOWBRIDGE_API_KEYS``) with the Flask test client: configuration, every route of the URL map,
the browser's sign-in, the session's CSRF rule for API calls, and the open-redirect guard."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from tests.fake_upstream import FakeUpstream
from webapp import ConfigError, create_app
from webapp.guards.auth import enabled, is_api_path, parse_keys, safe_next

K1 = "k1-test-key-0123456789abcdef"
K2 = "k2-test-key-fedcba9876543210"
SECRET = "test-secret-of-the-session-cookie"

#: Rules anyone may reach with keys set. Every other rule must answer 401 (API) or send the browser to /login.
OPEN_RULES = {"/healthz", "/readyz", "/metrics", "/static/<path:filename>", "/login", "/logout",
              "/favicon.ico"}


@pytest.fixture
def make_app(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """``make_app(**config)``: an app on the fake upstream; its per-process resources closed afterwards."""
    from webapp.extensions import close_llm_client, close_workflow_runtime

    apps: list[Flask] = []

    def make(**config: Any) -> Flask:
        app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0",
                          "FLOWBRIDGE_TASK_DB": str(tmp_path / "tasks.db"), "FLOWBRIDGE_SECRET_KEY": SECRET,
                          **config})
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_workflow_runtime(app)
        close_llm_client(app)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(FLOWBRIDGE_API_KEYS=f" {K1} , {K2} ")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _assert_401(response: Any, what: str) -> None:
    assert response.status_code == 401, f"{what}: {response.status_code}"
    assert response.is_json and response.json["error"]["type"] == "unauthorized", what
    assert response.headers["WWW-Authenticate"].startswith("Bearer"), what


def _sign_in(client: FlaskClient, key: str = K1, next_: str = "/chat") -> Any:
    form = client.get("/login", query_string={"next": next_})
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    return client.post("/login", data={"csrf_token": token, "key": key, "next": next_})


def _page_csrf(client: FlaskClient) -> str:
    page = client.get("/chat")
    assert page.status_code == 200
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text).group(1)


# -- configuration ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value, problem", [
    ("short-key", "key 1 is shorter than 16"),
    (f"{K1},tooshort", "key 2 is shorter than 16"),
    ("has a space in the middle!", "key 1 holds a space"),
    ("nön-ascii-key-0123456789", "key 1 holds a space, control or non-ASCII"),
    (" , ,", "holds no key"),
])
def test_bad_keys_stop_the_app_naming_the_variable_not_the_key(
        make_app: Callable[..., Flask], value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_app(FLOWBRIDGE_API_KEYS=value)
    message = str(caught.value)
    assert "FLOWBRIDGE_API_KEYS" in message and problem in message
    for part in value.split(","):
        if part.strip():
            assert part.strip() not in message


def test_keys_come_from_the_environment(make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBRIDGE_API_KEYS", f"{K1},{K2},{K1}")
    app = make_app()
    assert enabled(app)
    client = app.test_client()
    _assert_401(client.get("/api/ops"), "no key")
    assert client.get("/api/ops", headers=_bearer(K2)).status_code == 200
    monkeypatch.setenv("FLOWBRIDGE_API_KEYS", "tiny")
    with pytest.raises(ConfigError, match="FLOWBRIDGE_API_KEYS"):
        make_app()


def test_parse_keys() -> None:
    assert parse_keys("") == () and parse_keys("  ") == () and parse_keys(None) == ()
    assert parse_keys(f" {K1} ,{K2},, {K1}") == (K1, K2)  # stripped, empty items skipped, duplicates once
    assert parse_keys([K2]) == (K2,)


def test_without_keys_nothing_is_checked(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    assert not enabled(app)
    client = app.test_client()
    assert client.get("/api/ops").status_code == 200
    assert client.get("/functions").status_code == 200
    assert client.get("/chat").status_code == 200
    assert client.get("/login?next=/ops").headers["Location"] == "/ops"


def test_secure_cookie_setting(make_app: Callable[..., Flask]) -> None:
    assert not make_app().config["SESSION_COOKIE_SECURE"]  # Flask's default, untouched
    app = make_app(FLOWBRIDGE_API_KEYS=K1, FLOWBRIDGE_SESSION_COOKIE_SECURE="true")
    assert app.config["SESSION_COOKIE_SECURE"] is True
    response = _sign_in(app.test_client())
    assert "Secure" in response.headers["Set-Cookie"]
    with pytest.raises(ConfigError, match="FLOWBRIDGE_SESSION_COOKIE_SECURE"):
        make_app(FLOWBRIDGE_SESSION_COOKIE_SECURE="maybe")


# -- every route of the URL map ---------------------------------------------------------------------


_DUMMIES = {"int": "1", "float": "1.5", "uuid": "00000000-0000-0000-0000-000000000000", "path": "x/y"}


def _url(rule: Rule) -> str:
    """The rule's path with a dummy value for each converter."""
    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>", lambda m: _DUMMIES.get(m.group(1) or "", "x"), rule.rule)


def _walk(app: Flask) -> Iterator[tuple[Rule, str, str]]:
    adapter = app.url_map.bind("localhost")
    for rule in app.url_map.iter_rules():
        url = _url(rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            assert adapter.match(url, method=method)[0] == rule.endpoint, f"{method} {url} misses {rule.rule}"
            yield rule, method, url


def _escapes(client: FlaskClient, app: Flask, checked: dict[str, set[str]]) -> list[str]:
    """What answers without credentials but is not listed as open; fills ``checked`` with what is protected."""
    problems = []
    for rule, method, url in _walk(app):
        what = f"{method} {rule.rule}"
        response = client.open(url, method=method)
        to_login = response.status_code in (302, 303) and response.headers["Location"].startswith("/login")
        # /v1 answers in OpenAI's shape: flowbridge's error type is its ``code``
        refused = (response.status_code == 401 and response.is_json
                   and "unauthorized" in (response.json["error"]["type"], response.json["error"].get("code"))
                   and response.headers.get("WWW-Authenticate", "").startswith("Bearer"))
        if rule.rule in OPEN_RULES:
            if refused:
                problems.append(f"{what} is listed as open but asks for a key")
            checked["open"].add(rule.rule)
        elif is_api_path(rule.rule):
            wrong = client.open(url, method=method, headers=_bearer("not-a-key-0123456789"))
            if not refused or wrong.status_code != 401 or not wrong.is_json:
                problems.append(f"{what} answers {response.status_code} without a valid key, not 401 JSON")
            checked["api"].add(rule.rule)
        elif not to_login:
            problems.append(f"{what} answers {response.status_code}: neither protected nor listed as open")
        else:
            checked["page"].add(rule.rule)
    return problems


def test_every_route_is_protected_or_listed_as_open(app: Flask, client: FlaskClient) -> None:
    """A new route cannot escape: without credentials it answers 401 JSON (API), sends the browser to
    /login (page), or is one of OPEN_RULES."""
    checked: dict[str, set[str]] = {"api": set(), "page": set(), "open": set()}
    assert _escapes(client, app, checked) == []
    assert {"/api/chat", "/api/task/run", "/invoke/<name>", "/functions", "/functions/<name>", "/info",
            "/api/tasks", "/api/task/events"} <= checked["api"]
    assert {"/", "/chat", "/ops", "/workflows", "/tasks/<task_id>", "/results/<result_id>"} <= checked["page"]
    assert {"/healthz", "/readyz", "/login", "/logout"} <= checked["open"]
    # With a key, the check lets every request through to its view (whatever the view then answers).
    for rule, method, url in _walk(app):
        response = client.open(url, method=method, headers=_bearer(K2))
        what = f"{method} {rule.rule}"
        assert not (response.status_code == 401 and response.is_json), what
        to_login = response.status_code in (302, 303) and response.headers["Location"].startswith("/login")
        assert not to_login or rule.rule == "/logout", what


def test_the_walk_finds_routes_that_escape(make_app: Callable[..., Flask]) -> None:
    """The walk above is not vacuous: with authentication off it reports the API and the pages."""
    app = make_app()
    problems = _escapes(app.test_client(), app, {"api": set(), "page": set(), "open": set()})
    assert any(p.startswith("POST /api/chat answers 415 without a valid key") for p in problems)
    assert any(p.startswith("GET /chat answers 200: neither protected") for p in problems)
    assert not any("/healthz" in p for p in problems)


def test_unknown_paths_are_not_revealed(client: FlaskClient) -> None:
    _assert_401(client.get("/api/no-such-route"), "unknown API path")
    _assert_401(client.delete("/api/chat"), "wrong method")
    _assert_401(client.options("/invoke/word_count"), "OPTIONS")
    assert client.get("/no-such-page").headers["Location"].startswith("/login")


def test_open_routes(client: FlaskClient) -> None:
    assert client.get("/healthz").json["status"] == "ok"
    assert client.get("/readyz").status_code == 200
    with client.get("/static/css/app.css") as response:
        assert response.status_code == 200


# -- bearer keys ------------------------------------------------------------------------------------


def test_each_key_works_and_a_wrong_one_does_not(client: FlaskClient) -> None:
    for key in (K1, K2):
        response = client.post("/api/chat", json={"message": "hi"}, headers=_bearer(key))
        assert response.status_code == 200 and response.json["response"] == "echo: hi"
        assert client.post("/invoke/word_count", json={"inputs": {"text": "a b"}},
                           headers={"Authorization": f"bearer  {key} "}).json["result"]["words"] == 2
    for header in (f"Bearer {K1}x", f"Bearer {K1[:-1]}", f"Basic {K1}", "Bearer", K1, f"Bearer {K1},{K2}"):
        response = client.post("/api/chat", json={"message": "hi"}, headers={"Authorization": header})
        _assert_401(response, header)
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
        assert K1 not in response.text


def test_a_key_also_opens_the_pages(client: FlaskClient) -> None:
    assert client.get("/chat", headers=_bearer(K1)).status_code == 200
    assert client.get("/functions", headers={**_bearer(K1), "Accept": "text/html"}).status_code == 200


# -- the browser: sign in once, then the session cookie ---------------------------------------------


def test_pages_send_the_browser_to_the_login_form(client: FlaskClient) -> None:
    assert client.get("/chat").headers["Location"] == "/login?next=%2Fchat"
    assert client.get("/tasks?status=failed").headers["Location"] == "/login?next=%2Ftasks%3Fstatus%3Dfailed"
    assert client.get("/").headers["Location"] == "/login"
    # the page variants of API paths redirect a browser; programs still get 401 JSON
    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    assert client.get("/functions", headers=html).headers["Location"] == "/login?next=%2Ffunctions"
    assert client.get("/api/docs", headers=html).headers["Location"] == "/login?next=%2Fapi%2Fdocs"
    assert client.get("/api/tasks", headers=html).headers["Location"] == "/login?next=%2Fapi%2Ftasks"
    _assert_401(client.get("/api/tasks", headers={"Accept": "application/json"}), "a program")
    _assert_401(client.post("/api/chat", headers=html), "a browser's POST to the API")
    # a form posted without a session: to the login form, not into the view
    response = client.post("/workflows", data={"action": "run"})
    assert response.status_code == 303 and response.headers["Location"] == "/login"


def test_login_form_shows_nothing_of_the_server(client: FlaskClient, upstream: FakeUpstream) -> None:
    form = client.get("/login?next=/chat")
    assert form.status_code == 200 and 'name="key"' in form.text and 'value="/chat"' in form.text
    assert upstream.base_url not in form.text and "fake-model" not in form.text


def test_sign_in_then_use_pages_and_the_api_with_the_csrf_header(client: FlaskClient) -> None:
    response = _sign_in(client, K2, "/tasks")
    assert response.status_code == 303 and response.headers["Location"] == "/tasks"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and K2 not in cookie
    assert client.get("/tasks").status_code == 200
    token = _page_csrf(client)
    # safe methods need the cookie only (the task page's event stream, lists)
    assert client.get("/api/tasks").status_code == 200
    assert client.get("/functions").status_code == 200
    # unsafe methods also need the page's CSRF token in X-CSRF-Token
    body = {"message": "hi"}
    assert client.post("/api/chat", json=body, headers={"X-CSRF-Token": token}).json["response"] == "echo: hi"
    for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": ""}):
        response = client.post("/api/chat", json=body, headers=headers)
        assert response.status_code == 403 and response.json["error"]["type"] == "csrf_failed"
    response = client.post("/invoke/word_count", data={"text": "a b c"}, headers={"X-CSRF-Token": token})
    assert response.json["result"]["words"] == 3
    # the form field does not replace the header on the API
    assert client.post("/invoke/word_count", data={"text": "a", "csrf_token": token}).status_code == 403
    # the session survives a new page
    assert client.get("/ops").status_code == 200


def test_wrong_key_shows_the_form_again(client: FlaskClient) -> None:
    response = _sign_in(client, "wrong-key-0123456789", "/ops")
    assert response.status_code == 401 and "That key is not valid" in response.text
    assert "wrong-key-0123456789" not in response.text and 'value="/ops"' in response.text
    assert client.get("/ops").status_code == 302


def test_login_needs_the_forms_csrf_token(client: FlaskClient) -> None:
    client.get("/login")
    response = client.post("/login", data={"key": K1, "next": "/chat"})
    assert response.status_code == 401 and "out of date" in response.text
    assert client.get("/chat").status_code == 302


def test_logout(client: FlaskClient) -> None:
    _sign_in(client)
    token = _page_csrf(client)
    assert client.post("/logout").status_code == 400  # without the token: another site cannot sign us out
    assert client.get("/chat").status_code == 200
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert client.get("/chat").status_code == 302
    assert client.post("/api/chat", json={"message": "hi"}, headers={"X-CSRF-Token": token}).status_code == 401


def test_removing_a_key_signs_its_sessions_out(client: FlaskClient, make_app: Callable[..., Flask]) -> None:
    _sign_in(client, K1)
    cookie = client.get_cookie("session")
    assert cookie is not None
    rotated = make_app(FLOWBRIDGE_API_KEYS=K2).test_client()
    rotated.set_cookie("session", cookie.value)
    assert rotated.get("/chat").status_code == 302
    kept = make_app(FLOWBRIDGE_API_KEYS=f"{K2},{K1}").test_client()
    kept.set_cookie("session", cookie.value)
    assert kept.get("/chat").status_code == 200


def test_a_session_from_another_secret_is_not_signed_in(client: FlaskClient,
                                                        make_app: Callable[..., Flask]) -> None:
    _sign_in(client, K1)
    cookie = client.get_cookie("session")
    other = make_app(FLOWBRIDGE_API_KEYS=K1, FLOWBRIDGE_SECRET_KEY="another-secret").test_client()
    other.set_cookie("session", cookie.value)
    assert other.get("/chat").status_code == 302


# -- no open redirect -------------------------------------------------------------------------------


@pytest.mark.parametrize("target, expected", [
    ("/chat", "/chat"),
    ("/tasks?status=failed&limit=5", "/tasks?status=failed&limit=5"),
    ("/tasks/abc#node", "/tasks/abc#node"),
    ("", "/"),
    (None, "/"),
    ("chat", "/"),
    ("//evil.example/x", "/"),
    ("///evil.example", "/"),
    ("/\\evil.example", "/"),
    ("\\\\evil.example", "/"),
    ("https://evil.example/", "/"),
    ("javascript:alert(1)", "/"),
    ("/\t/evil.example", "/"),
    ("/\n/evil.example", "/"),
    (" /chat", "/"),
    ("/login", "/"),
    ("/logout?x=1", "/"),
])
def test_safe_next(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example"])
def test_login_never_redirects_off_site(client: FlaskClient, target: str) -> None:
    response = _sign_in(client, K1, target)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    form = client.get("/login", query_string={"next": target})
    assert "evil.example" not in form.text


def test_template_globals_tell_whether_the_request_is_authenticated(app: Flask, make_app: Callable[..., Flask],
                                                                    client: FlaskClient) -> None:
    render = app.jinja_env.from_string("{{ authenticated() }} {{ signed_in() }}").render
    with app.test_request_context("/static/x"):
        assert render() == "False False"
    with app.test_request_context("/static/x", headers=_bearer(K1)):
        assert render() == "True False"
    with app.test_request_context("/static/x", headers=_bearer("not-a-key-0123456789")):
        assert render() == "False False"
    _sign_in(client)
    with client.session_transaction() as session, app.test_request_context("/static/x"):
        from flask import session as current_session

        current_session.update(session)
        assert render() == "True True"
    off = make_app()
    with off.test_request_context("/"):
        assert off.jinja_env.from_string("{{ authenticated() }} {{ signed_in() }}").render() == "True False"


def test_pages_hide_the_server_from_visitors_and_offer_sign_out(client: FlaskClient, upstream: FakeUpstream) -> None:
    missing = client.get("/static/nope", headers={"Accept": "text/html"})  # an open path's error page
    assert missing.status_code == 404
    assert upstream.base_url not in missing.get_data(as_text=True)
    assert "Sign out" not in missing.get_data(as_text=True)
    _sign_in(client)
    page = client.get("/chat").get_data(as_text=True)
    assert upstream.base_url in page
    assert "Sign out" in page and 'action="/logout"' in page
