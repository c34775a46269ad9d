"""Op result cache: JSON values with a time to live, in memory or in SQLite.

``MemoryCache`` is per process. ``SQLiteCache`` keeps one file that every
gunicorn worker (and thread) shares, so a result computed by one worker is a
hit in the others.

Differences from flowllm's ``CacheHandler``, on purpose: a lifetime of 0 (or
less) expires at once instead of never; ``None`` is a value like any other
(flowllm could not tell it from a miss); values that JSON cannot represent
raise ``TypeError`` instead of silently not being cached.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cachetools import TLRUCache

from async_utils.per_thread import PerThread

__all__ = ["CacheBackend", "MemoryCache", "OpCache", "SQLiteCache", "call_sync_or_async", "make_cache_backend"]

logger = logging.getLogger(__name__)

#: How long SQLite waits for another process's write lock, in seconds.
SQLITE_BUSY_TIMEOUT = 5.0
#: Expired SQLite rows are deleted at most this often, in seconds.
SQLITE_PURGE_INTERVAL = 60.0


def _encode(key: str, value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"cannot cache {key!r}: a {type(value).__name__} value is not JSON-serialisable "
            f"(use dict, list, str, int, float, bool or None): {exc}"
        ) from None


@runtime_checkable
class CacheBackend(Protocol):
    """Where cached values live. Values are JSON-serialisable; ``None`` is a value."""

    def get(self, key: str) -> tuple[bool, Any]:
        """``(True, value)`` on a hit, ``(False, None)`` when missing or expired."""
        ...

    def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        """Store ``value`` for ``ttl_seconds`` (``<= 0``: expire at once, i.e. remove ``key``).

        :raises TypeError: naming the key, when the value is not JSON-serialisable.
        """
        ...

    def delete(self, key: str) -> bool:
        """Remove ``key``; True when a live entry was removed."""
        ...

    def clear(self) -> None:
        """Remove every entry."""
        ...


class MemoryCache:
    """A per-process cache with a lifetime per entry (``cachetools.TLRUCache``), thread-safe.

    Values are stored as JSON text, so a hit returns a fresh copy and behaves
    exactly like :class:`SQLiteCache` (tuples come back as lists).

    :param maxsize: entries kept; the least recently used go first.
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        self._lock = threading.Lock()
        # Entries are (expires_at, text); the cache's own timer decides expiry.
        self._entries: TLRUCache[str, tuple[float, str]] = TLRUCache(
            maxsize=maxsize, ttu=lambda _key, entry, _now: entry[0], timer=time.monotonic
        )

    def get(self, key: str) -> tuple[bool, Any]:
        with self._lock:
            entry = self._entries.get(key)
        return (False, None) if entry is None else (True, json.loads(entry[1]))

    def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        text = _encode(key, value)
        with self._lock:
            if ttl_seconds <= 0:
                self._entries.pop(key, None)
            else:
                self._entries[key] = (time.monotonic() + ttl_seconds, text)

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._entries.pop(key, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def keys(self, prefix: str = "") -> list[str]:
        """The live keys starting with ``prefix`` (used by :class:`~ops.cache_handler.CacheHandler`)."""
        with self._lock:
            self._entries.expire()
            return [key for key in self._entries if key.startswith(prefix)]

    def __len__(self) -> int:
        with self._lock:
            self._entries.expire()
            return len(self._entries)


class SQLiteCache:
    """A cache in one SQLite file, shared by processes and threads.

    Each thread has its own connection, and a process forked after a
    connection was opened opens new ones (SQLite connections must not cross a
    fork). The database runs in WAL mode, so readers never wait for writers.
    Calls run inline, also from ``async`` code: they are local and short, but a
    write can wait up to :data:`SQLITE_BUSY_TIMEOUT` behind another process's.

    :param path: the database file; its directory is created if needed.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connections = PerThread(self._open, _close_quietly)
        self._last_purge = 0.0
        self._connect()  # fail now, naming the file, if it cannot be opened

    def _connect(self) -> sqlite3.Connection:
        return self._connections.get()

    def _open(self) -> sqlite3.Connection:
        try:
            # check_same_thread=False only so that close() may close every thread's connection.
            connection = sqlite3.connect(
                self.path, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            connection.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT * 1000)}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL)"
            )
            connection.execute("CREATE INDEX IF NOT EXISTS cache_expires_at ON cache (expires_at)")
        except sqlite3.Error as exc:
            raise OSError(f"cannot open the cache database {self.path}: {exc}") from exc
        return connection

    def get(self, key: str) -> tuple[bool, Any]:
        row = self._connect().execute(
            "SELECT value FROM cache WHERE key = ? AND expires_at > ?", (key, time.time())
        ).fetchone()
        return (False, None) if row is None else (True, json.loads(row[0]))

    def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        text = _encode(key, value)
        connection = self._connect()
        now = time.time()
        if ttl_seconds <= 0:
            connection.execute("DELETE FROM cache WHERE key = ?", (key,))
        else:
            connection.execute(
                "INSERT OR REPLACE INTO cache (key, value, expires_at) VALUES (?, ?, ?)",
                (key, text, now + ttl_seconds),
            )
        if now - self._last_purge >= SQLITE_PURGE_INTERVAL:
            self._last_purge = now
            self.purge_expired()

    def delete(self, key: str) -> bool:
        cursor = self._connect().execute(
            "DELETE FROM cache WHERE key = ? AND expires_at > ?", (key, time.time())
        )
        return cursor.rowcount > 0

    def clear(self) -> None:
        self._connect().execute("DELETE FROM cache")

    def keys(self, prefix: str = "") -> list[str]:
        """The live keys starting with ``prefix`` (used by :class:`~ops.cache_handler.CacheHandler`)."""
        rows = self._connect().execute(
            "SELECT key FROM cache WHERE substr(key, 1, ?) = ? AND expires_at > ? ORDER BY rowid",
            (len(prefix), prefix, time.time()),
        ).fetchall()
        return [row[0] for row in rows]

    def purge_expired(self) -> int:
        """Delete the expired rows; returns how many. Runs by itself every few writes."""
        return self._connect().execute("DELETE FROM cache WHERE expires_at <= ?", (time.time(),)).rowcount

    def __len__(self) -> int:
        row = self._connect().execute("SELECT COUNT(*) FROM cache WHERE expires_at > ?", (time.time(),)).fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close this process's connections; safe to call twice. The cache reopens on next use."""
        self._connections.close()


def _close_quietly(connection: sqlite3.Connection) -> None:
    try:
        connection.close()
    except sqlite3.Error:  # best-effort cleanup
        logger.debug("closing a cache connection failed", exc_info=True)


class OpCache:
    """The cache of one op: keys are prefixed with ``namespace:``, entries live ``expire_hours``.

    :param backend: a :class:`CacheBackend`.
    :param namespace: usually the op's name, so two ops never share keys.
    :param expire_hours: lifetime of new entries; 0 expires them at once.
    :raises ValueError: when ``expire_hours`` is negative.
    """

    def __init__(self, backend: CacheBackend, namespace: str, expire_hours: float) -> None:
        if expire_hours < 0:
            raise ValueError(f"expire_hours must be >= 0, got {expire_hours!r}")
        self.backend = backend
        self.namespace = namespace
        self.expire_hours = expire_hours

    def _key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def get(self, key: str) -> tuple[bool, Any]:
        return self.backend.get(self._key(key))

    def set(self, key: str, value: Any) -> None:
        self.backend.set(self._key(key), value, self.expire_hours * 3600)

    def delete(self, key: str) -> bool:
        return self.backend.delete(self._key(key))

    # flowllm's op cache calls (its ``self.cache`` is a CacheHandler)

    def save(self, key: str, data: Any, expire_hours: float | None = None, **_kwargs: Any) -> bool:
        """Store ``data`` for ``expire_hours`` (default: the op's ``cache_expire_hours``); True."""
        hours = self.expire_hours if expire_hours is None else expire_hours
        self.backend.set(self._key(key), data, hours * 3600)
        return True

    def load(self, key: str, **_kwargs: Any) -> Any:
        """The cached value, or ``None`` when missing or expired (flowllm cannot tell them apart)."""
        return self.get(key)[1]

    def exists(self, key: str, **_kwargs: Any) -> bool:
        return self.get(key)[0]

    async def save_load(self, key: str, fn: Callable[[], Any]) -> Any:
        """The cached value of ``key``; on a miss, compute it with ``fn``, store it and return it.

        ``fn`` takes no arguments. A coroutine function (or a ``functools.partial``
        of one) is awaited; anything else runs on a thread, and an awaitable it
        returns (e.g. ``lambda: coro()``) is awaited too. The value returned is
        the stored JSON form, so a miss and a later hit return equal values.

        :raises TypeError: when the computed value is not JSON-serialisable.
        """
        hit, value = self.get(key)
        if hit:
            return value
        value = await call_sync_or_async(fn)
        value = json.loads(_encode(self._key(key), value))
        self.set(key, value)
        return value


async def call_sync_or_async(fn: Callable[[], Any]) -> Any:
    """Await ``fn()`` if it is a coroutine function, else run it on a thread (awaiting
    an awaitable it returns, e.g. from ``lambda: coro()``)."""
    if inspect.iscoroutinefunction(fn):  # also sees through functools.partial
        return await fn()
    value = await asyncio.to_thread(fn)
    if inspect.isawaitable(value):
        value = await value
    return value


def make_cache_backend(spec: str) -> CacheBackend:
    """A backend from its description.

    ``"memory"`` → :class:`MemoryCache`; ``"sqlite:/path/cache.db"`` (also
    ``sqlite:///path``) or a path ending in ``.db``, ``.sqlite`` or ``.sqlite3``
    → :class:`SQLiteCache`.

    :raises ValueError: naming the value, for anything else.
    """
    text = spec.strip()
    if text.lower() == "memory":
        return MemoryCache()
    if text.lower().startswith("sqlite:"):
        path = text[len("sqlite:") :]
        if path.startswith("//"):
            path = path[2:]
        if path:
            return SQLiteCache(path)
    elif text.lower().endswith((".db", ".sqlite", ".sqlite3")):
        return SQLiteCache(text)
    raise ValueError(f"unknown op cache {spec!r}: use 'memory', 'sqlite:/path/to/cache.db' or a path ending in .db")
