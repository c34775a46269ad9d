"""The *_async methods: a bounded thread pool in front of the sync core."""

from __future__ import annotations

import asyncio
import threading

import pytest

from async_utils import AsyncBatchProcessor, AsyncHelper
from llm_client import LLMClient, LLMQueueFullError
from tests.fake_upstream import FakeUpstream


def make(upstream: FakeUpstream, **kw: object) -> LLMClient:
    return LLMClient(upstream.base_url, env={}, **kw)


def test_async_calls_overlap_up_to_the_worker_count(upstream: FakeUpstream) -> None:
    upstream.configure(delay=0.4)  # long enough that calls started together overlap on a busy machine

    async def main() -> list[str]:
        async with make(upstream, max_workers=5) as client:
            return await asyncio.gather(*(client.chat_async(f"q{i}") for i in range(10)))

    assert asyncio.run(main()) == [f"echo: q{i}" for i in range(10)]
    stats = upstream.stats()
    assert stats["requests"] == 10 and stats["max_concurrency"] == 5


def test_workers_come_from_the_environment(upstream: FakeUpstream) -> None:
    with LLMClient(upstream.base_url, env={"LLM_ASYNC_WORKERS": "3", "LLM_ASYNC_QUEUE_SIZE": "7"}) as client:
        stats = client.pool_stats
    assert (stats.size, stats.capacity, stats.running, stats.queued) == (3, 10, 0, 0)


def test_nothing_is_sent_before_the_coroutine_is_awaited(upstream: FakeUpstream) -> None:
    async def main() -> None:
        async with make(upstream) as client:
            pending = client.chat_async("x")
            await asyncio.sleep(0.05)
            assert upstream.stats()["requests"] == 0 and client.pool_stats.queued == 0
            assert await pending == "echo: x"

    asyncio.run(main())


def test_gather_with_limit_bounds_the_upstream(upstream: FakeUpstream) -> None:
    upstream.configure(delay=0.3)  # long enough that calls started together overlap on a busy machine

    async def main() -> list[str]:
        async with make(upstream, max_workers=8) as client:
            return await AsyncHelper.gather_with_limit([client.chat_async(f"{i}") for i in range(9)], limit=3)

    assert asyncio.run(main()) == [f"echo: {i}" for i in range(9)]
    # never more than the limit at once (a loaded machine may overlap fewer: no lower bound is asserted)
    assert 1 <= upstream.stats()["max_concurrency"] <= 3


def test_one_call_beyond_workers_plus_queue_fails_at_once(upstream: FakeUpstream) -> None:
    upstream.configure(delay=2.0)  # the checks below must happen while the first two calls run

    async def main() -> None:
        async with make(upstream, max_workers=2, queue_size=1) as client:
            accepted = [asyncio.ensure_future(client.chat_async(f"{i}")) for i in range(3)]
            for _ in range(300):  # bounded: 3 s for both pool threads to start
                stats = client.pool_stats
                if (stats.running, stats.queued) == (2, 1):
                    break
                await asyncio.sleep(0.01)
            assert (stats.running, stats.queued) == (2, 1)
            with pytest.raises(LLMQueueFullError, match="busy"):
                await client.chat_async("one too many")
            assert await asyncio.gather(*accepted) == ["echo: 0", "echo: 1", "echo: 2"]
            assert client.pool_stats.running == client.pool_stats.queued == 0

    asyncio.run(main())
    assert upstream.stats()["requests"] == 3


def test_async_timeout(upstream: FakeUpstream) -> None:
    upstream.configure(delay=1.0)

    async def main() -> None:
        async with LLMClient(upstream.base_url, env={"LLM_ASYNC_TIMEOUT": "0.2"}) as client:
            with pytest.raises(asyncio.TimeoutError):
                await client.chat_async("slow")

    asyncio.run(main())


def test_disabled_bridge_runs_on_the_calling_thread(upstream: FakeUpstream) -> None:
    def bridge_threads() -> int:
        return sum(t.name.startswith("llm-bridge") for t in threading.enumerate())

    async def main() -> None:
        before = bridge_threads()
        async with LLMClient(upstream.base_url, env={"LLM_ASYNC_ENABLED": "false"}) as client:
            assert await client.chat_async("x") == "echo: x"
            assert await client.embed_async(["x"])
            assert bridge_threads() <= before
            assert client.pool_stats.running == 0

    asyncio.run(main())


def test_chat_with_context_and_embed_async(upstream: FakeUpstream) -> None:
    async def main() -> None:
        async with make(upstream) as client:
            messages = [{"role": "user", "content": "ctx"}]
            assert await client.chat_with_context_async(messages, temperature=0.1, max_tokens=9) == "echo: ctx"
            assert upstream.stats()["last_request"]["json"]["max_tokens"] == 9
            assert await client.embed_async(["a", "b"]) == client.embed(["a", "b"])

    asyncio.run(main())


def test_stream_async(upstream: FakeUpstream) -> None:
    upstream.configure(reply="alpha beta gamma")

    async def main() -> list[str]:
        async with make(upstream) as client:
            return [part async for part in client.chat_stream_async("x")]

    parts = asyncio.run(main())
    assert "".join(parts) == "alpha beta gamma" and len(parts) == 3


def test_stream_async_stopped_early_closes_the_upstream(upstream: FakeUpstream) -> None:
    upstream.configure(reply=" ".join(f"w{i}" for i in range(300)), stream_chunk_delay=0.02)

    async def main() -> None:
        async with make(upstream, max_workers=1) as client:
            stream = client.chat_stream_async("x")
            assert await stream.__anext__() == "w0"
            await stream.aclose()
            assert upstream.wait_for(lambda s: s["streams_closed_early"] == 1)
            upstream.configure(reply=None)
            # the only worker is free again
            assert await client.chat_async("next") == "echo: next"

    asyncio.run(main())


def test_cleanup_is_idempotent_and_final(upstream: FakeUpstream) -> None:
    client = make(upstream)
    assert client.chat("x") == "echo: x"
    client.cleanup()
    client.cleanup()
    assert client.closed

    async def main() -> None:
        with pytest.raises(RuntimeError, match="closed"):
            await client.chat_async("x")
        with pytest.raises(RuntimeError, match="closed"):
            await client.chat_with_context_async([{"role": "user", "content": "x"}])
        with pytest.raises(RuntimeError, match="closed"):
            await client.embed_async("x")

    asyncio.run(main())


def test_batch_processor_over_the_client(upstream: FakeUpstream) -> None:
    upstream.configure(delay=0.3)  # long enough that calls started together overlap on a busy machine
    seen: list[tuple[int, int]] = []

    async def main() -> list[str]:
        async with make(upstream, max_workers=10) as client:
            processor = AsyncBatchProcessor(client.chat_async, batch_size=4, max_workers=2)
            processor_progress = AsyncBatchProcessor(
                client.chat_async, batch_size=4, max_workers=2, progress=lambda d, t: seen.append((d, t)))
            first = await processor.process_batch([f"i{n}" for n in range(6)])
            await processor_progress.process_batch(["a", "b"])
            return first

    assert asyncio.run(main()) == [f"echo: i{n}" for n in range(6)]
    assert upstream.stats()["max_concurrency"] == 2
    assert seen[-1] == (2, 2)


def test_run_async_in_sync(upstream: FakeUpstream) -> None:
    with make(upstream) as client:
        assert AsyncHelper.run_async_in_sync(client.chat_async("sync")) == "echo: sync"
        assert AsyncHelper.run_async_in_sync(client.chat_async("again")) == "echo: again"

        async def inside_a_loop() -> str:
            return AsyncHelper.run_async_in_sync(client.chat_async("nested"))

        assert asyncio.run(inside_a_loop()) == "echo: nested"


def test_seed_example_with_context_manager_and_error_handling(upstream: FakeUpstream) -> None:
    upstream.push_faults({"status": 400})

    async def main() -> list[object]:
        async with LLMClient(upstream.base_url, env={}) as client:
            return await asyncio.gather(*(client.chat_async(p) for p in ["问题1", "问题2"]), return_exceptions=True)

    results = asyncio.run(main())
    assert sum(isinstance(r, Exception) for r in results) == 1
    assert "echo: 问题1" in results or "echo: 问题2" in results
