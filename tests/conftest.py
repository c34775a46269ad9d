"""Shared fixtures: a real fake OpenAI-compatible upstream on 127.0.0.1, a clean environment."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.fake_upstream import FakeUpstream


@pytest.fixture(autouse=True)
def clean_llm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's LLM_* / OPENAI_* settings."""
    for name in list(os.environ):
        if name.startswith(("LLM_", "OPENAI_", "FLOWBRIDGE_")):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def _upstream_server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def upstream(_upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    """The fake upstream, reset to its defaults for each test."""
    _upstream_server.reset()
    yield _upstream_server
    _upstream_server.reset()
