"""Where the response cache keeps its values: in memory, or in SQLite with claims shared between processes
(Redis, shared between machines, is :mod:`llm_client._cache_redis`).

See :mod:`llm_client._cache` for how :class:`~llm_client._cache.ResponseCache` uses them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from cachetools import TTLCache

from async_utils.per_thread import PerThread

#: How long a SQLite statement waits for another process's write.
SQLITE_BUSY_TIMEOUT = 5.0
#: Expired rows are deleted at most this often (seconds), by a write.
PURGE_INTERVAL = 60.0

Value = dict[str, Any]

__all__ = ["Backend", "CacheUnavailable", "MemoryBackend", "SQLiteBackend", "Value"]


class CacheUnavailable(OSError):
    """The cache's store cannot be reached (a Redis server down): the call goes on without the cache."""


class Backend(Protocol):
    """Where values live; the SQLite one also holds claims shared between processes."""

    def claim(self, key: str, token: str, lease: float, *, take_free: bool = True) -> tuple[str, Value | None]:
        """``("hit", value)``, ``("claimed", None)`` (the caller must call and then
        :meth:`put` or :meth:`release`), ``("busy", None)`` (another process is
        calling) or ``("free", None)`` (no row, and ``take_free`` is false)."""

    def put(self, key: str, value: Value, token: str | None) -> None: ...

    def release(self, key: str, token: str) -> None: ...

    def ping(self) -> None:
        """Raise :class:`OSError` (or ``sqlite3.Error``) when the store does not answer (``/readyz``)."""

    def close(self) -> None: ...


class MemoryBackend:
    """A bounded in-process store (``cachetools.TTLCache``); claims are not needed in one process."""

    def __init__(self, size: int, ttl: float) -> None:
        self._entries: TTLCache[str, str] = TTLCache(maxsize=size, ttl=ttl)
        self._lock = threading.Lock()  # TTLCache is not thread-safe

    def claim(self, key: str, token: str, lease: float, *, take_free: bool = True) -> tuple[str, Value | None]:
        with self._lock:
            text = self._entries.get(key)
        if text is not None:
            return "hit", json.loads(text)
        return ("claimed", None) if take_free else ("free", None)

    def put(self, key: str, value: Value, token: str | None) -> None:
        text = json.dumps(value)  # stored as text: callers can never mutate a cached value
        with self._lock:
            self._entries[key] = text

    def release(self, key: str, token: str) -> None:
        """Nothing to release: in one process, waiters follow the leader's in-process flight."""

    def ping(self) -> None:
        """Always answers: it is this process's memory."""

    def close(self) -> None:
        with self._lock:
            self._entries.clear()


class SQLiteBackend:
    """Values and claims in one SQLite file, shared by every process that opens it.

    A row holds a completion (``value`` set, ``expires_at`` = end of its TTL) or a
    claim (``value`` NULL, ``expires_at`` = end of the lease, ``pid`` of the
    claimer, ``token`` of the claiming call). Each thread has its own connection;
    a forked process opens new ones.

    :raises OSError: naming the file when it cannot be opened.
    """

    def __init__(self, path: str | Path, ttl: float) -> None:
        self.path = Path(path)
        self.ttl = ttl
        self._connections = PerThread(self._open, _close_quietly)
        self._last_purge = 0.0
        self._connect()

    def _connect(self) -> sqlite3.Connection:
        return self._connections.get()

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False only so that close() may close every thread's connection.
            connection = sqlite3.connect(
                self.path, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            connection.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT * 1000)}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS llm_responses (key TEXT PRIMARY KEY, value TEXT,"
                " expires_at REAL NOT NULL, pid INTEGER, token TEXT)"
            )
        except (sqlite3.Error, OSError) as exc:
            raise OSError(f"cannot open the LLM cache database {self.path}: {exc}") from exc
        return connection

    def claim(self, key: str, token: str, lease: float, *, take_free: bool = True) -> tuple[str, Value | None]:
        db = self._connect()
        now = time.time()
        if take_free and db.execute(
            "INSERT OR IGNORE INTO llm_responses (key, value, expires_at, pid, token) VALUES (?, NULL, ?, ?, ?)",
            (key, now + lease, os.getpid(), token),
        ).rowcount == 1:
            return "claimed", None
        row = db.execute("SELECT value, expires_at, pid, token FROM llm_responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            # deleted between the two statements (a failed claimer released it): "free", or
            # "busy" so that a caller that may take it tries again
            return ("busy", None) if take_free else ("free", None)
        value, expires_at, pid, old_token = row
        if value is not None and expires_at > now:
            return "hit", json.loads(value)
        if value is None and expires_at > now and _alive(pid):
            return "busy", None
        # An expired value, or a claim whose lease ran out or whose process died: take it
        # over, unless someone else changed the row since we read it.
        taken = db.execute(
            "UPDATE llm_responses SET value = NULL, expires_at = ?, pid = ?, token = ?"
            " WHERE key = ? AND expires_at = ? AND token IS ?",
            (now + lease, os.getpid(), token, key, expires_at, old_token),
        ).rowcount
        return ("claimed", None) if taken == 1 else ("busy", None)

    def put(self, key: str, value: Value, token: str | None) -> None:
        db = self._connect()
        now = time.time()
        db.execute(
            "INSERT OR REPLACE INTO llm_responses (key, value, expires_at, pid, token) VALUES (?, ?, ?, NULL, NULL)",
            (key, json.dumps(value), now + self.ttl),
        )
        if now - self._last_purge >= PURGE_INTERVAL:
            self._last_purge = now
            # expired values, and claims abandoned long ago (their lease ended an hour back)
            db.execute(
                "DELETE FROM llm_responses WHERE (value IS NOT NULL AND expires_at <= ?) OR expires_at <= ?",
                (now, now - 3600),
            )

    def release(self, key: str, token: str) -> None:
        self._connect().execute(
            "DELETE FROM llm_responses WHERE key = ? AND value IS NULL AND token = ?", (key, token)
        )

    def ping(self) -> None:
        self._connect().execute("SELECT COUNT(*) FROM llm_responses WHERE key = ''").fetchone()

    def close(self) -> None:
        """Close this process's connections; safe to call twice. The backend reopens on next use."""
        self._connections.close()


def _close_quietly(connection: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):  # best-effort cleanup
        connection.close()


def _alive(pid: int | None) -> bool:
    """Whether process ``pid`` (on this machine) still runs."""
    if not pid or pid == os.getpid():
        return True  # our own claims end by lease; an in-process flight guards them
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, as another user's
        return True
    return True
