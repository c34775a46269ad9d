"""The response cache on Redis (``LLM_CACHE=redis://...``): answers and in-flight claims shared between machines.

Two keys per request, both named from the request's hash (never the prompt or the API key):

* ``flowbridge:llm:{HASH}:value``: the completion as JSON, expiring after ``LLM_CACHE_TTL`` seconds.
* ``flowbridge:llm:{HASH}:claim``: the token of the call now reaching the upstream for that request,
  set with an expiry (``SET ... PX``) of :data:`DEFAULT_CLAIM_TTL` seconds (``?claim_ttl=`` in the URL).
  While its call runs, the claiming process renews that expiry every third of it (a daemon thread),
  until the call ends or its budget (all retries, the client's ``call_budget``) is spent. A claimer that
  crashed, was killed or lost its machine stops renewing: its claim expires within ``claim_ttl`` and
  the first waiter that looks next takes it over. A claim never blocks anyone for longer than that.

Reading the value, checking the claim and taking it happen in one Lua script, so two machines never
both take a free claim. A call that failed replaces its claim by a short *released* mark: the requests
waiting for it then call the upstream themselves (errors are never shared), as with SQLite.
Waiters poll (see :meth:`ResponseCache._pauses <llm_client._cache.ResponseCache>`): at most ten
small round trips a second each, bounded by the call budget.

When Redis cannot be reached, every operation raises :class:`CacheUnavailable` (an ``OSError``)
within the socket timeouts (:data:`SOCKET_TIMEOUT`, ``?socket_timeout=`` in the URL), and
:class:`~llm_client._cache.ResponseCache` calls the upstream without the cache: a chat never fails
because its cache is down. A Redis that restarts empty costs a miss per request, nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.parse
from typing import Any

from ._cache_backends import CacheUnavailable, Value

logger = logging.getLogger("llm_client")

#: Seconds a claim lives without renewal: how long a crashed claimer may keep others waiting.
DEFAULT_CLAIM_TTL = 10.0
#: Seconds a Redis command (and connecting) may take before the cache counts as unavailable.
SOCKET_TIMEOUT = 2.0
#: The value a released claim holds (no token looks like it), for this many seconds.
RELEASED = "-released-"
RELEASED_TTL = 5.0
#: URL query options that are ours (the rest are redis-py's, e.g. ``socket_timeout``).
OWN_OPTIONS = ("claim_ttl",)
PREFIX = "flowbridge:llm:"

# KEYS: value, claim. ARGV: token, claim ms, take_free ("1"/"0"), released mark.
# -> {"hit", value} | {"claimed"} | {"busy"} | {"free"}
_CLAIM = """
local value = redis.call('GET', KEYS[1])
if value then return {'hit', value} end
local claim = redis.call('GET', KEYS[2])
if claim and claim ~= ARGV[4] then return {'busy'} end
if claim and ARGV[3] ~= '1' then return {'free'} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {'claimed'}
"""
# KEYS: value, claim. ARGV: value, value ms, token ("" = none). Stores; ends our own claim.
_PUT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
"""
# KEYS: claim. ARGV: token, released mark, mark ms.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end
return 0
"""
# KEYS: claim. ARGV: token, claim ms.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def check_redis_url(url: str) -> None:
    """Raise ``ValueError`` (never showing a password) unless ``url`` is a usable Redis URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("a Redis cache URL starts with redis://, rediss:// or unix://")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("the Redis cache URL names no host (redis://HOST:PORT/DB)")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("the Redis cache URL has a bad port") from None
    claim_ttl = urllib.parse.parse_qs(parts.query).get("claim_ttl")
    if claim_ttl is not None:
        try:
            seconds = float(claim_ttl[-1])
        except ValueError:
            seconds = -1.0
        if not 0.1 <= seconds <= 3600:
            raise ValueError("claim_ttl (in the Redis cache URL) must be seconds between 0.1 and 3600")


def redact_url(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # not a URL we can take apart: show none of what might be credentials
        return "***@" + url.rsplit("@", 1)[1] if "@" in url else url
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _split_options(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without our own query options, and those options."""
    parts = urllib.parse.urlsplit(url)
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    own = {name: value for name, value in pairs if name in OWN_OPTIONS}
    rest = [(name, value) for name, value in pairs if name not in OWN_OPTIONS]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(rest))), own


class RedisBackend:
    """Values and claims in Redis, shared by every process and machine that uses the same server.

    Nothing connects until the first call; redis-py's connection pool reconnects after a Redis restart
    and after a fork (each process gets its own connections).

    :param url: ``redis://[[user]:password@]host:port/db`` (``rediss://`` for TLS, ``unix://`` for a socket).
    :param ttl: seconds an answer is kept.
    :raises OSError: when the ``redis`` package is not installed.
    """

    def __init__(self, url: str, ttl: float) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise OSError("LLM_CACHE=redis://... needs the redis package (pip install redis)") from None
        check_redis_url(url)
        plain, own = _split_options(url)
        self.ttl = ttl
        self.claim_ttl = float(own.get("claim_ttl", DEFAULT_CLAIM_TTL))
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        # One retry: a pooled connection that Redis closed (it restarted) is replaced once, at once.
        self._client = redis.Redis.from_url(
            plain, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 1), decode_responses=True, client_name="flowbridge-llm-cache")
        self._claim = self._client.register_script(_CLAIM)
        self._put = self._client.register_script(_PUT)
        self._release = self._client.register_script(_RELEASE)
        self._renew = self._client.register_script(_RENEW)
        self._held: dict[str, tuple[str, float]] = {}  # claim key -> (token, renew until: monotonic)
        self._held_lock = threading.Lock()
        self._renewer: tuple[int, threading.Event] | None = None  # (pid, stop) of this process's thread

    @staticmethod
    def _keys(key: str) -> tuple[str, str]:
        # {key}: a hash tag, so both keys land in one slot of a Redis Cluster (the scripts use both)
        return f"{PREFIX}{{{key}}}:value", f"{PREFIX}{{{key}}}:claim"

    def _run(self, what: str, command: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except self._errors as exc:
            raise CacheUnavailable(f"Redis cache: {what} failed: {type(exc).__name__}: {exc}") from exc

    def claim(self, key: str, token: str, lease: float, *, take_free: bool = True) -> tuple[str, Value | None]:
        """See :class:`~llm_client._cache_backends.Backend`; ``lease`` is the call's budget, the
        longest this process renews the claim (the claim itself lives ``claim_ttl`` between renewals)."""
        value_key, claim_key = self._keys(key)
        answer = self._run("claim", self._claim, keys=[value_key, claim_key],
                           args=[token, _ms(self.claim_ttl), "1" if take_free else "0", RELEASED])
        state = answer[0]
        if state == "hit":
            return "hit", json.loads(answer[1])
        if state == "claimed":
            self._hold(claim_key, token, lease)
        return state, None

    def put(self, key: str, value: Value, token: str | None) -> None:
        value_key, claim_key = self._keys(key)
        self._drop(claim_key, token)
        self._run("store", self._put, keys=[value_key, claim_key], args=[json.dumps(value), _ms(self.ttl), token or ""])

    def release(self, key: str, token: str) -> None:
        claim_key = self._keys(key)[1]
        self._drop(claim_key, token)
        self._run("release", self._release, keys=[claim_key], args=[token, RELEASED, _ms(RELEASED_TTL)])

    def ping(self) -> None:
        self._run("PING", self._client.ping)

    def close(self) -> None:
        """Stop renewing and close the connections; safe to call twice (the pool reopens on next use)."""
        with self._held_lock:
            self._held.clear()
            if self._renewer is not None:
                self._renewer[1].set()
                self._renewer = None
        self._client.close()

    # -- keeping our claims alive ----------------------------------------------------------------------

    def _hold(self, claim_key: str, token: str, lease: float) -> None:
        with self._held_lock:
            if self._renewer is not None and self._renewer[0] != os.getpid():
                self._held.clear()  # a forked child: the parent's claims are the parent's to renew
                self._renewer = None
            self._held[claim_key] = (token, time.monotonic() + lease)
            if self._renewer is None:
                stop = threading.Event()
                self._renewer = (os.getpid(), stop)
                threading.Thread(target=self._renew_loop, args=(stop,), name="llm-cache-claims",
                                 daemon=True).start()

    def _drop(self, claim_key: str, token: str | None) -> None:
        with self._held_lock:
            if token is not None and self._held.get(claim_key, ("",))[0] == token:
                del self._held[claim_key]

    def _renew_loop(self, stop: threading.Event) -> None:
        """Every third of ``claim_ttl``, push back the expiry of each claim this process holds."""
        while not stop.wait(self.claim_ttl / 3):
            now = time.monotonic()
            with self._held_lock:
                for claim_key in [k for k, (_, until) in self._held.items() if until <= now]:
                    del self._held[claim_key]  # its call's budget is spent: let the claim expire
                held = list(self._held.items())
            for claim_key, (token, _) in held:
                try:
                    self._renew(keys=[claim_key], args=[token, _ms(self.claim_ttl)])
                except self._errors as exc:  # Redis is down: the claim expires, waiters take over
                    logger.debug("could not renew an LLM cache claim: %s", exc)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
