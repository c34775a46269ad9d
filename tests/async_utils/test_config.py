from __future__ import annotations

import pytest

from async_utils import AsyncConfig, AsyncConfigError


def test_defaults() -> None:
    assert AsyncConfig.get_worker_count() == 5
    assert AsyncConfig.get_queue_size() == 100
    assert AsyncConfig.get_timeout() == 30.0
    assert AsyncConfig.is_async_enabled() is True


def test_reads_environment_on_each_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_ASYNC_WORKERS", "8")
    monkeypatch.setenv("LLM_ASYNC_QUEUE_SIZE", "0")
    monkeypatch.setenv("LLM_ASYNC_TIMEOUT", "2.5")
    monkeypatch.setenv("LLM_ASYNC_ENABLED", "off")
    assert AsyncConfig.get_worker_count() == 8
    assert AsyncConfig.get_queue_size() == 0
    assert AsyncConfig.get_timeout() == 2.5
    assert AsyncConfig.is_async_enabled() is False
    monkeypatch.setenv("LLM_ASYNC_WORKERS", " 12 ")
    assert AsyncConfig.get_worker_count() == 12


def test_env_mapping_argument_overrides_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_ASYNC_WORKERS", "8")
    env = {"LLM_ASYNC_WORKERS": "3", "LLM_ASYNC_TIMEOUT": "1"}
    assert AsyncConfig.get_worker_count(env) == 3
    assert AsyncConfig.get_worker_count(env={}) == 5
    assert AsyncConfig.get_timeout(env=env) == 1.0
    assert AsyncConfig.get_queue_size(env) == 100
    assert AsyncConfig.is_async_enabled(env) is True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("Yes", True),
        ("on", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("NO", False),
        ("Off", False),
    ],
)
def test_enabled_words(raw: str, expected: bool) -> None:
    assert AsyncConfig.is_async_enabled({"LLM_ASYNC_ENABLED": raw}) is expected


def test_blank_value_means_default() -> None:
    env = {"LLM_ASYNC_WORKERS": "", "LLM_ASYNC_TIMEOUT": "  "}
    assert AsyncConfig.get_worker_count(env) == 5
    assert AsyncConfig.get_timeout(env) == 30.0
    assert not AsyncConfig.is_explicit("LLM_ASYNC_WORKERS", env)


@pytest.mark.parametrize(
    ("name", "raw", "getter"),
    [
        ("LLM_ASYNC_WORKERS", "abc", AsyncConfig.get_worker_count),
        ("LLM_ASYNC_WORKERS", "0", AsyncConfig.get_worker_count),
        ("LLM_ASYNC_WORKERS", "2.5", AsyncConfig.get_worker_count),
        ("LLM_ASYNC_QUEUE_SIZE", "-1", AsyncConfig.get_queue_size),
        ("LLM_ASYNC_QUEUE_SIZE", "many", AsyncConfig.get_queue_size),
        ("LLM_ASYNC_TIMEOUT", "0", AsyncConfig.get_timeout),
        ("LLM_ASYNC_TIMEOUT", "-3", AsyncConfig.get_timeout),
        ("LLM_ASYNC_TIMEOUT", "soon", AsyncConfig.get_timeout),
        ("LLM_ASYNC_TIMEOUT", "nan", AsyncConfig.get_timeout),
        ("LLM_ASYNC_TIMEOUT", "inf", AsyncConfig.get_timeout),
        ("LLM_ASYNC_ENABLED", "maybe", AsyncConfig.is_async_enabled),
    ],
)
def test_bad_values_name_variable_and_value(name, raw, getter, monkeypatch) -> None:
    monkeypatch.setenv(name, raw)
    with pytest.raises(AsyncConfigError) as info:
        getter()
    assert isinstance(info.value, ValueError)
    assert name in str(info.value)
    assert repr(raw) in str(info.value)
    assert (info.value.name, info.value.value) == (name, raw)


def test_bad_worker_message_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_ASYNC_WORKERS", "abc")
    with pytest.raises(AsyncConfigError, match=r"^LLM_ASYNC_WORKERS must be an integer >= 1, got 'abc'$"):
        AsyncConfig.get_worker_count()


def test_is_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not AsyncConfig.is_explicit("LLM_ASYNC_WORKERS")
    monkeypatch.setenv("LLM_ASYNC_WORKERS", "5")
    assert AsyncConfig.is_explicit("LLM_ASYNC_WORKERS")
    assert AsyncConfig.is_explicit("LLM_ASYNC_TIMEOUT", {"LLM_ASYNC_TIMEOUT": "3"})
    assert not AsyncConfig.is_explicit("LLM_ASYNC_TIMEOUT", {})
    with pytest.raises(ValueError, match="LLM_ASYNC_WORKER"):
        AsyncConfig.is_explicit("LLM_ASYNC_WORKER")
