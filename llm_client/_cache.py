"""The response cache of :meth:`LLMClient.chat_completion`, with coalescing of identical calls.

Only deterministic requests (``temperature == 0``, never streams) are cached.
The key is a SHA-256 of the URL, the whole request body (messages, model,
``max_tokens``, tools, ``tool_choice``, ``response_format``, extra fields) and a
hash of the API key; the stored value is the completion (text, model, finish
reason, usage, tool calls, reasoning).
Prompts and keys are never stored, errors are never cached.

Coalescing: identical requests in flight at the same time share one upstream
call. Inside a process the first caller leads and the others wait for its
result. With the SQLite backend the leader also writes a *claim* row (its pid
and a lease) so that leaders in other processes (gunicorn workers) poll the
row instead of calling; the result row replaces the claim. A claim whose lease
ran out or whose process died is taken over. With Redis (:mod:`llm_client._cache_redis`)
the claim is a key with an expiry, renewed while its call runs, shared by every machine:
a claimer that crashed stops renewing it, and a waiter takes it over when it expires.

When the store cannot be reached (Redis down, a broken SQLite file) the call goes to
the upstream without the cache, with a warning (at most one per :data:`WARN_INTERVAL`
seconds for each kind of failure): a chat never fails because its cache does.

When a call fails, nothing is stored and nothing is shared: the claim is
deleted and every request that waited for it calls the upstream itself, so
each gets its own answer or error, as without the cache. A waiter that waited
longer than one call may take (all retries included) calls the upstream too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ._cache_backends import Backend, MemoryBackend, SQLiteBackend, Value
from ._cache_redis import RedisBackend, check_redis_url  # redis-py itself: imported only when used
from .observe import report_wait

logger = logging.getLogger("llm_client")

#: How a completion was obtained: ``miss`` (this request called the upstream),
#: ``hit`` (stored earlier) or ``coalesced`` (another request's call, in flight when this one came).
MISS, HIT, COALESCED = "miss", "hit", "coalesced"

#: A waiter polls a claim row after this many seconds, doubling up to POLL_MAX.
POLL_FIRST = 0.01
POLL_MAX = 0.1
#: Seconds between two warnings of the same kind while the cache's store is unavailable.
WARN_INTERVAL = 10.0

_warned: dict[str, tuple[float, int]] = {}  # kind of warning -> (when last logged, how many left out since)
_warned_lock = threading.Lock()


def _warn(what: str, exc: BaseException) -> None:
    """Log ``what: exc``, unless the same ``what`` was logged less than WARN_INTERVAL seconds ago."""
    now = time.monotonic()
    with _warned_lock:
        last, skipped = _warned.get(what, (-WARN_INTERVAL, 0))
        if now - last < WARN_INTERVAL:
            _warned[what] = (last, skipped + 1)
            return
        _warned[what] = (now, 0)
    more = f" ({skipped} more since the last warning)" if skipped else ""
    logger.warning("%s: %s%s", what, exc, more)


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


class _Flight:
    """One in-process call that other threads (a ``threading.Event``) or coroutines (a future on
    their own loop, resolved thread-safely) wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Value | None = None
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def finish(self, value: Value | None) -> None:
        """The call is over (``value`` None: it failed); wake every waiter."""
        with self._lock:
            self.value = value
            self.done.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # that loop was closed; nobody waits there any more
                pass

    async def wait_async(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds without a thread; True when the call is over."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self.done.is_set():
                return True
            self._waiters.append((loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                if (loop, future) in self._waiters:
                    self._waiters.remove((loop, future))
        return self.done.is_set()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ResponseCache:
    """Cached, coalesced calls: :meth:`get_or_call` runs ``call`` at most once per key at a time.

    :meth:`get_or_call_async` does the same for async callers without taking a thread to
    wait: only the call that reaches the upstream runs on one (the LLM pool's); requests that
    wait for it await an event, or poll another process's claim row with ``asyncio.sleep``.
    Its SQLite statements and Redis commands run on the event loop: they are short (a busy
    database makes one wait at most ``SQLITE_BUSY_TIMEOUT``, a Redis that does not answer
    ``SOCKET_TIMEOUT``), and the web app gives each request thread its own loop.

    :param backend: a :class:`MemoryBackend`, :class:`SQLiteBackend` or :class:`RedisBackend`.
    :param wait: seconds one upstream call may take, retries included: the lease of a
        claim, and the longest a request waits for another's call before calling itself.
    """

    def __init__(self, backend: Backend, wait: float) -> None:
        self.backend = backend
        self.wait = wait
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}

    def _join(self, key: str) -> tuple[_Flight, bool]:
        """The flight of ``key`` and whether we lead it (there was none)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = _Flight()
            return flight, True

    def _land(self, key: str, flight: _Flight, value: Value | None) -> None:
        with self._lock:
            del self._flights[key]
        flight.finish(value)

    def get_or_call(self, key: str, call: Callable[[], Value]) -> tuple[Value, str]:
        """The value of ``key`` and how it was obtained (:data:`MISS`, :data:`HIT`, :data:`COALESCED`).

        ``call`` computes the value; its exceptions propagate and nothing is stored.
        """
        flight, leader = self._join(key)
        if not leader:
            report_wait()
            if flight.done.wait(self.wait) and flight.value is not None:
                return flight.value, COALESCED
            # The leader failed (errors are not shared) or is too slow: call ourselves.
            value = call()
            self._store(key, value, None)
            return value, MISS
        value: Value | None = None
        state, token = "", secrets.token_hex(8)
        try:
            state, value = self._claim(key, token)
            if state == "busy":
                report_wait()
                for pause in self._pauses():
                    time.sleep(pause)
                    if (polled := self._poll(key, token)) is not None:
                        state, value = polled
                        break
                else:
                    state = "free"
            if value is not None:
                return value, state
            value = call()  # ours to make: claimed, or no cache, released, or waited too long
            self._stored_or_forgotten(key, value, token, state)
            return value, MISS
        except BaseException:
            value = None
            if state == "claimed":
                self._forget(key, token)
            raise
        finally:
            self._land(key, flight, value)

    async def get_or_call_async(self, key: str, call: Callable[[], Awaitable[Value]]) -> tuple[Value, str]:
        """:meth:`get_or_call` for async callers; waiting for another request's call takes no thread."""
        flight, leader = self._join(key)
        if not leader:
            if await flight.wait_async(self.wait) and flight.value is not None:
                return flight.value, COALESCED
            value = await call()
            self._store(key, value, None)
            return value, MISS
        value: Value | None = None
        state, token = "", secrets.token_hex(8)
        try:
            state, value = self._claim(key, token)
            if state == "busy":
                report_wait()
                for pause in self._pauses():
                    await asyncio.sleep(pause)
                    if (polled := self._poll(key, token)) is not None:
                        state, value = polled
                        break
                else:
                    state = "free"
            if value is not None:
                return value, state
            value = await call()
            self._stored_or_forgotten(key, value, token, state)
            return value, MISS
        except BaseException:
            value = None
            if state == "claimed":
                self._forget(key, token)
            raise
        finally:
            self._land(key, flight, value)

    def _claim(self, key: str, token: str) -> tuple[str, Value | None]:
        """``("hit", value)``, ``("claimed", None)``, ``("busy", None)``; ``("off", None)`` when the
        cache cannot be used (the call is then made without it)."""
        try:
            return self.backend.claim(key, token, self.wait)
        except (OSError, sqlite3.Error) as exc:
            _warn("LLM cache unavailable, calling the upstream directly", exc)
            return "off", None

    def _pauses(self) -> Iterator[float]:
        """How long to sleep before each poll of another process's claim: growing, up to ``wait`` in all."""
        deadline = time.monotonic() + self.wait
        pause = POLL_FIRST
        while (left := deadline - time.monotonic()) > 0:
            yield min(pause, left)
            pause = min(pause * 2, POLL_MAX)

    def _poll(self, key: str, token: str) -> tuple[str, Value | None] | None:
        """One look at another process's claim: ``(COALESCED, value)``, ``("claimed", None)`` after a
        takeover, ``("free", None)`` when it was released; None while it is still busy."""
        try:
            state, value = self.backend.claim(key, token, self.wait, take_free=False)
        except (OSError, sqlite3.Error) as exc:
            _warn("LLM cache unavailable, calling the upstream directly", exc)
            return "off", None
        if state == "hit":
            return COALESCED, value
        return (state, None) if state in ("claimed", "free") else None

    def _stored_or_forgotten(self, key: str, value: Value, token: str, state: str) -> None:
        if state != "off":
            self._store(key, value, token if state == "claimed" else None)

    def _store(self, key: str, value: Value, token: str | None) -> None:
        try:
            self.backend.put(key, value, token)
        except (OSError, sqlite3.Error) as exc:  # the answer is good; only the cache failed
            _warn("could not store an LLM response in the cache", exc)

    def _forget(self, key: str, token: str) -> None:
        try:
            self.backend.release(key, token)
        except (OSError, sqlite3.Error) as exc:  # the lease will end it
            _warn("could not release an LLM cache claim", exc)

    def ping(self) -> None:
        """Raise when the cache's store does not answer (a Redis PING, a SQLite read): for ``/readyz``."""
        self.backend.ping()

    def close(self) -> None:
        self.backend.close()


def parse_cache_spec(spec: str) -> tuple[str, str | None]:
    """``(kind, path)`` of an ``LLM_CACHE`` value: ``("", None)`` off, ``("memory", None)``,
    ``("sqlite", None)`` (the default file), ``("sqlite", "/path/cache.db")`` or
    ``("redis", "redis://host:6379/0")`` (also ``rediss://``, ``unix://``).

    :raises ValueError: for anything else (the message never shows a password).
    """
    text = spec.strip()
    lowered = text.lower()
    if lowered.startswith(("redis://", "rediss://", "unix://")):
        check_redis_url(text)
        return "redis", text
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
    raise ValueError("must be empty (off), 'memory', 'sqlite', 'sqlite:/path/to/cache.db' or a"
                     " redis://HOST:PORT/DB URL")


def default_cache_path() -> Path:
    """The file of a plain ``LLM_CACHE=sqlite`` outside the web app: ``~/.cache/flowbridge/llm_cache.db``."""
    return Path.home() / ".cache" / "flowbridge" / "llm_cache.db"


def make_response_cache(
    spec: str, *, path: str | None, ttl: float, size: int, wait: float
) -> ResponseCache | None:
    """The cache ``spec`` (an ``LLM_CACHE`` value) describes, or None when it is off.

    :param path: the file of a plain ``"sqlite"`` (``LLM_CACHE_PATH``); default :func:`default_cache_path`.
    :raises ValueError: for a bad ``spec``.
    :raises OSError: when the SQLite file cannot be opened, or the redis package is missing (an
        unreachable Redis server is not an error here: calls go on without the cache until it answers).
    """
    kind, spec_path = parse_cache_spec(spec)
    if kind == "redis":
        return ResponseCache(RedisBackend(str(spec_path), ttl), wait)
    if kind == "memory":
        return ResponseCache(MemoryBackend(size, ttl), wait)
    if kind == "sqlite":
        file = spec_path or path or default_cache_path()
        return ResponseCache(SQLiteBackend(Path(file).expanduser(), ttl), wait)
    return None
