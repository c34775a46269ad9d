"""The task page in Chromium against real gunicorn: nodes recoloured live, the final page, cancel, safety.

Workflows are submitted through ``POST /api/task/run``; the fake upstream's ``delay`` keeps an llm
node ``processing`` long enough to watch. Screenshots: ``task-running.png``, ``task-finished.png``
(and ``-dark``, ``-phone``), ``task-loop-running.png``, ``task-canceled.png``, ``tasks.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer
from tests.webapp.test_task_pages import llm_schema, loop_schema

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

TIMEOUT = 20_000


def submit(live: GunicornServer, schema: dict[str, Any], inputs: dict[str, Any], wait: float = 0) -> str:
    response = requests.post(live.url + "/api/task/run", params={"wait": wait} if wait else None,
                             json={"schema": json.dumps(schema), "inputs": inputs}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["taskID"]


def statuses(page: Page) -> dict[str, str]:
    return page.eval_on_selector_all("[data-node-id]", "els => Object.fromEntries("
                                     "els.map(e => [e.dataset.nodeId, e.dataset.status]))")


def test_a_task_page_follows_the_run_and_ends_as_the_result(live: GunicornServer, page: Page,
                                                           upstream: FakeUpstream, artifacts_dir: Path) -> None:
    upstream.configure(delay=4.0)  # long enough to open the page on a busy machine
    task_id = submit(live, llm_schema(), {"q": "What is the capital of France?"})
    page.goto(f"{live.url}/tasks/{task_id}")
    page.wait_for_selector("[data-node-id=llm_0][data-status=processing]", timeout=TIMEOUT)
    assert page.locator("#task").get_attribute("data-status") == "processing"
    page.locator("#cancel-button").wait_for()
    page.screenshot(path=str(artifacts_dir / "task-running.png"), full_page=True)

    page.wait_for_selector("#task[data-status=succeeded]", timeout=TIMEOUT)  # after the reload
    assert statuses(page) == {"start_0": "succeeded", "llm_0": "succeeded", "end_0": "succeeded"}
    assert "echo: What is the capital of France?" in page.locator("#task-outputs").inner_text()
    assert page.locator("#timeline .tl-row").count() == 3 and page.locator("#cancel-form").count() == 0
    page.locator("svg#graph [data-node-id=llm_0] a").click()  # a node opens its runs
    details = page.locator("details#node-llm_0")
    assert details.get_attribute("open") is not None and "capital of France" in details.inner_text()
    page.screenshot(path=str(artifacts_dir / "task-finished.png"), full_page=True)
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(artifacts_dir / "task-finished-dark.png"), full_page=True)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(artifacts_dir / "task-finished-phone.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # the graph scrolls in its card
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_a_loop_recolours_its_body_live_without_reloading(live: GunicornServer, page: Page,
                                                          upstream: FakeUpstream, artifacts_dir: Path) -> None:
    upstream.configure(delay=1.5)
    task_id = submit(live, loop_schema(), {"items": ["one", "two", "three"]})
    page.goto(f"{live.url}/tasks/{task_id}")
    page.evaluate("window.sameDocument = true")
    # the first item's block-end finishing can only reach this document through the event stream
    page.wait_for_function("""() => window.sameDocument && document.querySelector(
        '[data-node-id=block_end_0]').dataset.status === 'succeeded'""", timeout=TIMEOUT)
    assert page.locator("#task").get_attribute("data-status") == "processing"
    assert page.locator("[data-node-id=loop_0]").get_attribute("data-status") == "processing"
    assert page.locator("#timeline .tl-row[data-node=llm_0]").count() == 1  # rows are added live too
    page.screenshot(path=str(artifacts_dir / "task-loop-running.png"), full_page=True)

    page.wait_for_selector("#task[data-status=succeeded]", timeout=TIMEOUT)
    assert set(statuses(page).values()) == {"succeeded"}
    assert "echo: three" in page.locator("#task-outputs").inner_text()
    assert "3 runs" in page.locator("details#node-llm_0 summary").inner_text()
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_cancel_from_the_page(live: GunicornServer, page: Page, upstream: FakeUpstream,
                              artifacts_dir: Path) -> None:
    upstream.configure(delay=5.0)
    task_id = submit(live, llm_schema(), {"q": "slow"})
    page.goto(f"{live.url}/tasks/{task_id}")
    page.wait_for_selector("[data-node-id=llm_0][data-status=processing]", timeout=TIMEOUT)
    page.click("#cancel-button")
    page.wait_for_selector("#task[data-status=canceled]", timeout=TIMEOUT)
    assert page.url == f"{live.url}/tasks/{task_id}"
    assert "canceled" in page.locator("#task-errors").inner_text()
    assert statuses(page)["end_0"] == "pending" and page.locator("#cancel-form").count() == 0
    page.screenshot(path=str(artifacts_dir / "task-canceled.png"), full_page=True)
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_a_script_in_an_answer_is_shown_as_text(live: GunicornServer, page: Page, upstream: FakeUpstream) -> None:
    upstream.configure(reply="<script>alert(1)</script>")
    task_id = submit(live, llm_schema(), {"q": "<img src=x onerror=alert(2)>"}, wait=20)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{live.url}/tasks/{task_id}")
    page.wait_for_selector("#task[data-status=succeeded]")
    assert page.locator("#task-outputs pre").inner_text() == "<script>alert(1)</script>"
    assert "<img src=x onerror=alert(2)>" in page.locator("#task-inputs").inner_text()
    assert page.locator("main script, main img").count() == 0
    page.wait_for_timeout(200)  # a dialog would have opened by now
    assert dialogs == [] and page.js_errors == []  # type: ignore[attr-defined]


def test_a_finished_page_needs_no_javascript(live: GunicornServer, browser: Browser, upstream: FakeUpstream) -> None:
    upstream.configure(reply="Readable without scripts")
    task_id = submit(live, llm_schema(), {"q": "no js"}, wait=20)
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{live.url}/tasks/{task_id}")
        assert page.locator("#task-outputs").inner_text().endswith("Readable without scripts")
        assert page.locator("svg#graph [data-node-id][data-status=succeeded]").count() == 3
        assert page.locator("#timeline .tl-bar").first.bounding_box()["width"] > 0  # type: ignore[index]
        page.locator("svg#graph [data-node-id=end_0] a").click()
        assert page.url.endswith("#node-end_0")
    finally:
        context.close()


def test_the_task_list(live: GunicornServer, page: Page, upstream: FakeUpstream, artifacts_dir: Path) -> None:
    done = submit(live, llm_schema(), {"q": "listed"}, wait=20)
    failed = submit(live, llm_schema(), {})
    page.goto(f"{live.url}/tasks")
    assert page.locator(f"tr[data-task-id='{done}'] .badge").inner_text() == "succeeded"
    assert page.locator(f"tr[data-task-id='{failed}']").get_attribute("data-status") == "failed"
    page.screenshot(path=str(artifacts_dir / "tasks.png"), full_page=True)
    page.click(".filters a[href='/tasks?status=failed']")
    page.wait_for_url("**/tasks?status=failed")
    assert set(page.locator("tr[data-task-id]").evaluate_all("rs => rs.map(r => r.dataset.status)")) == {"failed"}
    page.click(f"tr[data-task-id='{failed}'] a")
    page.wait_for_selector("#task[data-status=failed]")
    assert 'Missing required property "q"' in page.locator("#task-errors").inner_text()
    assert page.js_errors == []  # type: ignore[attr-defined]
