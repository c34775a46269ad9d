"""``model=`` on every chat method of LLMClient, sync and async, streaming too; the response cache keys on it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from llm_client import LLMClient
from tests.fake_upstream import FakeUpstream

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def client(upstream: FakeUpstream) -> Iterator[LLMClient]:
    with LLMClient(upstream.base_url, api_key="sk-model-test-000000", model="configured", max_retries=0,
                   env={}) as made:
        yield made


def sent_models(upstream: FakeUpstream) -> list[str]:
    return [r["json"]["model"] for r in upstream.stats()["requests_log"] if r["path"] == CHAT]


async def _collect(parts: Any) -> str:
    return "".join([part async for part in parts])


#: each chat method, called with ``model`` (None: not passed); returns the answer text
CALLS: dict[str, Callable[[LLMClient, str | None], str]] = {
    "chat": lambda c, m: c.chat("hi", **_model(m)),
    "chat_with_context": lambda c, m: c.chat_with_context(MESSAGES, **_model(m)),
    "chat_completion": lambda c, m: c.chat_completion(MESSAGES, **_model(m)).text,
    "chat_stream": lambda c, m: "".join(c.chat_stream("hi", **_model(m))),
    "chat_stream_messages": lambda c, m: "".join(c.chat_stream(MESSAGES, **_model(m))),
    "chat_async": lambda c, m: asyncio.run(c.chat_async("hi", **_model(m))),
    "chat_with_context_async": lambda c, m: asyncio.run(c.chat_with_context_async(MESSAGES, **_model(m))),
    "chat_completion_async": lambda c, m: asyncio.run(c.chat_completion_async(MESSAGES, **_model(m))).text,
    "async_chat": lambda c, m: asyncio.run(c.async_chat("hi", **_model(m))),
    "async_chat_messages": lambda c, m: asyncio.run(c.async_chat(MESSAGES, **_model(m))),
    "chat_stream_async": lambda c, m: asyncio.run(_collect(c.chat_stream_async("hi", **_model(m)))),
}


def _model(model: str | None) -> dict[str, Any]:
    return {} if model is None else {"model": model}


@pytest.mark.parametrize("method", sorted(CALLS))
def test_each_chat_method_sends_the_model_of_the_call(client: LLMClient, upstream: FakeUpstream, method: str) -> None:
    assert CALLS[method](client, "gpt-4o") == "echo: hi"
    assert CALLS[method](client, None) == "echo: hi"
    assert sent_models(upstream) == ["gpt-4o", "configured"]
    assert client.model == "configured"  # the call changed nothing


@pytest.mark.parametrize("bad", ["", "   ", 3, ["m"]])
def test_a_bad_model_is_refused_before_sending(client: LLMClient, upstream: FakeUpstream, bad: Any) -> None:
    with pytest.raises(ValueError, match="model must be a non-empty string"):
        client.chat("hi", model=bad)
    with pytest.raises(ValueError, match="model must be a non-empty string"):
        asyncio.run(client.chat_completion_async(MESSAGES, model=bad))
    assert sent_models(upstream) == []


def test_the_model_is_part_of_the_cache_key(upstream: FakeUpstream) -> None:
    with LLMClient(upstream.base_url, model="configured", max_retries=0, env={"LLM_CACHE": "memory"}) as cached:
        first = cached.chat_completion(MESSAGES, temperature=0, model="m1")
        other = cached.chat_completion(MESSAGES, temperature=0, model="m2")
        again = cached.chat_completion(MESSAGES, temperature=0, model="m1")
        default = cached.chat_completion(MESSAGES, temperature=0)
        default_again = asyncio.run(cached.chat_completion_async(MESSAGES, temperature=0, model="configured"))
    assert [first.cache, other.cache, again.cache, default.cache, default_again.cache] == [
        "miss", "miss", "hit", "miss", "hit"]
    assert sent_models(upstream) == ["m1", "m2", "configured"]
