"""examples/notes.txt, the README's sample for ``process_text_file``, goes through ``/invoke`` as an upload."""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient

from tests.fake_upstream import FakeUpstream
from tests.servers import ROOT
from webapp import create_app

SAMPLE = ROOT / "examples" / "notes.txt"


def events_of(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.data
    frames = response.get_data(as_text=True).split("\n\n")
    return [json.loads(frame[len("data: "):]) for frame in frames if frame.startswith("data: ")]


def test_the_sample_file_is_processed_as_the_readme_shows(upstream: FakeUpstream) -> None:
    client: FlaskClient = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url}).test_client()
    text = SAMPLE.read_text(encoding="utf-8")
    lines = text.splitlines()
    with SAMPLE.open("rb") as sample:
        events = events_of(client.post("/invoke/process_text_file", data={"file": (sample, "notes.txt"),
                                                                           "every": "10"}))
    progress = [event["data"]["current"] for event in events if event["type"] == "progress"]
    assert progress == [*range(10, len(lines), 10), len(lines)]
    assert events[-1]["type"] == "done"
    assert events[-1]["data"] == {
        "lines": len(lines), "words": len(text.split()), "characters": sum(map(len, lines)),
        "blank_lines": sum(not line.strip() for line in lines), "longest_line": max(map(len, lines)),
        "success": True}
    assert upstream.stats()["requests"] == 0  # no model involved
