"""The Chat page in headless Chromium against the live gunicorn server and the fake upstream."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from playwright.sync_api import expect

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

FIRST = "Paris is the capital of France, and it sits on the Seine in the north of the country."
SECOND = "About two million people live in the city itself, and many more in the region around it."
LONG = " ".join(f"word{i}" for i in range(300))
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"

#: Records every text the (last) assistant bubble shows, so a test can tell the answer arrived in pieces.
WATCH = """() => {
  window.seenTexts = [];
  new MutationObserver(() => {
    const texts = document.querySelectorAll("#chat-log .msg-assistant .msg-text");
    if (texts.length) window.seenTexts.push(texts[texts.length - 1].textContent);
  }).observe(document.getElementById("chat-log"), {childList: true, subtree: true, characterData: true});
}"""


def open_chat(page: Page, live: GunicornServer) -> None:
    page.goto(live.url + "/chat")
    expect(page.locator("#chat")).to_be_visible()


def ask(page: Page, text: str, *, enter: bool = True) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    if enter:
        box.press("Enter")
    else:
        page.get_by_role("button", name="Send").click()


def answers(page: Page) -> Locator:
    return page.locator("#chat-log .msg-assistant .msg-text")


def sent_messages(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return upstream.stats()["last_request"]["json"]["messages"]


def test_answers_stream_in_and_every_question_carries_the_history(
    live: GunicornServer, page: Page, upstream: FakeUpstream, artifacts_dir: Path
) -> None:
    open_chat(page, live)
    expect(page.locator(".chat-head .model-name")).to_have_text(live_model(page))
    page.locator("#chat-settings summary").click()
    page.get_by_label("System prompt").fill("Answer in one sentence.")
    page.get_by_label("Temperature").fill("0.3")
    page.locator("#chat-settings summary").click()  # closed, it still says what is in effect
    expect(page.locator("#chat-settings-summary")).to_have_text("(system prompt, temperature 0.3)")
    page.evaluate(WATCH)

    upstream.configure(reply=FIRST, stream_chunk_delay=0.1)  # slow enough to see Stop and the pieces
    ask(page, "What is the capital of France?")
    expect(page.get_by_role("button", name="Stop")).to_be_enabled()
    expect(answers(page)).to_have_text(FIRST)
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(page.get_by_role("button", name="Stop")).to_be_disabled()
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    seen = [text for text in page.evaluate("() => window.seenTexts") if text]
    assert len(set(seen)) >= 3, seen  # it arrived in pieces, not at once
    assert all(FIRST.startswith(text) for text in seen)
    first = upstream.stats()["last_request"]["json"]
    assert first["stream"] is True and first["temperature"] == 0.3
    assert first["messages"] == [{"role": "system", "content": "Answer in one sentence."},
                                 {"role": "user", "content": "What is the capital of France?"}]

    upstream.configure(reply=SECOND, stream_chunk_delay=0.0)
    ask(page, "And how many people\nlive there?", enter=False)
    expect(answers(page).nth(1)).to_have_text(SECOND)
    assert sent_messages(upstream) == [
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": FIRST},
        {"role": "user", "content": "And how many people\nlive there?"},
    ]
    expect(page.locator("#chat-log .msg-user .msg-text")).to_have_text(
        ["What is the capital of France?", "And how many people\nlive there?"])
    page.screenshot(path=str(artifacts_dir / "chat.png"), full_page=True)

    # A reload keeps the conversation and the settings (sessionStorage); a phone gets the same page.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(answers(page)).to_have_text([FIRST, SECOND])
    expect(page.get_by_label("System prompt")).to_have_value("Answer in one sentence.")
    expect(page.locator("#chat-settings-summary")).to_have_text("(system prompt, temperature 0.3)")
    page.screenshot(path=str(artifacts_dir / "chat-phone.png"), full_page=True)

    page.get_by_role("button", name="New chat").click()
    expect(page.locator("#chat-log .msg")).to_have_count(0)
    expect(page.locator("#chat-empty")).to_be_visible()
    page.reload()
    expect(page.locator("#chat")).to_be_visible()
    expect(page.locator("#chat-log .msg")).to_have_count(0)
    assert page.js_errors == []  # type: ignore[attr-defined]


def live_model(page: Page) -> str:
    """The model the server names in its header (``LLM_MODEL``, the default here)."""
    return page.locator("header.top .upstream code").first.inner_text()


def test_enter_sends_and_shift_enter_starts_a_new_line(
    live: GunicornServer, page: Page, upstream: FakeUpstream
) -> None:
    upstream.configure(reply="Noted.")
    open_chat(page, live)
    box = page.get_by_label("Message", exact=True)
    box.type("line one")
    box.press("Shift+Enter")
    box.type("line two")
    expect(box).to_have_value("line one\nline two")
    assert page.locator("#chat-log .msg").count() == 0
    box.press("Enter")
    expect(answers(page)).to_have_text("Noted.")
    expect(box).to_have_value("")
    assert sent_messages(upstream) == [{"role": "user", "content": "line one\nline two"}]
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_stop_keeps_the_partial_answer_and_closes_the_upstream_stream(
    live: GunicornServer, page: Page, upstream: FakeUpstream
) -> None:
    upstream.configure(reply=LONG, stream_chunk_delay=0.2)
    open_chat(page, live)
    ask(page, "Count for me")
    expect(answers(page)).to_contain_text("word1 word2")  # a few pieces are in
    stop = page.get_by_role("button", name="Stop")
    expect(stop).to_be_enabled()
    expect(page.get_by_role("button", name="Send")).to_be_disabled()
    stop.click()
    expect(page.locator("#chat-log .msg-assistant .msg-note")).to_have_text("(stopped)")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(stop).to_be_disabled()
    expect(page.get_by_role("button", name="Retry")).to_be_visible()  # a stopped answer can be asked again
    assert upstream.wait_for(lambda s: s["streams_closed_early"] >= 1, timeout=10)
    partial = answers(page).inner_text()
    assert partial and LONG.startswith(partial) and partial != LONG
    page.wait_for_timeout(500)  # nothing more arrives once stopped
    assert answers(page).inner_text() == partial

    # The conversation goes on, with the partial answer as history.
    upstream.configure(reply="Fine, I stop there.", stream_chunk_delay=0.0)
    ask(page, "That is enough")
    expect(answers(page).nth(1)).to_have_text("Fine, I stop there.")
    assert sent_messages(upstream) == [{"role": "user", "content": "Count for me"},
                                       {"role": "assistant", "content": partial},
                                       {"role": "user", "content": "That is enough"}]
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_an_upstream_error_shows_inline_and_retry_recovers(
    live: GunicornServer, page: Page, upstream: FakeUpstream, artifacts_dir: Path
) -> None:
    upstream.configure(reply=FIRST)
    page.emulate_media(color_scheme="dark")
    open_chat(page, live)
    ask(page, "What is the capital of France?")
    expect(answers(page)).to_have_text(FIRST)

    upstream.push_faults({"status": 500})
    ask(page, "And its population?")
    error = page.locator("#chat-log .msg-assistant .msg-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("500")
    expect(page.locator("#chat-log .msg-user .msg-text")).to_have_text(
        ["What is the capital of France?", "And its population?"])
    expect(answers(page).first).to_have_text(FIRST)
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    page.screenshot(path=str(artifacts_dir / "chat-error-dark.png"), full_page=True)

    upstream.configure(reply=SECOND)
    page.get_by_role("button", name="Retry").click()
    expect(answers(page)).to_have_text([FIRST, SECOND])
    expect(error).to_have_count(0)
    assert sent_messages(upstream) == [{"role": "user", "content": "What is the capital of France?"},
                                       {"role": "assistant", "content": FIRST},
                                       {"role": "user", "content": "And its population?"}]
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_a_bad_setting_is_shown_beside_its_field_and_nothing_is_sent(
    live: GunicornServer, page: Page, upstream: FakeUpstream
) -> None:
    open_chat(page, live)
    page.locator("#chat-settings summary").click()
    page.get_by_label("Temperature").fill("5")
    ask(page, "Hello?")
    expect(page.locator("#chat-temperature-error")).to_have_text("Temperature must be between 0 and 2, not 5")
    expect(page.get_by_label("Temperature")).to_have_value("5")
    expect(page.get_by_label("Message", exact=True)).to_have_value("Hello?")  # what was typed stays
    assert page.locator("#chat-log .msg").count() == 0
    assert upstream.stats()["requests"] == 0
    page.get_by_label("Temperature").fill("")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#chat-temperature-error")).to_be_hidden()
    expect(page.locator("#chat-log .msg-assistant")).to_have_count(1)
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_markup_in_an_answer_is_shown_as_text(live: GunicornServer, page: Page, upstream: FakeUpstream) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    upstream.configure(reply=HOSTILE, stream_chunk_delay=0.01)
    open_chat(page, live)
    ask(page, "<b>Say</b> something dangerous")
    expect(answers(page)).to_have_text(HOSTILE)
    expect(page.locator("#chat-log .msg-user .msg-text")).to_have_text("<b>Say</b> something dangerous")
    page.reload()  # and again when the conversation comes back from sessionStorage
    expect(answers(page)).to_have_text(HOSTILE)
    page.wait_for_timeout(300)  # give an injected image's onerror a chance to fire
    assert page.locator("#chat-log script, #chat-log img, #chat-log b").count() == 0
    assert dialogs == []
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_without_javascript_the_page_says_chat_needs_it(live: GunicornServer, browser: Browser) -> None:
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(live.url + "/chat")
        expect(page.locator(".chat-noscript")).to_contain_text("Chat needs JavaScript")
        expect(page.locator("#chat")).to_be_hidden()
        expect(page.get_by_role("button", name="New chat")).to_be_hidden()
    finally:
        context.close()


def test_an_answer_cut_at_max_tokens_is_marked_truncated(
    live: GunicornServer, page: Page, upstream: FakeUpstream
) -> None:
    upstream.configure(reply="The answer was going to be", finish_reason="length")
    open_chat(page, live)
    ask(page, "Tell me everything")
    expect(answers(page)).to_have_text("The answer was going to be")
    note = page.locator("#chat-log .msg-assistant .msg-status")
    expect(note).to_have_text("(truncated)")
    page.reload()  # the mark is kept with the conversation
    expect(note).to_have_text("(truncated)")

    upstream.configure(reply="A complete answer.", finish_reason="stop")
    ask(page, "Briefly, then")
    expect(answers(page).nth(1)).to_have_text("A complete answer.")
    expect(note.nth(1)).to_have_text("")
    assert page.js_errors == []  # type: ignore[attr-defined]
