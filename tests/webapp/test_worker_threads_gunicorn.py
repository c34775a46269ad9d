"""The gunicorn worker sets the GIL's switch interval from FLOWBRIDGE_SWITCH_INTERVAL."""

from __future__ import annotations

import pytest

from webapp.config import ConfigError
from webapp.server.worker import DEFAULT_SWITCH_INTERVAL, switch_interval


def test_the_switch_interval_has_a_default_and_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWBRIDGE_SWITCH_INTERVAL", raising=False)
    assert switch_interval() == DEFAULT_SWITCH_INTERVAL
    monkeypatch.setenv("FLOWBRIDGE_SWITCH_INTERVAL", "0.005")
    assert switch_interval() == 0.005


@pytest.mark.parametrize("bad", ["soon", "0", "-1", "nan", "2"])
def test_a_bad_switch_interval_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("FLOWBRIDGE_SWITCH_INTERVAL", bad)
    with pytest.raises(ConfigError, match="FLOWBRIDGE_SWITCH_INTERVAL"):
        switch_interval()
