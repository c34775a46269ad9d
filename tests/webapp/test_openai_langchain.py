"""LangChain's ``ChatOpenAI`` (langchain-openai) with ``base_url`` at ``/v1`` of a live gunicorn: a second
real OpenAI client, written by others, runs one chat and one streamed chat (and a flow model)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer
from tests.webapp.openai_live import KEY, UPSTREAM_MODEL, serve


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    with serve(_upstream_server.base_url, tmp_path_factory.mktemp("openai_langchain")) as server:
        yield server


def chat_model(served: GunicornServer, model: str = UPSTREAM_MODEL, **options: object) -> ChatOpenAI:
    return ChatOpenAI(model=model, base_url=served.url + "/v1", api_key=KEY, max_retries=0, timeout=60,
                      **options)


def test_one_chat(served: GunicornServer, upstream: FakeUpstream) -> None:
    reply = chat_model(served, temperature=0).invoke([SystemMessage("be brief"), HumanMessage("hello langchain")])
    assert reply.content == "echo: hello langchain"
    assert reply.usage_metadata is not None and reply.usage_metadata["total_tokens"] > 0
    sent = upstream.stats()["last_request"]["json"]
    assert sent["model"] == UPSTREAM_MODEL and [m["role"] for m in sent["messages"]] == ["system", "user"]


def test_one_streamed_chat(served: GunicornServer, upstream: FakeUpstream) -> None:
    chunks = list(chat_model(served, stream_usage=True).stream("stream for langchain please"))
    assert "".join(str(c.content) for c in chunks) == "echo: stream for langchain please"
    assert len([c for c in chunks if c.content]) > 1  # token by token, not one block
    assert upstream.stats()["last_request"]["json"]["stream"] is True
    usage = [c.usage_metadata for c in chunks if c.usage_metadata]
    assert usage and usage[-1]["output_tokens"] > 0


def test_a_flow_model_through_langchain(served: GunicornServer) -> None:
    assert chat_model(served, "flow/echo").invoke("flows too").content == "Echo: flows too"
