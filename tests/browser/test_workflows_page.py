"""The Workflows run page in a real browser: pick an example, fill its inputs, run it, land on its task page.

The task page's contract (``webapp/pages/tasks.py``): a root ``#task`` with ``data-status`` updated
live, graph nodes with ``data-node-id`` and ``data-status``, and the outputs in ``#task-outputs``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from playwright.sync_api import expect

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

#: The nodes of examples/workflows/branch.json that run when ``detail`` is ``short``.
SHORT_PATH = ("start_0", "condition_0", "llm_short", "end_0")


def test_run_the_branch_example_from_the_page(live: GunicornServer, page: Page, upstream: FakeUpstream,
                                              artifacts_dir: Path) -> None:
    page.goto(live.url + "/workflows")
    page.click("a[data-example=branch]")
    page.wait_for_url(re.compile(r"/workflows\?example=branch$"))
    expect(page.locator("#workflow-summary h2")).to_have_text("Short or detailed answer")
    expect(page.locator("#workflow-summary [data-type=llm]")).to_have_text("2 llm")
    expect(page.locator("[data-field=question] .req")).to_be_visible()
    page.fill("#in-question", "What colour is a <b>clear</b> sky?")
    page.select_option("#in-detail", "short")
    page.screenshot(path=str(artifacts_dir / "workflows.png"), full_page=True)

    page.click("#run")
    page.wait_for_url(re.compile(r"/tasks/[0-9a-f-]{36}$"))
    expect(page.locator("#task")).to_have_attribute("data-status", "succeeded", timeout=20_000)
    for node_id in SHORT_PATH:
        expect(page.locator(f'[data-node-id="{node_id}"]').first).to_have_attribute("data-status", "succeeded")
    statuses = page.locator("[data-node-id]").evaluate_all("els => els.map(e => e.dataset.status)")
    assert "failed" not in statuses and "processing" not in statuses
    expect(page.locator('[data-node-id="llm_detailed"]').first).not_to_have_attribute("data-status", "succeeded")
    expect(page.locator("#task-outputs")).to_contain_text("echo: What colour is a <b>clear</b> sky?")
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_validate_and_bad_json_in_the_browser(live: GunicornServer, page: Page, artifacts_dir: Path) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(live.url + "/workflows?example=loop")
    expect(page.locator("[data-field=topics] textarea")).to_have_value('["rivers", "mountains", "deserts"]')
    page.click("#validate")
    expect(page.locator("#validation-ok")).to_contain_text("valid")
    page.screenshot(path=str(artifacts_dir / "workflows-phone.png"), full_page=True)

    broken = '{\n  "nodes": [\n    {"id": "start_0",, }\n  ]\n}'
    page.fill("#workflow_schema", broken)
    page.click("#load")
    expect(page.locator("#schema-error")).to_contain_text("at line 3, column 22")
    expect(page.locator("#workflow_schema")).to_have_value(broken)
    assert page.js_errors == []  # type: ignore[attr-defined]
