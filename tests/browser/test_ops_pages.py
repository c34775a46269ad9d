"""The Ops & flows pages in headless Chromium against real gunicorn (2 workers) and the fake upstream.

A form is filled and submitted like a user would; the run lands on ``/results/<id>``, a page that any
worker serves (the result is in the shared SQLite file) and that a fresh browser opens the same way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

RESULT_URL = re.compile(r".*/results/[A-Za-z0-9_-]{16}$")


def test_the_list_links_every_op_and_flow(live: GunicornServer, page: Page, artifacts_dir: Path) -> None:
    from playwright.sync_api import expect

    page.goto(live.url + "/ops")
    expect(page.locator("header nav a.active")).to_have_text("Ops & flows")
    flows, ops = page.locator('[data-list="flows"] a.card'), page.locator('[data-list="ops"] a.card')
    expect(flows.filter(has_text="chat_summary")).to_contain_text("summarise the answer in at most 30 words")
    expect(ops.filter(has_text="EchoToolOp")).to_have_attribute("href", "/ops/echo_tool")
    assert flows.count() >= 5 and ops.count() >= 5
    page.screenshot(path=str(artifacts_dir / "ops.png"), full_page=True)
    ops.filter(has_text="EchoToolOp").click()
    expect(page.locator("h1")).to_contain_text("echo_tool")
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_an_op_form_lands_on_a_permanent_result_page(
    live: GunicornServer, page: Page, browser: Browser, upstream: FakeUpstream, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    reply = "Paris is the capital of France.\nIt sits on the Seine."
    upstream.configure(reply=reply)
    page.goto(live.url + "/ops/chat")
    expect(page.locator('[data-field="query"] .req')).to_have_count(0)  # chat takes query or messages
    page.fill("#in-query", "What is the capital of France?")
    page.fill("#in-system_prompt", "Answer in two sentences.")
    page.get_by_role("button", name="Run chat").click()
    page.wait_for_url(RESULT_URL)
    expect(page.locator("#answer")).to_have_text(reply)
    expect(page.locator("#result-status")).to_have_text("succeeded")
    expect(page.locator("table.inputs")).to_contain_text("What is the capital of France?")
    expect(page.locator("#outputs")).to_contain_text('"chat_result"')
    page.screenshot(path=str(artifacts_dir / "op-result.png"), full_page=True)
    permanent = page.url

    # the same page for anyone with the link: a fresh browser, no cookies, any worker, without JavaScript
    other = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    try:
        phone = other.new_page()
        phone.goto(permanent)
        expect(phone.locator("#answer")).to_have_text(reply)
        expect(phone.locator("h1")).to_contain_text("Result of op chat")
        phone.screenshot(path=str(artifacts_dir / "op-result-phone.png"), full_page=True)
    finally:
        other.close()

    # run again: the form comes back filled with the same inputs
    page.click("#run-again")
    expect(page.locator("#in-query")).to_have_value("What is the capital of France?")
    expect(page.locator("#in-system_prompt")).to_have_value("Answer in two sentences.")
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_a_flow_form_runs_and_an_answer_stays_text(
    live: GunicornServer, page: Page, upstream: FakeUpstream, artifacts_dir: Path
) -> None:
    from playwright.sync_api import expect

    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    upstream.configure(reply="<script>alert(1)</script>")
    page.goto(live.url + "/flows/chat_summary")
    expect(page.locator('[data-field="query"] .req')).to_have_count(1)
    page.fill("#in-query", "Say something dangerous")
    page.screenshot(path=str(artifacts_dir / "op-form.png"), full_page=True)
    page.get_by_role("button", name="Run chat_summary").click()
    page.wait_for_url(RESULT_URL)
    expect(page.locator("#answer")).to_have_text("<script>alert(1)</script>")
    expect(page.locator("h1")).to_contain_text("Result of flow chat_summary")
    assert page.locator("main script").count() == 0
    assert dialogs == [] and page.js_errors == []  # type: ignore[attr-defined]


def test_an_upstream_failure_is_shown_on_the_form(live: GunicornServer, page: Page, upstream: FakeUpstream) -> None:
    from playwright.sync_api import expect

    upstream.push_faults({"status": 500})
    page.goto(live.url + "/ops/summarize")
    page.fill("#in-text", "A text to summarise.")
    page.get_by_role("button", name="Run summarize").click()
    expect(page.locator("#problem")).to_contain_text("The op failed")
    expect(page.locator("#in-text")).to_have_value("A text to summarise.")
    assert "/results/" not in page.url
    assert page.js_errors == []  # type: ignore[attr-defined]
