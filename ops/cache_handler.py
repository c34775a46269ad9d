"""``CacheHandler``: flowllm's named cache of dicts, lists, strings and DataFrames, with
expiry and per-entry information, kept in one of the op cache's backends.

```python
cache = CacheHandler("cache/prices")          # a SQLite file in that directory
cache.save("AAPL", {"close": 1.0}, expire_hours=1)
cache.load("AAPL")                             # {"close": 1.0}; None once expired
cache.get_info("AAPL")["data_type"]            # "dict"
```

Each entry is one record ``{"meta": {...}, "data": ...}`` in the backend
(:class:`~ops.cache.SQLiteCache` by default, so processes share it; any
backend with ``keys()``, e.g. ``C.cache_backend``). The handler keeps expired
entries until they are loaded, cleaned or listed with ``include_expired``,
as flowllm's does; the backend only holds them.

Differences from flowllm, on purpose: a value of an unsupported type raises
``TypeError`` instead of ``save`` logging and returning False; ``expire_hours``
must be positive or ``None`` (never expires) — flowllm read 0 as "never",
the op cache reads it as "at once", so 0 is an error here; a DataFrame needs
pandas installed and comes back with its index; ``file_size`` is the size of
the stored JSON, there being no file per entry.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .cache import CacheBackend, SQLiteCache

__all__ = ["CacheHandler"]

#: Backend lifetime of a record; the handler applies its own expiry from the metadata.
_KEEP_SECONDS = 100 * 365 * 24 * 3600.0


def _describe(data: Any) -> tuple[str, Any, dict[str, int]]:
    """(type name, JSON form, size figures) of a value the handler can store."""
    if isinstance(data, dict):
        return "dict", data, {"key_count": len(data)}
    if isinstance(data, list):
        return "list", data, {"item_count": len(data)}
    if isinstance(data, str):
        return "str", data, {"char_count": len(data)}
    if type(data).__name__ == "DataFrame" and type(data).__module__.startswith("pandas"):
        rows, columns = data.shape
        return "DataFrame", json.loads(data.to_json(orient="split")), {"row_count": rows, "column_count": columns}
    raise TypeError(f"CacheHandler stores dict, list, str or pandas DataFrame values, not {type(data).__name__}")


def _restore(data_type: str, data: Any) -> Any:
    if data_type != "DataFrame":
        return data
    import pandas  # only reached for a DataFrame saved by a process that had pandas

    return pandas.DataFrame(data["data"], index=data["index"], columns=data["columns"])


class CacheHandler:
    """flowllm's ``CacheHandler`` interface (see the module doc).

    :param cache_dir: the cache's directory (created); its ``cache.db`` holds the entries
        unless ``backend`` is given, and it names the cache inside a shared backend.
    :param backend: where entries live instead, e.g. ``C.cache_backend`` or a ``MemoryCache``.
    :raises TypeError: when ``backend`` cannot list its keys.
    """

    def __init__(self, cache_dir: str | Path = "cache", backend: CacheBackend | None = None) -> None:
        self.cache_dir = Path(cache_dir)
        self._owns_backend = backend is None
        if backend is None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            backend = SQLiteCache(self.cache_dir / "cache.db")
        if not callable(getattr(backend, "keys", None)):
            raise TypeError(f"CacheHandler needs a backend that lists its keys; {type(backend).__name__} cannot")
        self.backend = backend
        self._prefix = f"cache_handler:{self.cache_dir}:"

    # -- records -----------------------------------------------------------------------------

    def _record(self, key: str) -> dict[str, Any] | None:
        hit, record = self.backend.get(self._prefix + key)
        return record if hit and isinstance(record, dict) else None

    def _write(self, key: str, record: dict[str, Any]) -> None:
        self.backend.set(self._prefix + key, record, _KEEP_SECONDS)

    def _keys(self) -> list[str]:
        return [key[len(self._prefix):] for key in self.backend.keys(self._prefix)]  # type: ignore[attr-defined]

    @staticmethod
    def _expired(record: dict[str, Any]) -> bool:
        expire_time = record["meta"].get("expire_time")
        return expire_time is not None and datetime.now() > datetime.fromisoformat(expire_time)

    # -- flowllm's interface -----------------------------------------------------------------

    def save(self, key: str, data: Any, expire_hours: float | None = None, **_kwargs: Any) -> bool:
        """Store ``data`` under ``key``, replacing what was there; True.

        :param expire_hours: lifetime in hours; ``None``: never expires.
        :raises TypeError: for a value that is not a dict, list, str or DataFrame.
        :raises ValueError: for an ``expire_hours`` that is not positive.
        """
        if expire_hours is not None and (isinstance(expire_hours, bool) or not expire_hours > 0):
            raise ValueError(f"expire_hours must be > 0, or None to never expire; got {expire_hours!r}")
        data_type, stored, figures = _describe(data)
        now = datetime.now()
        previous = self._record(key)
        meta = {
            "created_time": previous["meta"]["created_time"] if previous else now.isoformat(),
            "updated_time": now.isoformat(),
            "expire_time": (now + timedelta(hours=expire_hours)).isoformat() if expire_hours else None,
            "data_type": data_type,
            **figures,
            "file_size": len(json.dumps(stored, ensure_ascii=False).encode("utf-8")),
        }
        self._write(key, {"meta": meta, "data": stored})
        return True

    def load(self, key: str, auto_clean_expired: bool = True, **_kwargs: Any) -> Any:
        """The value of ``key``; ``None`` when missing or expired (an expired entry is
        deleted unless ``auto_clean_expired`` is False)."""
        record = self._record(key)
        if record is None:
            return None
        if self._expired(record):
            if auto_clean_expired:
                self.delete(key)
            return None
        record["meta"]["last_accessed"] = datetime.now().isoformat()
        self._write(key, record)
        return _restore(record["meta"]["data_type"], record["data"])

    def exists(self, key: str, check_expired: bool = True) -> bool:
        """True when ``key`` is stored (and, with ``check_expired``, not expired)."""
        record = self._record(key)
        return record is not None and not (check_expired and self._expired(record))

    def delete(self, key: str) -> bool:
        """Remove ``key``; True, also when it was not there (as in flowllm)."""
        self.backend.delete(self._prefix + key)
        return True

    def clean_expired(self) -> int:
        """Delete the expired entries; how many there were."""
        expired = [key for key in self._keys() if (record := self._record(key)) and self._expired(record)]
        for key in expired:
            self.delete(key)
        return len(expired)

    def get_info(self, key: str) -> dict[str, Any] | None:
        """The entry's metadata (times, ``data_type``, size figures) with ``key`` and ``is_expired``."""
        record = self._record(key)
        if record is None:
            return None
        return {**record["meta"], "key": key, "is_expired": self._expired(record)}

    def list_all(self, include_expired: bool = False) -> dict[str, dict[str, Any]]:
        """:meth:`get_info` of every entry (live ones only, unless ``include_expired``)."""
        listing = {}
        for key in self._keys():
            info = self.get_info(key)
            if info is not None and (include_expired or not info["is_expired"]):
                listing[key] = info
        return listing

    def get_cache_stats(self) -> dict[str, Any]:
        """Counts (total, active, expired), the stored size and the cache's directory."""
        infos = self.list_all(include_expired=True).values()
        expired = sum(1 for info in infos if info["is_expired"])
        size = sum(info.get("file_size", 0) for info in infos)
        return {
            "total_count": len(infos),
            "active_count": len(infos) - expired,
            "expired_count": expired,
            "total_size_bytes": size,
            "total_size_mb": round(size / (1024 * 1024), 2),
            "cache_dir": str(self.cache_dir),
        }

    def clear_all(self) -> bool:
        """Delete every entry of this cache; True."""
        for key in self._keys():
            self.delete(key)
        return True

    def close(self) -> None:
        """Close the backend's connections when the handler opened it (safe to call twice)."""
        close = getattr(self.backend, "close", None)
        if self._owns_backend and close is not None:
            close()
