"""Every page works under the Content-Security-Policy: no inline script or style anywhere.

Each page is opened in Chromium against the live gunicorn server. A ``securitypolicyviolation``
listener is installed before any of the page's own code runs (Playwright's init script is not
subject to the page's policy), and console messages are watched too: one violation, on load or
during the interaction a page gets here (send a chat message, run an op, watch a task), fails the test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

#: (label, path); ``{task}`` is the id of a finished task.
PAGES = [
    ("home", "/"),
    ("chat", "/chat"),
    ("ops & flows", "/ops"),
    ("op", "/ops/chat"),
    ("flow", "/flows/chat_summary"),
    ("workflows", "/workflows"),
    ("workflow example", "/workflows?example=code"),
    ("tasks", "/tasks"),
    ("task", "/tasks/{task}"),
    ("functions", "/functions"),
    ("api docs", "/api/docs"),
    ("not found", "/no-such-page"),
]

LISTEN = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`
                    + ` ${e.sample || ""}`);
});
"""

#: start → end: a task that finishes at once, without the LLM.
TASK_SCHEMA = {
    "nodes": [
        {"id": "start_0", "type": "start", "meta": {"position": {"x": 0, "y": 0}},
         "data": {"outputs": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}},
        {"id": "end_0", "type": "end", "meta": {"position": {"x": 400, "y": 0}},
         "data": {"inputs": {"type": "object", "properties": {"answer": {"type": "string"}}},
                  "inputsValues": {"answer": {"type": "ref", "content": ["start_0", "q"]}}}},
    ],
    "edges": [{"sourceNodeID": "start_0", "targetNodeID": "end_0"}],
}


@pytest.fixture(scope="module")
def finished_task(live: GunicornServer) -> str:
    body = {"schema": json.dumps(TASK_SCHEMA), "inputs": {"q": "csp"}}
    response = requests.post(live.url + "/api/task/run?wait=10", json=body, timeout=30)
    assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text
    return response.json()["taskID"]


def watch(page: Page) -> Callable[[], list[str]]:
    """Start collecting CSP violations of ``page``; the returned function lists them so far."""
    console: list[str] = []
    page.add_init_script(LISTEN)
    page.on("console", lambda m: console.append(m.text) if "Content Security Policy" in m.text else None)

    def violations() -> list[str]:
        try:
            events = page.evaluate("window.__csp || []")
        except Exception as exc:  # noqa: BLE001 - a page that navigated away: its console lines still count
            events = [f"(could not read the listener: {exc})"]
        return [*events, *console]
    return violations


@pytest.mark.parametrize(("label", "path"), PAGES, ids=[label.replace(" ", "-") for label, _ in PAGES])
def test_page_loads_without_csp_violations(
    label: str, path: str, live: GunicornServer, page: Page, finished_task: str
) -> None:
    violations = watch(page)
    response = page.goto(live.url + path.format(task=finished_task), wait_until="load")
    assert response is not None
    assert "script-src 'self'" in (response.headers.get("content-security-policy") or ""), "no CSP header"
    page.wait_for_load_state("networkidle", timeout=10_000)
    assert violations() == []
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_chat_op_and_workflow_run_without_csp_violations(
    live: GunicornServer, page: Page, upstream: FakeUpstream
) -> None:
    from playwright.sync_api import expect

    violations = watch(page)
    page.goto(live.url + "/chat")
    box = page.get_by_label("Message", exact=True)
    box.fill("hello from the CSP test")
    box.press("Enter")
    expect(page.get_by_text("echo: hello from the CSP test").first).to_be_visible()
    assert violations() == []

    page.goto(live.url + "/ops/echo_tool")
    page.fill("#in-text", "csp")
    page.get_by_role("button", name="Run echo_tool").click()
    expect(page.locator("#answer")).to_have_text("Echo: csp")
    assert violations() == []
    assert page.js_errors == []  # type: ignore[attr-defined]
