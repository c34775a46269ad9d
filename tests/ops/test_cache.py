"""Op cache backends (memory and SQLite), OpCache and make_cache_backend."""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.cache import CacheBackend, MemoryCache, OpCache, SQLiteCache, make_cache_backend

TINY_TTL = 0.05


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``condition``; True as soon as it holds (no duration is asserted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheBackend]:
    if request.param == "memory":
        yield MemoryCache()
    else:
        cache = SQLiteCache(tmp_path / "cache.db")
        yield cache
        cache.close()


# -- backends ---------------------------------------------------------------------------------------


def test_backends_satisfy_the_protocol(backend: CacheBackend) -> None:
    assert isinstance(backend, CacheBackend)


@pytest.mark.parametrize(
    "value", [{"a": [1, 2.5, True, None]}, [1, "two"], "unicode ✓ 你好", 42, 1.5, True, None, {}, ""]
)
def test_round_trip(backend: CacheBackend, value: Any) -> None:
    backend.set("k", value, 60)
    assert backend.get("k") == (True, value)


def test_miss(backend: CacheBackend) -> None:
    assert backend.get("absent") == (False, None)


def test_none_is_a_hit(backend: CacheBackend) -> None:
    backend.set("nothing", None, 60)
    hit, value = backend.get("nothing")
    assert hit is True and value is None


def test_values_come_back_as_copies(backend: CacheBackend) -> None:
    backend.set("k", {"items": [1]}, 60)
    backend.get("k")[1]["items"].append(2)
    assert backend.get("k") == (True, {"items": [1]})
    backend.set("t", (1, 2), 60)
    assert backend.get("t") == (True, [1, 2])  # JSON has no tuples


@pytest.mark.parametrize("value", [object(), {1, 2}, {"nested": b"bytes"}])
def test_non_json_values_are_a_type_error_naming_key_and_type(backend: CacheBackend, value: Any) -> None:
    with pytest.raises(TypeError, match=rf"'the-key'.*{type(value).__name__}"):
        backend.set("the-key", value, 60)
    assert backend.get("the-key") == (False, None)


def test_set_replaces(backend: CacheBackend) -> None:
    backend.set("k", {"old": 1, "gone": 2}, 60)
    backend.set("k", {"new": 3}, 60)
    assert backend.get("k") == (True, {"new": 3})


@pytest.mark.parametrize("ttl", [0, -1])
def test_zero_ttl_expires_at_once(backend: CacheBackend, ttl: float) -> None:
    backend.set("k", "v", ttl)
    assert backend.get("k") == (False, None)
    backend.set("k", "v", 60)
    backend.set("k", "v2", ttl)  # replacing with an expired entry removes the old one
    assert backend.get("k") == (False, None)


def test_entries_expire(backend: CacheBackend) -> None:
    backend.set("short", "v", TINY_TTL)
    backend.set("long", "v", 3600)
    assert wait_until(lambda: backend.get("short") == (False, None))
    assert backend.get("long") == (True, "v")


def test_delete_and_clear(backend: CacheBackend) -> None:
    backend.set("a", 1, 60)
    backend.set("b", 2, 60)
    assert backend.delete("a") is True
    assert backend.delete("a") is False and backend.delete("never") is False
    assert backend.get("a") == (False, None) and backend.get("b") == (True, 2)
    backend.clear()
    assert backend.get("b") == (False, None)


def test_threads_share_a_backend(backend: CacheBackend) -> None:
    def work(i: int) -> None:
        for j in range(20):
            backend.set(f"{i}-{j}", [i, j], 60)
            assert backend.get(f"{i}-{j}") == (True, [i, j])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert backend.get("3-19") == (True, [3, 19])


def test_memory_cache_maxsize() -> None:
    cache = MemoryCache(maxsize=2)
    for key in "abc":
        cache.set(key, key, 60)
    assert len(cache) == 2 and cache.get("a") == (False, None) and cache.get("c") == (True, "c")


# -- SQLite ----------------------------------------------------------------------------------------


def _child_writes(path: str) -> None:
    cache = SQLiteCache(path)
    cache.set("from-child", {"pid": os.getpid()}, 3600)
    cache.set("none", None, 3600)
    cache.close()


def test_sqlite_is_shared_between_processes(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    parent = SQLiteCache(path)
    assert parent.get("from-child") == (False, None)
    child = multiprocessing.get_context("spawn").Process(target=_child_writes, args=(str(path),))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    hit, value = parent.get("from-child")
    assert hit and value["pid"] not in (None, os.getpid())
    assert parent.get("none") == (True, None)
    parent.close()


def test_sqlite_instances_on_one_file_agree(tmp_path: Path) -> None:
    first, second = SQLiteCache(tmp_path / "c.db"), SQLiteCache(tmp_path / "c.db")
    first.set("k", "v", 60)
    assert second.get("k") == (True, "v")
    assert second.delete("k") and first.get("k") == (False, None)
    first.close()
    second.close()


def test_sqlite_schema_and_wal(tmp_path: Path) -> None:
    import sqlite3

    SQLiteCache(tmp_path / "c.db").close()
    with sqlite3.connect(tmp_path / "c.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = [(row[1], row[2], row[3]) for row in connection.execute("PRAGMA table_info(cache)")]
    connection.close()
    assert columns == [("key", "TEXT", 0), ("value", "TEXT", 1), ("expires_at", "REAL", 1)]


def _in_forked_child(cache: SQLiteCache, parents: sqlite3.Connection) -> None:
    assert cache._connect() is not parents and cache.get("k") == (True, 1)
    cache.set("from-child", 2, 60)
    cache.close()


def test_sqlite_reconnects_after_fork(tmp_path: Path) -> None:
    """A forked worker opens its own connection and leaves the parent's alone."""
    cache = SQLiteCache(tmp_path / "c.db")
    before = cache._connect()
    cache.set("k", 1, 60)
    child = multiprocessing.get_context("fork").Process(target=_in_forked_child, args=(cache, before))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert cache._connect() is before and cache.get("from-child") == (True, 2)
    cache.close()


def test_sqlite_purges_expired_rows_and_close_is_idempotent(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "c.db")
    cache.set("a", 1, TINY_TTL)
    cache.set("b", 2, 3600)
    assert wait_until(lambda: len(cache) == 1)
    assert cache.purge_expired() == 1 and cache.purge_expired() == 0
    cache.close()
    cache.close()
    assert cache.get("b") == (True, 2)  # reopens on use
    cache.close()


def test_sqlite_creates_the_directory(tmp_path: Path) -> None:
    cache = SQLiteCache(tmp_path / "deep" / "er" / "c.db")
    assert (tmp_path / "deep" / "er" / "c.db").exists()
    cache.close()


# -- OpCache -----------------------------------------------------------------------------------------


def run(coro):
    return asyncio.run(coro)


def test_namespaces_do_not_collide() -> None:
    backend = MemoryCache()
    first, second = OpCache(backend, "first_op", 1), OpCache(backend, "second_op", 1)
    first.set("k", "one")
    assert second.get("k") == (False, None)
    second.set("k", "two")
    assert first.get("k") == (True, "one") and second.get("k") == (True, "two")
    assert backend.get("first_op:k") == (True, "one")
    assert first.delete("k") and second.get("k") == (True, "two")


def test_expire_hours() -> None:
    backend = MemoryCache()
    OpCache(backend, "op", 0).set("k", 1)
    assert backend.get("op:k") == (False, None)
    OpCache(backend, "op", TINY_TTL / 3600).set("k", 1)
    assert wait_until(lambda: backend.get("op:k") == (False, None))
    with pytest.raises(ValueError, match="expire_hours"):
        OpCache(backend, "op", -1)


def test_save_load_with_a_coroutine_function(backend: CacheBackend) -> None:
    calls: list[str] = []

    async def compute() -> dict:
        calls.append("x")
        await asyncio.sleep(0)
        return {"heavy": "result"}

    cache = OpCache(backend, "op", 1)

    async def main() -> list[Any]:
        return [await cache.save_load("heavy_key", compute) for _ in range(3)]

    assert run(main()) == [{"heavy": "result"}] * 3
    assert calls == ["x"]


def test_save_load_with_a_partial_of_a_coroutine_function() -> None:
    async def compute(x: int) -> int:
        return x * 2

    cache = OpCache(MemoryCache(), "op", 1)
    assert run(cache.save_load("k", functools.partial(compute, 21))) == 42


def test_save_load_runs_sync_functions_on_a_thread(backend: CacheBackend) -> None:
    threads: list[int] = []

    def compute() -> list[int]:
        threads.append(threading.get_ident())
        return [1, 2]

    cache = OpCache(backend, "op", 1)

    async def main() -> tuple[int, Any, Any]:
        first = await cache.save_load("k", compute)
        second = await cache.save_load("k", compute)
        return threading.get_ident(), first, second

    loop_thread, first, second = run(main())
    assert first == second == [1, 2]
    assert len(threads) == 1 and threads[0] != loop_thread


def test_save_load_awaits_a_lambda_returning_a_coroutine() -> None:
    async def compute() -> str:
        return "awaited"

    cache = OpCache(MemoryCache(), "op", 1)
    assert run(cache.save_load("k", lambda: compute())) == "awaited"
    assert cache.get("k") == (True, "awaited")


def test_save_load_caches_none() -> None:
    calls: list[int] = []

    def compute() -> None:
        calls.append(1)

    cache = OpCache(MemoryCache(), "op", 1)

    async def main() -> None:
        assert await cache.save_load("k", compute) is None
        assert await cache.save_load("k", compute) is None

    run(main())
    assert calls == [1]


def test_save_load_returns_the_stored_form() -> None:
    cache = OpCache(MemoryCache(), "op", 1)
    assert run(cache.save_load("k", lambda: (1, 2))) == [1, 2]  # same on a miss as on a hit


def test_save_load_rejects_values_json_cannot_hold() -> None:
    cache = OpCache(MemoryCache(), "op", 1)
    with pytest.raises(TypeError, match=r"'op:k'.*set"):
        run(cache.save_load("k", lambda: {1, 2}))


def test_save_load_with_zero_hours_always_computes() -> None:
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    cache = OpCache(MemoryCache(), "op", 0)

    async def main() -> list[int]:
        return [await cache.save_load("k", compute) for _ in range(2)]

    assert run(main()) == [1, 2]


# -- make_cache_backend ----------------------------------------------------------------------------


def test_make_cache_backend(tmp_path: Path) -> None:
    assert isinstance(make_cache_backend("memory"), MemoryCache)
    assert isinstance(make_cache_backend(" Memory "), MemoryCache)
    for spec, name in [
        (f"sqlite:{tmp_path}/a.db", "a.db"),
        (f"sqlite://{tmp_path}/b.cache", "b.cache"),
        (str(tmp_path / "c.db"), "c.db"),
        (str(tmp_path / "d.sqlite"), "d.sqlite"),
        (str(tmp_path / "e.sqlite3"), "e.sqlite3"),
    ]:
        backend = make_cache_backend(spec)
        assert isinstance(backend, SQLiteCache) and backend.path.name == name
        backend.close()


@pytest.mark.parametrize("spec", ["redis://localhost", "", "sqlite:", "cache.txt", "memcached"])
def test_make_cache_backend_rejects_unknown_values(spec: str) -> None:
    with pytest.raises(ValueError, match=repr(spec).replace("\\", "\\\\").replace(".", r"\.")):
        make_cache_backend(spec)
