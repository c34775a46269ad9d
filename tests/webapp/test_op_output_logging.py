"""What an op answers is the user's content: never on an INFO line, at DEBUG at most."""

from __future__ import annotations

import logging

import pytest

from tests.fake_upstream import FakeUpstream
from webapp import create_app

ANSWER = "Pelican-7731 says the vault code is 0451"


@pytest.mark.parametrize("url", ["/api/ops/chat", "/api/flows/chat"])
def test_op_answers_stay_out_of_info_logs(upstream: FakeUpstream, caplog: pytest.LogCaptureFixture,
                                          url: str) -> None:
    upstream.configure(reply=ANSWER)
    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0",
                      "LOG_LEVEL": "DEBUG"})
    caplog.set_level(logging.DEBUG)
    response = app.test_client().post(url, json={"inputs": {"query": "what is the code?"}})
    assert response.status_code == 200 and response.json["answer"] == ANSWER
    leaks = [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records
             if r.levelno >= logging.INFO and "Pelican-7731" in r.getMessage()]
    assert leaks == []
    # The op still says that it answered (without the text); the text is there at DEBUG for debugging.
    assert any(r.levelno == logging.INFO and r.name == "ops.tool_op" for r in caplog.records)
    assert any(r.levelno == logging.DEBUG and "Pelican-7731" in r.getMessage() for r in caplog.records)
