"""The Functions page in headless Chromium against the live gunicorn server and the fake upstream."""

from __future__ import annotations

import re

from pathlib import Path
from typing import TYPE_CHECKING

from playwright.sync_api import expect

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page


def open_card(page: Page, live: GunicornServer, name: str) -> Locator:
    page.goto(live.url + "/functions")
    card = page.locator(f'section.fn[data-function="{name}"]')
    expect(card).to_be_visible()
    return card


def test_count_to_fills_the_progress_bar_and_shows_the_summary(
    live: GunicornServer, page: Page, artifacts_dir: Path
) -> None:
    card = open_card(page, live, "count_to")
    card.locator('[name="n"]').fill("20")
    card.locator('[name="delay"]').fill("0.01")
    card.get_by_role("button", name="Run").click()
    expect(card.locator(".fn-percent")).to_have_text("100%")
    expect(card.locator(".fn-progress progress")).to_have_js_property("value", 100)
    expect(card.locator(".fn-message")).to_have_text("20/20")
    expect(card.locator(".fn-done")).to_contain_text('"count": 20')
    expect(card.locator(".fn-state")).to_have_text("done")
    expect(card.get_by_role("button", name="Stop")).to_be_hidden()
    card.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "functions.png"), full_page=True)
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_stop_aborts_a_streaming_run(live: GunicornServer, page: Page) -> None:
    card = open_card(page, live, "count_to")
    card.locator('[name="n"]').fill("10000")
    card.locator('[name="delay"]').fill("0.05")
    card.get_by_role("button", name="Run").click()
    expect(card.locator(".fn-message")).to_have_text(re.compile(r"^\d+/10000$"))  # some progress arrived
    card.get_by_role("button", name="Stop").click()
    expect(card.locator(".fn-state")).to_have_text("stopped")
    expect(card.get_by_role("button", name="Run")).to_be_enabled()
    expect(card.locator(".fn-done-wrap")).to_be_hidden()
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_chat_stream_streams_the_reply_as_text(live: GunicornServer, page: Page, upstream: FakeUpstream) -> None:
    reply = "Streaming <b>bold</b> and <script>window.pwned = 1</script> as plain text."
    upstream.configure(reply=reply, stream_chunk_delay=0.01)
    card = open_card(page, live, "chat_stream")
    card.locator('[name="message"]').fill("Tell me something")
    card.get_by_role("button", name="Run").click()
    expect(card.locator(".fn-content")).to_have_text(reply)
    expect(card.locator(".fn-done")).to_be_visible()
    assert card.locator(".fn-content b, .fn-content script").count() == 0
    assert page.evaluate("() => window.pwned") is None
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_word_count_shows_its_json_result(live: GunicornServer, page: Page) -> None:
    card = open_card(page, live, "word_count")
    card.locator('[name="text"]').fill("to be or not to be")
    card.get_by_role("button", name="Run").click()
    result = card.locator(".fn-result")
    expect(result).to_contain_text('"words": 6')
    expect(result).to_contain_text('"unique_words": 4')
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_bad_inputs_show_errors_beside_the_form(live: GunicornServer, page: Page) -> None:
    card = open_card(page, live, "batch_process")
    items = card.locator('[name="items"]')
    items.fill("[1, 2,")  # not JSON: refused before sending, the text kept
    card.get_by_role("button", name="Run").click()
    field_error = card.locator('.field[data-field="items"] .field-error')
    expect(field_error).to_contain_text("not valid JSON")
    expect(card.locator(".fn-error")).to_have_text("Check items.")
    expect(items).to_have_value("[1, 2,")
    items.fill('{"a": 1}')  # JSON, but not an array
    card.get_by_role("button", name="Run").click()
    expect(field_error).to_have_text("enter a JSON array [...]")
    # The server's 400 (a value out of range) shows its message, and marks the field it names.
    count = open_card(page, live, "count_to")
    count.locator('[name="n"]').fill("0")
    count.get_by_role("button", name="Run").click()
    expect(count.locator(".fn-error")).to_contain_text("inputs.n: must be >= 1")
    expect(count.locator(".fn-error")).to_contain_text("HTTP 400")
    expect(count.locator('.field[data-field="n"] .field-error')).to_contain_text("must be >= 1")
    expect(count.locator(".fn-state")).to_have_text("refused")
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_a_text_file_is_uploaded_and_processed(live: GunicornServer, page: Page) -> None:
    card = open_card(page, live, "process_text_file")
    text = "".join(f"line {i} has words\n" for i in range(1, 26))
    card.locator('[name="file"]').set_input_files(files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                      "buffer": text.encode()}])
    card.locator('[name="every"]').fill("10")
    card.get_by_role("button", name="Run").click()
    expect(card.locator(".fn-percent")).to_have_text("100%")
    expect(card.locator(".fn-done")).to_contain_text('"lines": 25')
    expect(card.locator(".fn-done")).to_contain_text('"words": 100')
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_api_docs_and_the_phone_layout(live: GunicornServer, page: Page, artifacts_dir: Path) -> None:
    page.goto(live.url + "/api/docs")
    expect(page.locator('tr[data-endpoint="functions.invoke"]')).to_contain_text("/invoke/<name>")
    expect(page.locator('tr[data-endpoint="api.chat"]')).to_contain_text("/api/chat")
    page.screenshot(path=str(artifacts_dir / "api-docs.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    card = open_card(page, live, "word_count")
    card.locator('[name="text"]').fill("Small screens too")
    card.get_by_role("button", name="Run").click()
    expect(card.locator(".fn-result")).to_contain_text('"words": 3')
    box = card.bounding_box()
    assert box is not None and box["width"] <= 390
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    card.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "functions-mobile.png"))
    assert page.js_errors == []  # type: ignore[attr-defined]
