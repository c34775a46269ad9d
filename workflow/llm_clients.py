"""The LLM clients one :class:`~workflow.application.WorkflowRuntime` hands to its llm nodes.

The configured server (``LLM_BASE_URL``) is served by the app's own client (its key, pool and
cache). Every other allowed ``apiHost`` gets a client of its own, kept for reuse in a bounded
cache: at most ``size`` clients, each dropped ``ttl`` seconds after it was made. A dropped client
may still be serving a node, so it is closed (its thread pool and sessions) once it is idle: on a
later lookup, or at :meth:`LLMClients.close`.

The model is not part of a client: nodes name theirs on every call (``model=``).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache

if TYPE_CHECKING:
    from llm_client import LLMClient

#: Clients for other hosts kept at once, and seconds each is kept.
DEFAULT_SIZE = 32
DEFAULT_TTL = 600.0


def is_llm_server(api_host: Any, base_url: str) -> bool:
    """Whether ``api_host`` names the configured LLM server ``base_url`` (a trailing slash aside)."""
    return bool(base_url) and isinstance(api_host, str) and api_host.rstrip("/") == base_url.rstrip("/")


class _ClientCache(TTLCache):
    """A TTL/LRU cache that hands every client it drops (full or expired) to ``retire``."""

    def __init__(self, size: int, ttl: float, retire: Callable[[Any], None]) -> None:
        super().__init__(size, ttl)
        self._retire = retire

    def popitem(self) -> tuple[Any, Any]:
        key, client = super().popitem()
        self._retire(client)
        return key, client

    def expire(self, time: float | None = None) -> list[tuple[Any, Any]]:
        expired = list(super().expire(time))
        for _key, client in expired:
            self._retire(client)
        return expired


class LLMClients:
    """The client for each ``(apiHost, apiKey)``; thread-safe.

    :param base_url: the configured LLM server (``RuntimeSettings.llm_base_url``); "" for none.
    :param provider: returns the app's client for ``base_url``; None: that server is treated like any other.
    :param size: clients for other hosts kept at once (least recently used dropped first).
    :param ttl: seconds a client for another host is kept after it was made.
    """

    def __init__(self, base_url: str, provider: Callable[[], LLMClient] | None = None, *,
                 size: int = DEFAULT_SIZE, ttl: float = DEFAULT_TTL) -> None:
        self._base_url = base_url.rstrip("/")
        self._provider = provider
        self._lock = threading.Lock()
        self._retiring: list[Any] = []
        self._cache = _ClientCache(size, ttl, self._retiring.append)

    def get(self, api_host: str, api_key: str | None) -> LLMClient:
        """The client sending to ``api_host`` with ``api_key``: the app's own for the configured
        server (whatever key the node names), else a cached client for that host and key.
        """
        if self._provider is not None and is_llm_server(api_host, self._base_url):
            return self._provider()
        from llm_client import LLMClient

        host = api_host.rstrip("/")
        key = (host, hashlib.sha256(api_key.encode()).hexdigest() if api_key else "")
        with self._lock:
            self._cache.expire()
            client = self._cache.get(key)
            if client is None:
                client = LLMClient(host, api_key=api_key or None, env={})
                self._cache[key] = client
            self._close_idle()
            return client

    def __len__(self) -> int:
        """Clients for other hosts kept now (dropped ones not counted)."""
        with self._lock:
            return len(self._cache)

    def _close_idle(self) -> None:
        """Close the dropped clients no call uses any more (lock held)."""
        still_busy = []
        for client in self._retiring:
            stats = client.pool_stats
            if stats.running or stats.queued:
                still_busy.append(client)
            else:
                client.cleanup()
        self._retiring[:] = still_busy

    def close(self) -> None:
        """Close every client this object made (not the app's own); a later :meth:`get` makes new ones."""
        with self._lock:
            clients = list(self._cache.values()) + self._retiring
            self._cache.clear()
            self._retiring.clear()
        for client in clients:
            client.cleanup()
