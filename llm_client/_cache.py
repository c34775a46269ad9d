"""The response cache of :meth:`LLMClient.chat_completion`, with coalescing of identical calls.

Only deterministic requests (``temperature == 0``, never streams) are cached.
The key is a SHA-256 of the URL, the whole request body and a hash of the API
key; the stored value is the completion (text, model, finish reason, usage).
Prompts and keys are never stored, errors are never cached.

Coalescing: identical requests in flight at the same time share one upstream
call. Inside a process the first caller leads and the others wait for its
result. With the SQLite backend the leader also writes a *claim* row (its pid
and a lease) so that leaders in other processes (gunicorn workers) poll the
row instead of calling; the result row replaces the claim. A claim whose lease
ran out or whose process died is taken over.

When a call fails, nothing is stored and nothing is shared: the claim is
deleted and every request that waited for it calls the upstream itself, so
each gets its own answer or error, as without the cache. A waiter that waited
longer than one call may take (all retries included) calls the upstream too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from cachetools import TTLCache

from async_utils.per_thread import PerThread

logger = logging.getLogger("llm_client")

#: How a completion was obtained: ``miss`` (this request called the upstream),
#: ``hit`` (stored earlier) or ``coalesced`` (another request's call, in flight when this one came).
MISS, HIT, COALESCED = "miss", "hit", "coalesced"

#: A waiter polls a claim row after this many seconds, doubling up to POLL_MAX.
POLL_FIRST = 0.01
POLL_MAX = 0.1
#: How long a SQLite statement waits for another process's write.
SQLITE_BUSY_TIMEOUT = 5.0
#: Expired rows are deleted at most this often (seconds), by a write.
PURGE_INTERVAL = 60.0

Value = dict[str, Any]


def cache_key(url: str, body: Mapping[str, Any], api_key: str | None) -> str:
    """A hex SHA-256 of the request: ``url``, the whole ``body`` and a hash of ``api_key``.

    Different keys may see different models, so the key takes part, but only
    as a hash inside the hash.
    """
    material = {
        "url": url,
        "body": {**body, "temperature": float(body.get("temperature", 0))},  # 0 and 0.0 are one request
        "auth": hashlib.sha256(api_key.encode()).hexdigest() if api_key else None,
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class Backend(Protocol):
    """Where values live; the SQLite one also holds claims shared between processes."""

    def claim(self, key: str, token: str, lease: float, *, take_free: bool = True) -> tuple[str, Value | None]:
        """``("hit", value)``, ``("claimed", None)`` (the caller must call and then
        :meth:`put` or :meth:`release`), ``("busy", None)`` (another process is
        calling) or ``("free", None)`` (no row, and ``take_free`` is false)."""

    def put(self, key: str, value: Value, token: str | None) -> None: ...

    def release(self, key: str, token: str) -> None: ...

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


class _Flight:
    """One in-process call that other threads wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Value | None = None


class ResponseCache:
    """Cached, coalesced calls: :meth:`get_or_call` runs ``call`` at most once per key at a time.

    :param backend: a :class:`MemoryBackend` or :class:`SQLiteBackend`.
    :param wait: seconds one upstream call may take, retries included: the lease of a
        claim, and the longest a request waits for another's call before calling itself.
    """

    def __init__(self, backend: Backend, wait: float) -> None:
        self.backend = backend
        self.wait = wait
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}

    def get_or_call(self, key: str, call: Callable[[], Value]) -> tuple[Value, str]:
        """The value of ``key`` and how it was obtained (:data:`MISS`, :data:`HIT`, :data:`COALESCED`).

        ``call`` computes the value; its exceptions propagate and nothing is stored.
        """
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            if flight.done.wait(self.wait) and flight.value is not None:
                return flight.value, COALESCED
            # The leader failed (errors are not shared) or is too slow: call ourselves.
            return self._call_and_store(key, call), MISS
        try:
            value, how = self._lead(key, call)
            flight.value = value
            return value, how
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def _lead(self, key: str, call: Callable[[], Value]) -> tuple[Value, str]:
        """This process's call for ``key``: a stored value, another process's call, or our own."""
        token = secrets.token_hex(8)
        try:
            state, value = self.backend.claim(key, token, self.wait)
            if state == "busy":
                state, value = self._wait_for_other_process(key, token)
        except (OSError, sqlite3.Error) as exc:
            logger.warning("LLM cache unavailable, calling the upstream directly: %s", exc)
            return call(), MISS
        if value is not None:
            return value, state
        if state != "claimed":  # released after a failure, or waited too long
            return self._call_and_store(key, call), MISS
        try:
            value = call()
        except BaseException:
            self._forget(key, token)
            raise
        self._store(key, value, token)
        return value, MISS

    def _wait_for_other_process(self, key: str, token: str) -> tuple[str, Value | None]:
        """Poll the claim row; ``(HIT→COALESCED, value)``, ``("claimed", None)`` after a takeover,
        or ``("free", None)`` when the claim was released or the wait ran out."""
        deadline = time.monotonic() + self.wait
        pause = POLL_FIRST
        while time.monotonic() < deadline:
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, POLL_MAX)
            state, value = self.backend.claim(key, token, self.wait, take_free=False)
            if state == "hit":
                return COALESCED, value
            if state in ("claimed", "free"):
                return state, None
        return "free", None

    def _call_and_store(self, key: str, call: Callable[[], Value]) -> Value:
        value = call()
        self._store(key, value, None)
        return value

    def _store(self, key: str, value: Value, token: str | None) -> None:
        try:
            self.backend.put(key, value, token)
        except (OSError, sqlite3.Error) as exc:  # the answer is good; only the cache failed
            logger.warning("could not store an LLM response in the cache: %s", exc)

    def _forget(self, key: str, token: str) -> None:
        try:
            self.backend.release(key, token)
        except (OSError, sqlite3.Error) as exc:  # the lease will end it
            logger.warning("could not release an LLM cache claim: %s", exc)

    def close(self) -> None:
        self.backend.close()


def parse_cache_spec(spec: str) -> tuple[str, str | None]:
    """``(kind, path)`` of an ``LLM_CACHE`` value: ``("", None)`` off, ``("memory", None)``,
    ``("sqlite", None)`` (the default file) or ``("sqlite", "/path/cache.db")``.

    :raises ValueError: for anything else.
    """
    text = spec.strip()
    lowered = text.lower()
    if lowered in ("", "off", "none", "false", "0"):
        return "", None
    if lowered == "memory":
        return "memory", None
    if lowered == "sqlite":
        return "sqlite", None
    if lowered.startswith("sqlite:"):
        path = text[len("sqlite:"):]
        if path.startswith("//"):
            path = path[2:]
        if path.strip():
            return "sqlite", path
    raise ValueError("must be empty (off), 'memory', 'sqlite' or 'sqlite:/path/to/cache.db'")


def default_cache_path() -> Path:
    """The file of a plain ``LLM_CACHE=sqlite`` outside the web app: ``~/.cache/flowbridge/llm_cache.db``."""
    return Path.home() / ".cache" / "flowbridge" / "llm_cache.db"


def make_response_cache(
    spec: str, *, path: str | None, ttl: float, size: int, wait: float
) -> ResponseCache | None:
    """The cache ``spec`` (an ``LLM_CACHE`` value) describes, or None when it is off.

    :param path: the file of a plain ``"sqlite"`` (``LLM_CACHE_PATH``); default :func:`default_cache_path`.
    :raises ValueError: for a bad ``spec``.
    :raises OSError: when the SQLite file cannot be opened.
    """
    kind, spec_path = parse_cache_spec(spec)
    if kind == "memory":
        return ResponseCache(MemoryBackend(size, ttl), wait)
    if kind == "sqlite":
        file = spec_path or path or default_cache_path()
        return ResponseCache(SQLiteBackend(Path(file).expanduser(), ttl), wait)
    return None
