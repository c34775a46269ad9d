"""``C``: the op registry and the services ops share (LLM, embeddings, vector store, cache).

Services are created lazily from the configuration that :class:`OpApp` (in
scripts and tests) or the web app (``create_app``) installs with
:meth:`ServiceContext.configure`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from llm_client import LLMClient

from .cache import CacheBackend, make_cache_backend
from .vector_store import InMemoryVectorStore

if TYPE_CHECKING:
    from .base import BaseOp
    from .flows import Flow

logger = logging.getLogger(__name__)

OpT = TypeVar("OpT", bound=type)

#: Modules whose ops are built in: a user op of the same name replaces them.
_BUILTIN_PREFIX = "ops.gallery"


@dataclass
class OpSettings:
    """What :meth:`ServiceContext.configure` accepts (all optional)."""

    #: prompt language: ``get_prompt("x")`` tries ``x_<language>`` first (``FLOWBRIDGE_LANGUAGE``)
    language: str = ""
    #: environment of the LLM client (``LLM_*`` variables)
    llm_env: Mapping[str, str] = field(default_factory=dict)
    #: a callable returning the LLM client to use, instead of creating one (the web app's)
    llm_provider: Callable[[], LLMClient] | None = None
    #: ``memory`` or ``sqlite:/path/cache.db`` (``FLOWBRIDGE_OP_CACHE``)
    cache: str = "memory"
    #: threads of :attr:`ServiceContext.thread_pool` (flowllm's ``thread_pool_max_workers``)
    thread_pool_max_workers: int = 16

    def __post_init__(self) -> None:
        workers = self.thread_pool_max_workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"thread_pool_max_workers must be an integer >= 1, got {workers!r}")


class EmbeddingModel:
    """Embeddings through the LLM client's ``/embeddings`` endpoint."""

    def __init__(self, client: LLMClient) -> None:
        self.client = client

    def embed(self, texts: str | Sequence[str]) -> list[float] | list[list[float]]:
        """One vector for a string, a list of vectors for a list of strings."""
        vectors = self.client.embed(texts)
        return vectors[0] if isinstance(texts, str) else vectors

    async def async_embed(self, texts: str | Sequence[str]) -> list[float] | list[list[float]]:
        vectors = await self.client.embed_async(texts)
        return vectors[0] if isinstance(texts, str) else vectors


class ServiceContext:
    """The registry of ops and flows, and the lazily created shared services."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._builtin_ops: dict[str, type[BaseOp]] = {}
        self._user_ops: dict[str, type[BaseOp]] = {}
        self.flows: dict[str, Flow] = {}
        self.settings = OpSettings()
        self._llm: LLMClient | None = None
        self._llm_owned = False
        self._embedding: EmbeddingModel | None = None
        self._vector_store: InMemoryVectorStore | None = None
        self._cache: CacheBackend | None = None
        self._thread_pool: ThreadPoolExecutor | None = None
        self._thread_pool_pid = 0

    # -- registry ------------------------------------------------------------------------

    def register_op(self, name: str = "") -> Callable[[OpT], OpT]:
        """Class decorator: ``@C.register_op()`` registers under the class name.

        :raises ValueError: when another op already has that name.
        """

        def register(cls: OpT) -> OpT:
            key = name or cls.__name__
            builtin = cls.__module__.startswith(_BUILTIN_PREFIX)
            table = self._builtin_ops if builtin else self._user_ops
            with self._lock:
                existing = table.get(key)
                if existing is not None and existing is not cls and _origin(existing) != _origin(cls):
                    raise ValueError(
                        f"an op named {key!r} is already registered ({_origin(existing)}); "
                        f"cannot register {_origin(cls)} under the same name"
                    )
                if not builtin and key in self._builtin_ops:
                    logger.info("op %s replaces the built-in op of that name", key)
                table[key] = cls  # type: ignore[assignment]
            return cls

        return register

    @property
    def ops(self) -> dict[str, type[BaseOp]]:
        """Every registered op class by registered name (user ops shadow built-ins)."""
        with self._lock:
            return {**self._builtin_ops, **self._user_ops}

    def get_op_class(self, name: str) -> type[BaseOp]:
        """Look an op up by registered name, snake_case name or short name.

        :raises KeyError: naming the op, when none matches.
        """
        ops = self.ops
        if name in ops:
            return ops[name]
        for cls in ops.values():
            if name in (cls.op_name(), cls.op_name().removesuffix("_op")):
                return cls
        raise KeyError(f"no op named {name!r}; registered: {', '.join(sorted(ops)) or 'none'}")

    # -- configuration and services ------------------------------------------------------

    def configure(self, **settings: Any) -> None:
        """Install settings (see :class:`OpSettings`) and drop services built from older ones.

        :raises ValueError: for a bad setting, before anything is changed.
        """
        new_settings = OpSettings(**settings)
        self.close()
        with self._lock:
            self.settings = new_settings

    @property
    def language(self) -> str:
        return self.settings.language

    @property
    def llm(self) -> LLMClient:
        """The LLM client: the provider's (web app), else one created from ``llm_env``."""
        if self.settings.llm_provider is not None:
            return self.settings.llm_provider()
        with self._lock:
            if self._llm is None:
                self._llm = LLMClient(env=self.settings.llm_env or os.environ)
                self._llm_owned = True
            return self._llm

    @property
    def embedding_model(self) -> EmbeddingModel:
        with self._lock:
            if self._embedding is None or self._embedding.client is not self.llm:
                self._embedding = EmbeddingModel(self.llm)
            return self._embedding

    @property
    def vector_store(self) -> InMemoryVectorStore:
        with self._lock:
            if self._vector_store is None:
                self._vector_store = InMemoryVectorStore()
            return self._vector_store

    @property
    def cache_backend(self) -> CacheBackend:
        with self._lock:
            if self._cache is None:
                self._cache = make_cache_backend(self.settings.cache)
            return self._cache

    @property
    def thread_pool(self) -> ThreadPoolExecutor:
        """Threads for blocking work, as flowllm's ``C.thread_pool``:
        ``await loop.run_in_executor(C.thread_pool, fn)`` or ``C.thread_pool.submit(fn)``.

        Created on first use with ``thread_pool_max_workers`` threads; :meth:`close`
        shuts it down (waiting for the work already submitted), and the next use
        creates a new one. A process forked after the pool was created gets its
        own pool (threads do not survive a fork).
        """
        with self._lock:
            if self._thread_pool is None or self._thread_pool_pid != os.getpid():
                self._thread_pool = ThreadPoolExecutor(
                    max_workers=self.settings.thread_pool_max_workers, thread_name_prefix="ops-pool"
                )
                self._thread_pool_pid = os.getpid()
            return self._thread_pool

    def close(self, wait: bool = True) -> None:
        """Release the services this context created (the registry stays).

        :param wait: wait for the thread pool's submitted work to finish (flowllm's
            ``wait_thread_pool``); work still queued is cancelled when False.
        """
        with self._lock:
            llm, owned, cache = self._llm, self._llm_owned, self._cache
            self._llm, self._llm_owned = None, False
            self._embedding = None
            self._vector_store = None
            self._cache = None
            pool = self._thread_pool if self._thread_pool_pid == os.getpid() else None
            self._thread_pool, self._thread_pool_pid = None, 0
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=not wait)
        if llm is not None and owned:
            llm.cleanup()
        close_cache = getattr(cache, "close", None)
        if close_cache is not None:
            close_cache()


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


#: The process-wide service context, as in flowllm.
C = ServiceContext()
