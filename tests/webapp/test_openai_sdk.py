"""The official ``openai`` SDK against ``/v1`` of a live gunicorn (2 workers, the fake upstream).

Chat with the upstream model (sync and async clients, streamed and not, tool calls, usage), a flow
model and a workflow model; ``models.list()``; embeddings; response headers through
``with_raw_response``; a burst of identical temperature-0 requests answered by one upstream call.
The errors, each reaching the SDK as its exception class, are in test_openai_errors.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.fake_upstream import FakeUpstream, embedding_for
from tests.servers import GunicornServer
from tests.webapp.openai_live import KEY, UPSTREAM_MODEL, serve

CHAT = "/v1/chat/completions"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "the weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, _upstream_server: FakeUpstream) -> Iterator[GunicornServer]:
    folder = tmp_path_factory.mktemp("openai_sdk")
    extra = {"LLM_CACHE": f"sqlite:{folder / 'llm_cache.db'}", "FLOWBRIDGE_OPENAI_MODELS": "other-model, third"}
    with serve(_upstream_server.base_url, folder, extra) as server:
        yield server


@pytest.fixture
def client(served: GunicornServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=served.url + "/v1", api_key=KEY, max_retries=0, timeout=60) as sdk:
        yield sdk


def chats(upstream: FakeUpstream) -> int:
    return upstream.stats()["by_path"].get(CHAT, 0)


def test_a_chat_with_the_upstream_model(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    completion = client.chat.completions.create(
        model=UPSTREAM_MODEL, messages=[{"role": "system", "content": "be brief"},
                                        {"role": "user", "content": "hello there"}],
        temperature=0.5, max_tokens=20, top_p=0.9, seed=3)
    assert completion.object == "chat.completion" and completion.id.startswith("chatcmpl-")
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == "echo: hello there"
    assert choice.finish_reason == "stop" and choice.index == 0
    assert completion.usage is not None and completion.usage.total_tokens > 0
    sent = upstream.stats()["last_request"]["json"]
    # The request reached the upstream as the client sent it, with the model it named.
    assert sent["model"] == UPSTREAM_MODEL and sent["temperature"] == 0.5 and sent["max_tokens"] == 20
    assert sent["top_p"] == 0.9 and sent["seed"] == 3 and len(sent["messages"]) == 2


def test_another_configured_upstream_model_is_sent_by_its_name(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    assert [m.id for m in client.models.list()][:3] == [UPSTREAM_MODEL, "other-model", "third"]
    client.chat.completions.create(model="other-model", messages=[{"role": "user", "content": "hi other"}])
    assert upstream.stats()["last_request"]["json"]["model"] == "other-model"


def test_headers_through_with_raw_response(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=UPSTREAM_MODEL, messages=[{"role": "user", "content": "headers please"}], temperature=0,
        extra_headers={"X-Request-ID": "openai-sdk-test-1"})
    assert raw.headers["X-Request-ID"] == "openai-sdk-test-1"
    assert raw.headers["X-Cache"] in ("miss", "hit")  # LLM_CACHE is on and temperature is 0
    assert raw.parse().choices[0].message.content == "echo: headers please"
    again = client.chat.completions.with_raw_response.create(
        model=UPSTREAM_MODEL, messages=[{"role": "user", "content": "headers please"}], temperature=0)
    assert again.headers["X-Cache"] == "hit" and again.headers["X-Request-ID"]


def test_a_streamed_chat_with_usage(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    stream = client.chat.completions.create(
        model=UPSTREAM_MODEL, messages=[{"role": "user", "content": "one two three four"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three four"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # delta by delta
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert len({c.id for c in chunks}) == 1
    assert upstream.stats()["last_request"]["json"]["stream_options"] == {"include_usage": True}


def test_the_stream_ends_with_done_on_the_wire(served: GunicornServer) -> None:
    import requests

    body = {"model": UPSTREAM_MODEL, "messages": [{"role": "user", "content": "wire"}], "stream": True}
    with requests.post(served.url + CHAT, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as r:
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        frames = [f for f in r.text.split("\n\n") if f.strip() and not f.startswith(":")]
    assert frames[-1] == "data: [DONE]"
    assert all(f.startswith("data: {") for f in frames[:-1])
    assert json.loads(frames[0][len("data: "):])["object"] == "chat.completion.chunk"


def test_tool_calls_not_streamed_then_answered(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script([{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}, "It is sunny."],
                    match="weather in Paris")
    messages: list[dict] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model=UPSTREAM_MODEL, messages=messages, tools=[WEATHER],
                                           tool_choice="auto")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert upstream.stats()["last_request"]["json"]["tools"] == [WEATHER]
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}]
    second = client.chat.completions.create(model=UPSTREAM_MODEL, messages=messages, tools=[WEATHER])
    assert second.choices[0].message.content == "It is sunny." and second.choices[0].finish_reason == "stop"


def test_tool_calls_streamed(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.script([{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}], match="Oslo")
    stream = client.chat.completions.create(
        model=UPSTREAM_MODEL, messages=[{"role": "user", "content": "weather in Oslo?"}], tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, stream=True)
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        delta = chunk.choices[0].delta
        for piece in delta.tool_calls or ():
            entry = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += piece.id or ""
            entry["name"] += (piece.function.name or "") if piece.function else ""
            entry["arguments"] += (piece.function.arguments or "") if piece.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and list(calls) == [0]
    assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"]) == {"city": "Oslo"}
    assert calls[0]["id"].startswith("call_")


def test_response_format_reaches_the_upstream(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    completion = client.chat.completions.create(
        model=UPSTREAM_MODEL, messages=[{"role": "user", "content": "a city as JSON"}],
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}})
    assert set(json.loads(completion.choices[0].message.content)) == {"city"}


def test_the_async_client_streamed_and_not(served: GunicornServer, upstream: FakeUpstream) -> None:
    async def run() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=served.url + "/v1", api_key=KEY, max_retries=0, timeout=60) as sdk:
            plain = await sdk.chat.completions.create(
                model=UPSTREAM_MODEL, messages=[{"role": "user", "content": "async hello"}])
            stream = await sdk.chat.completions.create(
                model=UPSTREAM_MODEL, messages=[{"role": "user", "content": "async stream"}], stream=True)
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            return plain.choices[0].message.content or "", "".join(parts)

    assert asyncio.run(run()) == ("echo: async hello", "echo: async stream")


def test_models_list_names_upstream_flow_and_workflow_models_with_their_input(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert UPSTREAM_MODEL in models and models[UPSTREAM_MODEL].owned_by == "upstream"
    assert {"flow/chat", "flow/echo", "flow/stream_chat", "workflow/code", "workflow/branch",
            "workflow/answer"} <= set(models)
    extra = {m: models[m].model_extra for m in ("flow/chat", "flow/echo", "workflow/branch", "workflow/loop")}
    assert extra["flow/chat"]["input"] == "messages: the whole conversation"
    assert extra["flow/echo"]["input"].startswith("text: the last user message")
    assert extra["workflow/branch"]["input"].startswith("question: the last user message")
    assert extra["workflow/loop"]["input"] == "the last user message as a JSON object of the inputs (topics)"


def test_a_flow_model(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    echo = client.chat.completions.create(model="flow/echo", messages=[{"role": "user", "content": "ping flow"}])
    assert echo.model == "flow/echo" and echo.choices[0].message.content == "Echo: ping flow"
    chat = client.chat.completions.create(model="flow/chat", messages=[
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second question"}])
    assert chat.choices[0].message.content == "echo: second question"
    assert len(upstream.stats()["last_request"]["json"]["messages"]) >= 3  # the whole conversation went in


def test_a_flow_model_streamed(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="flow/stream_chat", messages=[{"role": "user", "content": "stream this flow"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream this flow"
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert chunks[-1].usage is not None and chunks[-2].choices[0].finish_reason == "stop"


def test_a_workflow_model_text_json_and_object_input(client: openai.OpenAI) -> None:
    code = client.chat.completions.create(model="workflow/code",
                                          messages=[{"role": "user", "content": "to be or not to be"}])
    outputs = json.loads(code.choices[0].message.content)  # three outputs: JSON
    assert outputs["words"] == 6 and outputs["shout"] == "TO BE OR NOT TO BE"
    answer = client.chat.completions.with_raw_response.create(
        model="workflow/answer", messages=[{"role": "user", "content": "Why is grass green?"}])
    assert answer.headers["X-Task-ID"]
    assert answer.parse().choices[0].message.content.startswith("echo: ")  # one string output: text
    loop = client.chat.completions.create(model="workflow/loop", messages=[
        {"role": "user", "content": json.dumps({"topics": ["rivers", "seas"]})}])
    assert json.loads(loop.choices[0].message.content)["topics"] == ["rivers", "seas"]


def test_a_workflow_model_streams_its_progress(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="workflow/branch", messages=[{"role": "user", "content": "Why is the sea blue?"}], stream=True)
    chunks = list(stream)
    progress = [c.model_extra["progress"] for c in chunks if c.model_extra.get("progress")]
    assert {"start_0", "end_0"} <= {p["nodeID"] for p in progress}
    assert all(c.choices[0].delta.model_extra["reasoning_content"] for c in chunks if c.model_extra.get("progress"))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert json.loads(text)["detail"] == "short"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_embeddings_float_and_base64(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model=UPSTREAM_MODEL, input=["alpha", "beta"])  # the SDK asks for base64
    assert [d.index for d in result.data] == [0, 1]
    for text, row in zip(["alpha", "beta"], result.data, strict=True):
        assert all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)
                   for a, b in zip(row.embedding, embedding_for(text, 8), strict=True))
    floats = client.embeddings.create(model=UPSTREAM_MODEL, input="gamma", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(list(embedding_for("gamma", 8)))
    assert floats.usage.prompt_tokens == 1 and floats.model == UPSTREAM_MODEL


def test_a_burst_of_50_identical_requests_reaches_the_upstream_once(
    served: GunicornServer, upstream: FakeUpstream
) -> None:
    upstream.configure(delay=0.5)
    before = chats(upstream)

    def ask(_: int) -> tuple[str, str]:
        # 50 at once exceed the server's request threads (2 x 8): the capacity guard refuses some with 503 and
        # Retry-After, and the SDK retries them, as it does by default; each retry is answered from the cache.
        with openai.OpenAI(base_url=served.url + "/v1", api_key=KEY, max_retries=4, timeout=60) as sdk:
            raw = sdk.chat.completions.with_raw_response.create(
                model=UPSTREAM_MODEL, messages=[{"role": "user", "content": "the burst question"}], temperature=0)
            return raw.parse().choices[0].message.content or "", raw.headers["X-Cache"]

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(ask, range(50)))
    assert {text for text, _ in results} == {"echo: the burst question"}
    assert chats(upstream) - before == 1
    assert [how for _, how in results].count("miss") == 1
    assert {how for _, how in results} <= {"miss", "hit", "coalesced"}


def test_metrics_count_the_v1_routes(served: GunicornServer, client: openai.OpenAI) -> None:
    import requests

    client.models.list()
    client.chat.completions.create(model=UPSTREAM_MODEL, messages=[{"role": "user", "content": "count me"}])
    text = ""
    for _ in range(50):  # the access is counted when the response ends: poll, bounded
        text = requests.get(served.url + "/metrics", timeout=10).text
        if 'route="/v1/models"' in text and 'route="/v1/chat/completions"' in text:
            break
        time.sleep(0.05)
    assert 'flowbridge_http_requests_total{method="GET",route="/v1/models",status="200"}' in text
    assert 'flowbridge_http_requests_total{method="POST",route="/v1/chat/completions",status="200"}' in text


def test_a_client_closing_a_stream_closes_the_upstream_one(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    upstream.configure(stream_chunk_delay=0.2, reply=" ".join(["word"] * 200))
    stream = client.chat.completions.create(model=UPSTREAM_MODEL, messages=[{"role": "user", "content": "long"}],
                                            stream=True)
    first = next(iter(stream))
    assert first.choices[0].delta.content
    stream.close()
    assert upstream.wait_for(lambda s: s["streams_closed_early"] >= 1, timeout=20)


def test_a_client_leaving_a_workflow_stream_cancels_its_task(served: GunicornServer, client: openai.OpenAI,
                                                             upstream: FakeUpstream) -> None:
    import requests

    upstream.configure(delay=15)
    raw = client.chat.completions.with_raw_response.create(
        model="workflow/answer", messages=[{"role": "user", "content": "never mind"}], stream=True)
    task_id = raw.headers["X-Task-ID"]
    stream = raw.parse()
    next(iter(stream))  # the first chunk: the task runs
    stream.close()
    status = ""
    for _ in range(200):  # noticed within a probe interval or two, recorded by the runner: poll, bounded
        status = requests.get(served.url + f"/api/task/result?taskID={task_id}",
                              headers={"Authorization": f"Bearer {KEY}"}, timeout=10).json().get("error", {}).get(
            "type", "")
        if status == "task_canceled":
            break
        time.sleep(0.1)
    assert status == "task_canceled"


def test_models_retrieve_finds_each_listed_model_and_404s_an_unknown_one(client: openai.OpenAI) -> None:
    """``client.models.retrieve`` (GET /v1/models/{id}) answers the entry ``models.list()`` has, flows' and
    workflows' ids (which hold a slash) included; an unknown id is the SDK's NotFoundError."""
    listed = {m.id: m for m in client.models.list()}
    slashed = [i for i in listed if i.startswith(("flow/", "workflow/"))]
    assert any(i.startswith("flow/") for i in slashed) and any(i.startswith("workflow/") for i in slashed)
    for model_id in [UPSTREAM_MODEL, *slashed[:2], *slashed[-2:]]:
        assert client.models.retrieve(model_id) == listed[model_id]
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found" and "no-such-model" in caught.value.message
