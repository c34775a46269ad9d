"""The examples of seeds/002 (LLMClient async docs), run as written but for imports and the base URL."""

from __future__ import annotations

import asyncio
import time

import pytest
from flask import Flask, jsonify, request

from async_utils import AsyncBatchProcessor, AsyncConfig, AsyncHelper, async_route
from llm_client import LLMClient
from tests.fake_upstream import FakeUpstream


@pytest.fixture(autouse=True)
def _point_at_upstream(upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_BASE_URL", upstream.base_url)


def test_basic_usage() -> None:
    async def main():
        client = LLMClient()
        response = await client.chat_async("你好")
        print(response)
        client.cleanup()
        return response

    assert asyncio.run(main()) == "echo: 你好"


def test_concurrent_example(upstream: FakeUpstream) -> None:
    upstream.configure(delay=0.3)  # long enough that calls started together overlap on a busy machine

    async def concurrent_example():
        client = LLMClient()
        prompts = ["问题1", "问题2", "问题3"]
        tasks = [client.chat_async(p) for p in prompts]
        responses = await asyncio.gather(*tasks)
        client.cleanup()
        return responses

    assert asyncio.run(concurrent_example()) == ["echo: 问题1", "echo: 问题2", "echo: 问题3"]
    assert upstream.stats()["max_concurrency"] == 3


def test_signatures_and_config(monkeypatch: pytest.MonkeyPatch) -> None:
    client = LLMClient()

    async def main():
        assert await client.chat_async("p", temperature=0.0, max_tokens=256, system_prompt=None) == "echo: p"
        return await client.chat_with_context_async(
            messages=[{"role": "user", "content": "c"}], temperature=0.7, max_tokens=256)

    assert asyncio.run(main()) == "echo: c"
    client.cleanup()
    assert (AsyncConfig.get_worker_count(), AsyncConfig.get_queue_size(), AsyncConfig.get_timeout(),
            AsyncConfig.is_async_enabled()) == (5, 100, 30.0, True)
    monkeypatch.setenv("LLM_ASYNC_WORKERS", "12")
    assert AsyncConfig.get_worker_count() == 12
    if AsyncConfig.is_async_enabled():
        pass


def test_batch_timeout_and_limit() -> None:
    async def main():
        client = LLMClient()
        processor = AsyncBatchProcessor(process_func=client.chat_async, batch_size=10, max_workers=5)
        items = ["item1", "item2", "item3"]
        results = await processor.process_batch(items)
        try:
            result = await AsyncHelper.run_with_timeout(client.chat_async("prompt"), timeout=5.0)
        except asyncio.TimeoutError:
            print("请求超时")
        prompts = ["a", "b", "c", "d"]
        tasks = [client.chat_async(p) for p in prompts]
        limited = await AsyncHelper.gather_with_limit(tasks, limit=3)
        client.cleanup()
        return results, result, limited

    results, result, limited = asyncio.run(main())
    assert results == ["echo: item1", "echo: item2", "echo: item3"]
    assert result == "echo: prompt" and limited == ["echo: a", "echo: b", "echo: c", "echo: d"]


def test_flask_integration() -> None:
    app = Flask(__name__)
    client = LLMClient()

    @app.route("/api/chat", methods=["POST"])
    @async_route
    async def chat_endpoint():
        response = await client.chat_async(request.json["message"])
        return jsonify({"response": response})

    with app.test_client() as http:
        assert http.post("/api/chat", json={"message": "hi"}).json == {"response": "echo: hi"}
        assert http.post("/api/chat", json={"message": "again"}).json == {"response": "echo: again"}
    client.cleanup()


def test_sync_usage_and_hybrid_processor() -> None:
    client = LLMClient()

    def sync_function():
        return AsyncHelper.run_async_in_sync(client.chat_async("hello"))

    class HybridProcessor:
        def __init__(self, client):
            self.client = client

        def process_sync(self, message):
            return self.client.chat(message)

        async def process_async(self, message):
            return await self.client.chat_async(message)

        def process(self, message, async_mode=False):
            if async_mode:
                return AsyncHelper.run_async_in_sync(self.process_async(message))
            return self.process_sync(message)

    assert sync_function() == "echo: hello"
    hybrid = HybridProcessor(client)
    assert hybrid.process("x") == hybrid.process("x", async_mode=True) == "echo: x"
    client.cleanup()


def test_context_manager_monitoring_and_errors(upstream: FakeUpstream) -> None:
    class AsyncLLMClient:
        async def __aenter__(self):
            self.client = LLMClient()
            return self.client

        async def __aexit__(self, exc_type, exc_val, exc_tb):
            self.client.cleanup()

    async def main():
        async with AsyncLLMClient() as client:
            start = time.time()
            response = await client.chat_async("hello")
            duration = time.time() - start
            print(f"请求耗时: {duration:.2f}秒")
            print(f"最大线程数: {client._executor._max_workers}")
            print(f"活跃线程数: {len(client._executor._threads)}")
            print(f"待处理任务: {client._executor._work_queue.qsize()}")
            assert client._executor._max_workers == client.pool_stats.size == 5
        try:
            await client.chat_async("after cleanup")
        except RuntimeError as e:
            return response, f"客户端错误: {e}"

    response, error = asyncio.run(main())
    assert response == "echo: hello" and "closed" in error

    upstream.push_faults({"status": 400})

    async def batch_errors():
        client = LLMClient()
        tasks = [client.chat_async(p) for p in ["1", "2"]]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        client.cleanup()
        return [isinstance(r, Exception) for r in results]

    assert sorted(asyncio.run(batch_errors())) == [False, True]


def test_jupyter_style_asyncio_run() -> None:
    client = LLMClient()
    assert asyncio.run(client.chat_async("hello")) == "echo: hello"
    client.cleanup()
