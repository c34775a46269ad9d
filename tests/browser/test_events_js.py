"""``webapp/static/js/events.js`` in headless Chromium, reading streams from real gunicorn.

The page comes from the same server (``/_test/page`` of ``tests/webapp/stream_test_app.py``, which is
the real app plus test-only streams), so ``fetch`` is same-origin, as in production.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from llm_client import iter_events
from tests.fake_upstream import FakeUpstream
from tests.servers import ROOT, GunicornServer
from tests.webapp import stream_test_app
from tests.webapp.stream_test_app import SEQUENCES, SPLIT_TEXT, wait_for_marker

if TYPE_CHECKING:
    from playwright.sync_api import Page

EVENTS_JS = ROOT / "webapp" / "static" / "js" / "events.js"
REPLY = "Streaming into the browser, one delta at a time"

#: Runs streamEvents in the page; resolves with the events seen and the outcome.
COLLECT = """async ([url, options]) => {
  const events = [];
  const log = document.getElementById("log");
  const onEvent = (event) => { events.push(event); log.textContent += JSON.stringify(event) + "\\n"; };
  try {
    const last = await flowbridge.streamEvents(url, Object.assign({onEvent}, options || {}));
    return {events, last};
  } catch (e) {
    return {events, error: {name: e.name, message: e.message, status: e.status, type: e.type}};
  }
}"""

#: Starts a stream, aborts it after ``n`` events; resolves with the events and the rejection.
ABORT_AFTER = """async ([url, options, n]) => {
  const controller = new AbortController(), events = [];
  const onEvent = (event) => { events.push(event); if (events.length === n) controller.abort(); };
  try {
    const last = await flowbridge.streamEvents(url, Object.assign({onEvent, signal: controller.signal}, options));
    return {events, last};
  } catch (e) {
    return {events, error: {name: e.name, message: e.message}};
  }
}"""


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, markers: Path,
           _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    log = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with stream_test_app.server(_upstream_server.base_url, markers, log) as server:
        yield server


@pytest.fixture
def loaded(page: Page, served: GunicornServer) -> Page:
    """The test page with events.js loaded from the server."""
    page.goto(served.url + "/_test/page")
    page.wait_for_function("() => typeof window.flowbridge?.streamEvents === 'function'")
    return page


def collect(page: Page, url: str, **options: Any) -> dict[str, Any]:
    return page.evaluate(COLLECT, [url, options])


def python_events(served: GunicornServer, path: str) -> list[dict[str, Any]]:
    """The same stream read by the Python client: the reference the browser must agree with."""
    response = requests.get(served.url + path, stream=True, timeout=10)
    return [event.raw for event in iter_events(response)]


def test_the_module_is_small_and_served_as_javascript(served: GunicornServer) -> None:
    assert EVENTS_JS.stat().st_size < 3 * 1024
    response = requests.get(served.url + "/static/js/events.js", timeout=10)
    assert response.status_code == 200
    assert "javascript" in response.headers["Content-Type"]
    assert response.content == EVENTS_JS.read_bytes()


def test_a_known_sequence_in_order(loaded: Page, artifacts_dir: Path) -> None:
    outcome = collect(loaded, "/_test/events/basic")
    assert outcome["events"] == SEQUENCES["basic"]
    assert outcome["last"] == SEQUENCES["basic"][-1]
    text = "".join(e["data"] for e in outcome["events"] if e["type"] == "content")
    assert text == "Hello, wörld ✓"
    assert loaded.js_errors == []  # type: ignore[attr-defined]
    loaded.screenshot(path=str(artifacts_dir / "events_js_basic.png"), full_page=True)


@pytest.mark.parametrize("name", ["split", "multiline"])
def test_frames_split_across_chunks_multi_line_data_and_comments(
        loaded: Page, served: GunicornServer, name: str) -> None:
    expected = python_events(served, f"/_test/raw/{name}")
    outcome = collect(loaded, f"/_test/raw/{name}")
    assert outcome["events"] == expected
    assert outcome["last"] == expected[-1] and expected[-1]["type"] == "done"
    if name == "split":
        assert expected[1] == {"type": "content", "data": SPLIT_TEXT}


def test_heartbeats_are_ignored(loaded: Page) -> None:
    outcome = collect(loaded, "/_test/heartbeat")
    assert [e["type"] for e in outcome["events"]] == ["start", "content", "done"]


def test_an_error_event_ends_the_stream_and_resolves_with_it(loaded: Page) -> None:
    outcome = collect(loaded, "/_test/events/error")
    assert outcome["events"] == SEQUENCES["error"]
    assert outcome["last"] == {"type": "error", "data": "the model went away", "error_code": "upstream_error"}


def test_a_stream_cut_off_before_its_end_rejects(loaded: Page) -> None:
    outcome = collect(loaded, "/_test/raw/truncated")
    assert [e["type"] for e in outcome["events"]] == ["start", "content"]
    assert "ended before its done or error event" in outcome["error"]["message"]


def test_http_errors_reject_with_the_servers_message(loaded: Page) -> None:
    outcome = collect(loaded, "/_test/fake/invoke/bad_input", body={"inputs": {}})
    assert outcome["events"] == []
    assert outcome["error"] == {"name": "Error", "message": "inputs.items: field required",
                                "status": 400, "type": "invalid_request"}
    outcome = collect(loaded, "/_test/fake/invoke/plain_text_error", body={})
    assert outcome["error"] == {"name": "Error", "message": "HTTP 502", "status": 502, "type": "http_error"}


def test_an_object_body_is_posted_as_json(loaded: Page) -> None:
    outcome = collect(loaded, "/_test/fake/invoke/streaming", body={"inputs": {"items": [1, 2]}},
                      headers={"X-Extra": "1"})
    sent = outcome["last"]["data"]
    assert (sent["method"], sent["json"], sent["accept"]) == ("POST", {"inputs": {"items": [1, 2]}},
                                                              "text/event-stream")


def test_abort_ends_the_stream_and_the_server_stops(loaded: Page, markers: Path) -> None:
    marker = uuid.uuid4().hex
    outcome = loaded.evaluate(ABORT_AFTER, [f"/_test/slow?id={marker}", {}, 3])
    assert [e["type"] for e in outcome["events"]] == ["start", "content", "content"]
    assert outcome["error"]["name"] == "AbortError"
    assert wait_for_marker(markers, marker), "the server's generator never ran its finally"


# -- real routes of the app ----------------------------------------------------------------------

def test_a_real_chat_stream(loaded: Page, upstream: FakeUpstream, artifacts_dir: Path) -> None:
    upstream.configure(reply=REPLY)
    outcome = collect(loaded, "/api/chat", body={"message": "hi", "stream": True})
    kinds = [e["type"] for e in outcome["events"]]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("content") > 1
    assert "".join(e["data"] for e in outcome["events"] if e["type"] == "content") == REPLY
    loaded.screenshot(path=str(artifacts_dir / "events_js_chat.png"), full_page=True)


def test_aborting_a_real_chat_closes_the_upstream_stream(loaded: Page, upstream: FakeUpstream) -> None:
    upstream.configure(reply=" ".join(["word"] * 400), stream_chunk_delay=0.05)
    outcome = loaded.evaluate(ABORT_AFTER, ["/api/chat", {"body": {"message": "hi", "stream": True}}, 3])
    assert outcome["error"]["name"] == "AbortError"
    assert upstream.wait_for(lambda stats: stats["streams_closed_early"] == 1, timeout=10), upstream.stats()
    assert upstream.stats()["streams_completed"] == 0


def test_a_real_progress_function(loaded: Page, artifacts_dir: Path) -> None:
    outcome = collect(loaded, "/invoke/count_to", body={"inputs": {"n": 10, "delay": 0.01}})
    kinds = [e["type"] for e in outcome["events"]]
    assert kinds == ["start", *["progress"] * 10, "done"]
    percentages = [e["data"]["percentage"] for e in outcome["events"] if e["type"] == "progress"]
    assert percentages == list(range(10, 101, 10))
    assert outcome["last"] == {"type": "done", "data": {"count": 10, "success": True}}
    loaded.screenshot(path=str(artifacts_dir / "events_js_count_to.png"), full_page=True)


def test_a_real_batch_function_and_its_input_errors(loaded: Page) -> None:
    outcome = collect(loaded, "/invoke/batch_process", body={"inputs": {"items": ["x", 2], "delay": 0}})
    results = [e["data"]["result"] for e in outcome["events"] if e["type"] == "progress"]
    assert results == [{"upper": "X", "length": 1, "words": 1}, {"value": 2, "square": 4}]
    assert outcome["last"]["data"]["processed"] == 2
    outcome = collect(loaded, "/invoke/batch_process", body={"inputs": {"items": "not a list"}})
    assert outcome["error"]["status"] == 400 and "items" in outcome["error"]["message"]


def test_aborting_a_real_function_stream_closes_the_upstream_stream(loaded: Page, upstream: FakeUpstream) -> None:
    upstream.configure(reply=" ".join(["word"] * 400), stream_chunk_delay=0.05)
    body = {"inputs": {"message": "hi"}}
    outcome = loaded.evaluate(ABORT_AFTER, ["/invoke/chat_stream", {"body": body}, 3])
    assert outcome["error"]["name"] == "AbortError"
    assert upstream.wait_for(lambda stats: stats["streams_closed_early"] == 1, timeout=10), upstream.stats()
