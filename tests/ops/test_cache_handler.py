"""CacheHandler: flowllm 0.2's interface (its tests/test_cache_handler.py cases, reworded) over the
op cache's backends. Expiry is polled for, never slept for."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ops import CacheHandler
from ops.cache import MemoryCache

#: hours; an entry saved with it expires within a few milliseconds
BRIEF = 1e-6


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


@pytest.fixture(params=["sqlite", "memory"])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheHandler]:
    handler = CacheHandler(tmp_path / "cache", backend=MemoryCache() if request.param == "memory" else None)
    yield handler
    handler.close()


def test_dict_list_and_string_round_trip_with_their_info(cache: CacheHandler) -> None:
    record = {"name": "Alice", "age": 30, "hobbies": ["reading", "coding"], "metadata": {"k": 42}, "x": None}
    items = ["apple", {"nested": "dict"}, [1, 2, 3], 4, "e"]
    text = "multi\nline and unicode: 你好世界 🎉"
    for key, value in (("d", record), ("l", items), ("s", text)):
        assert cache.save(key, value) is True and cache.exists(key) is True
        assert cache.load(key) == value
    assert (cache.get_info("d")["data_type"], cache.get_info("d")["key_count"]) == ("dict", 5)
    assert (cache.get_info("l")["data_type"], cache.get_info("l")["item_count"]) == ("list", 5)
    assert (cache.get_info("s")["data_type"], cache.get_info("s")["char_count"]) == ("str", len(text))
    info = cache.get_info("s")
    assert info["key"] == "s" and info["is_expired"] is False and info["expire_time"] is None
    assert info["file_size"] > 0 and info["created_time"] and info["last_accessed"]


def test_dataframes_when_pandas_is_installed(cache: CacheHandler) -> None:
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"name": ["Alice", "Bob", "Charlie"], "age": [25, 30, 35]})
    assert cache.save("df", frame)
    loaded = cache.load("df")
    assert list(loaded.columns) == ["name", "age"] and loaded.iloc[0]["name"] == "Alice"
    assert (cache.get_info("df")["row_count"], cache.get_info("df")["column_count"]) == (3, 2)


def test_other_values_and_lifetimes_are_errors(cache: CacheHandler) -> None:
    with pytest.raises(TypeError, match="set"):
        cache.save("k", {1, 2})
    with pytest.raises(TypeError, match="int"):
        cache.save("k", 3)
    for hours in (0, -1):
        with pytest.raises(ValueError, match="expire_hours"):
            cache.save("k", "v", expire_hours=hours)
    assert cache.exists("k") is False


def test_entries_expire_and_permanent_ones_stay(cache: CacheHandler) -> None:
    assert cache.save("brief", {"key": "value"}, expire_hours=BRIEF)
    assert cache.save("permanent", {"key": "value"})
    assert wait_until(lambda: not cache.exists("brief"))
    assert cache.load("brief") is None
    assert cache.exists("permanent") and cache.load("permanent") == {"key": "value"}


def test_delete_removes_one_key_and_missing_keys_are_fine(cache: CacheHandler) -> None:
    for key in ("item1", "item2", "item3"):
        cache.save(key, {key: 1})
    assert cache.delete("item1") is True
    assert (cache.exists("item1"), cache.load("item1")) == (False, None)
    assert cache.exists("item2") and cache.exists("item3")
    assert cache.delete("nonexistent") is True
    assert (cache.load("nonexistent"), cache.exists("nonexistent"), cache.get_info("nonexistent")) == (None, False,
                                                                                                     None)


def test_clean_expired_list_all_and_stats(cache: CacheHandler) -> None:
    cache.save("expired1", {"key": "value"}, expire_hours=BRIEF)
    cache.save("expired2", "test", expire_hours=BRIEF)
    cache.save("permanent1", {"key": "value"})
    cache.save("permanent2", "test")
    assert wait_until(lambda: not cache.exists("expired1") and not cache.exists("expired2"))
    assert set(cache.list_all()) == {"permanent1", "permanent2"}
    assert set(cache.list_all(include_expired=True)) == {"expired1", "expired2", "permanent1", "permanent2"}
    stats = cache.get_cache_stats()
    assert (stats["total_count"], stats["expired_count"], stats["active_count"]) == (4, 2, 2)
    assert stats["total_size_bytes"] > 0 and stats["cache_dir"].endswith("cache")
    assert cache.clean_expired() == 2
    assert cache.exists("permanent1") and cache.exists("permanent2") and len(cache.list_all(True)) == 2


def test_clear_all(cache: CacheHandler) -> None:
    cache.save("dict1", {"key": "value"})
    cache.save("list1", [1, 2, 3])
    cache.save("str1", "test")
    assert len(cache.list_all()) == 3
    assert cache.clear_all() is True
    assert cache.list_all() == {} and not any(cache.exists(k) for k in ("dict1", "list1", "str1"))


def test_loading_an_expired_entry_cleans_it_unless_told_not_to(cache: CacheHandler) -> None:
    cache.save("a", {"key": "value"}, expire_hours=BRIEF)
    assert wait_until(lambda: not cache.exists("a"))
    assert cache.load("a") is None and cache.exists("a", check_expired=False) is False
    cache.save("b", {"key": "value"}, expire_hours=BRIEF)
    assert wait_until(lambda: not cache.exists("b"))
    assert cache.load("b", auto_clean_expired=False) is None
    assert cache.exists("b", check_expired=False) is True


def test_saving_again_replaces_the_value(cache: CacheHandler) -> None:
    cache.save("k", {"old": "value"})
    created = cache.get_info("k")["created_time"]
    cache.save("k", {"new": "value"})
    assert cache.load("k") == {"new": "value"} and cache.get_info("k")["created_time"] == created


def test_a_sqlite_cache_persists_and_two_caches_sharing_a_backend_do_not_mix(tmp_path: Path) -> None:
    first = CacheHandler(tmp_path / "c")
    first.save("k", [1])
    first.close()
    again = CacheHandler(tmp_path / "c")
    assert again.load("k") == [1]
    again.close()
    shared = MemoryCache()
    left, right = CacheHandler("left", backend=shared), CacheHandler("right", backend=shared)
    left.save("k", "L")
    assert right.load("k") is None and set(left.list_all()) == {"k"} and right.list_all() == {}
    with pytest.raises(TypeError, match="keys"):
        CacheHandler("x", backend=object())  # type: ignore[arg-type]
