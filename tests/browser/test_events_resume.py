"""``events.js`` in headless Chromium resumes a task's event stream when the worker serving it dies.

Two gunicorn masters share one SQLite task database: ``runner`` runs the task; ``streamer`` (one
worker) serves the page and the stream. The test kills the streamer's worker in the middle of the
stream (SIGKILL, as a crash: the stream is cut without an error event); its master starts another
one, and ``streamEvents`` fetches the stream again with ``Last-Event-ID``: the page sees every event
once and the ``done`` at the end.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer, two_servers_on_one_store
from tests.webapp.test_task_events import llm_schema

if TYPE_CHECKING:
    from playwright.sync_api import Page

#: Starts streamEvents in the page; the events and the outcome land in window.__stream.
START = """(url) => {
  window.__stream = {events: [], done: false};
  flowbridge.streamEvents(url, {onEvent: (e) => window.__stream.events.push(e)})
    .then((last) => { window.__stream.last = last; window.__stream.done = true; })
    .catch((e) => { window.__stream.error = e.message; window.__stream.done = true; });
}"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory,
            _upstream_server: FakeUpstream) -> Iterator[tuple[GunicornServer, GunicornServer]]:
    with two_servers_on_one_store(tmp_path_factory.mktemp("events_resume"), _upstream_server.base_url,
                                  1, 1) as servers:
        yield servers


def events(page: Page) -> list[dict[str, object]]:
    return page.evaluate("() => window.__stream.events")


def test_a_stream_cut_by_a_dying_worker_resumes_in_the_browser(
        page: Page, servers: tuple[GunicornServer, GunicornServer], upstream: FakeUpstream,
        artifacts_dir: Path) -> None:
    runner, streamer = servers
    upstream.configure(delay=4.0)  # the llm node runs while the worker dies and its successor boots
    response = requests.post(runner.url + "/api/task/run", timeout=10,
                             json={"schema": json.dumps(llm_schema()), "inputs": {"q": "resume"}})
    task_id = response.json()["taskID"]
    page.goto(streamer.url + "/tasks")
    page.add_script_tag(url="/static/js/events.js")
    page.evaluate(START, f"/api/task/events?taskID={task_id}")
    deadline = time.monotonic() + 30
    while not any(e.get("type") == "progress" and e["data"] == {**e["data"], "nodeID": "llm_0", "status": "processing"}
                  for e in events(page)):
        assert time.monotonic() < deadline, events(page)
        page.wait_for_timeout(100)
    (victim,) = streamer.worker_pids  # this test's own gunicorn's only worker
    os.kill(victim, signal.SIGKILL)
    page.wait_for_function("() => window.__stream.done", timeout=60_000)
    outcome = page.evaluate("() => window.__stream")
    assert "error" not in outcome, outcome
    got = outcome["events"]
    assert outcome["last"]["type"] == "done" and outcome["last"]["data"]["outputs"] == {"answer": "echo: resume"}
    assert [e["type"] for e in got].count("start") == 1 and got[-1] == outcome["last"]
    keys = [json.dumps([e["type"], e["data"].get("nodeID"), e["data"].get("status")]) for e in got
            if isinstance(e["data"], dict)]
    assert len(keys) == len(set(keys)), f"an event came twice: {keys}"
    last = {e["data"]["nodeID"]: e["data"]["status"] for e in got if e["type"] == "progress"}
    assert last == {"start_0": "succeeded", "llm_0": "succeeded", "end_0": "succeeded"}
    assert page.js_errors == []  # type: ignore[attr-defined]
    page.screenshot(path=str(artifacts_dir / "events_resume.png"), full_page=True)


def test_a_line_separator_in_an_event_does_not_break_the_reader(
        page: Page, servers: tuple[GunicornServer, GunicornServer], upstream: FakeUpstream) -> None:
    # JSON may hold U+2028/U+2029 raw (the server writes UTF-8, not \u escapes); a field parser built on
    # a regex's "." stopped there and threw, so the page never saw the event
    runner, streamer = servers
    reply = "one\u2028two\u2029three"
    upstream.configure(reply=reply)
    response = requests.post(runner.url + "/api/task/run?wait=30", timeout=40,
                             json={"schema": json.dumps(llm_schema()), "inputs": {"q": "separators"}})
    assert response.json()["status"] == "succeeded", response.json()
    page.goto(streamer.url + "/tasks")
    page.add_script_tag(url="/static/js/events.js")
    page.evaluate(START, f"/api/task/events?taskID={response.json()['taskID']}")
    page.wait_for_function("() => window.__stream.done", timeout=30_000)
    outcome = page.evaluate("() => window.__stream")
    assert "error" not in outcome, outcome
    assert outcome["last"]["type"] == "done" and outcome["last"]["data"]["outputs"] == {"answer": reply}
    assert page.js_errors == []  # type: ignore[attr-defined]
