"""Fixtures and small tools shared by the ``async_utils`` tests."""

from __future__ import annotations

import asyncio

import pytest

from async_utils import AsyncConfig


@pytest.fixture(autouse=True)
def clean_async_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start with no ``LLM_ASYNC_*`` variable set."""
    for name in AsyncConfig.VARIABLES:
        monkeypatch.delenv(name, raising=False)


class InFlight:
    """Counts coroutines running at once; ``peak`` is the most seen together."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.started = 0
        self.cancelled = 0

    async def work(self, value: object, delay: float = 0.01) -> object:
        self.started += 1
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(delay)
            return value
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.now -= 1


@pytest.fixture
def in_flight() -> InFlight:
    return InFlight()
