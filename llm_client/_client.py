"""``LLMClient``: a synchronous OpenAI-compatible client with thin async wrappers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from async_utils.config import AsyncConfig

from ._bridge import AsyncBridge, PoolStats
from ._cache import ResponseCache, cache_key, make_response_cache
from ._completion import ChatCompletion, cacheable, from_cache, parse_completion
from ._http import Transport
from ._request import Message, chat_body, prompt_messages
from ._settings import LLMSettings
from ._streaming import ChatStream, StreamDelta
from .exceptions import LLMConfigError, LLMResponseError

#: A tool definition ``{"type": "function", "function": {"name", "description", "parameters"}}``.
Tool = Mapping[str, Any]
ToolChoice = str | Mapping[str, Any]


class LLMClient:
    """A client for any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp...).

    The sync methods are the implementation; each ``*_async`` method runs its
    sync twin on the client's bounded thread pool when awaited.

    Settings not given as arguments come from the environment: ``LLM_BASE_URL``
    (with the version path, e.g. ``http://127.0.0.1:8080/v1``; else
    ``OPENAI_BASE_URL``), ``LLM_API_KEY`` (else ``OPENAI_API_KEY``), ``LLM_MODEL``,
    ``LLM_EMBEDDING_MODEL``, ``LLM_TIMEOUT`` (read timeout; for a stream, the longest
    pause between two events), ``LLM_CONNECT_TIMEOUT``, ``LLM_TOTAL_TIMEOUT`` (a whole call,
    retries included; a stream until its first event), ``LLM_MAX_RETRIES``; and for the pool ``LLM_ASYNC_WORKERS``,
    ``LLM_ASYNC_QUEUE_SIZE``, ``LLM_ASYNC_TIMEOUT``, ``LLM_ASYNC_ENABLED``; the response
    cache: ``LLM_CACHE``, ``LLM_CACHE_PATH``, ``LLM_CACHE_TTL``, ``LLM_CACHE_SIZE``.

    :param max_workers: threads of the async pool (default ``LLM_ASYNC_WORKERS``, 5).
    :param queue_size: calls that may wait for a thread (default ``LLM_ASYNC_QUEUE_SIZE``, 100).
    :param async_timeout: seconds an ``*_async`` call may take (default ``LLM_ASYNC_TIMEOUT``, 30).
    :param cache: the response cache of temperature-0 chat completions (default ``LLM_CACHE``,
        off): ``"memory"``, ``"sqlite"``, ``"sqlite:/path/cache.db"`` or ``"redis://host:6379/0"``
        (shared by every machine using that Redis; see ``llm_client._cache_redis``).
    :param env: the environment to read instead of ``os.environ``.
    :raises LLMConfigError: naming the argument or variable that has a bad value.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        max_workers: int | None = None,
        connect_timeout: float | None = None,
        total_timeout: float | None = None,
        embedding_model: str | None = None,
        queue_size: int | None = None,
        async_timeout: float | None = None,
        async_enabled: bool | None = None,
        cache: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.settings = LLMSettings.load(
            env,
            base_url=base_url,
            api_key=api_key,
            model=model,
            embedding_model=embedding_model,
            timeout=timeout,
            max_retries=max_retries,
            connect_timeout=connect_timeout,
            total_timeout=total_timeout,
            cache=cache,
        )
        try:
            workers = max_workers if max_workers is not None else AsyncConfig.get_worker_count(env)
            queued = queue_size if queue_size is not None else AsyncConfig.get_queue_size(env)
            limit = async_timeout if async_timeout is not None else AsyncConfig.get_timeout(env)
            enabled = async_enabled if async_enabled is not None else AsyncConfig.is_async_enabled(env)
        except ValueError as exc:
            raise LLMConfigError(str(exc)) from None
        if workers < 1 or queued < 0:
            raise LLMConfigError("max_workers must be >= 1 and queue_size >= 0")
        self._bridge = AsyncBridge(workers, queued, limit, enabled)
        self._http = Transport(self.settings)
        self._cache = self._make_cache()

    def _make_cache(self) -> ResponseCache | None:
        s = self.settings
        try:
            return make_response_cache(s.cache, path=s.cache_path, ttl=s.cache_ttl, size=s.cache_size,
                                       wait=s.call_budget)
        except OSError as exc:
            raise LLMConfigError(f"LLM_CACHE: {exc}") from None

    # -- public state ---------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    @property
    def model(self) -> str:
        """The configured model (``LLM_MODEL``): what a chat call sends unless it names one (``model=``)."""
        return self.settings.model

    @property
    def pool_stats(self) -> PoolStats:
        """Size of the async pool and how many calls run and wait in it now."""
        return self._bridge.stats

    @property
    def closed(self) -> bool:
        return self._http.sessions.closed

    @property
    def _executor(self) -> ThreadPoolExecutor:
        """The pool's executor, for code written against the seed's monitoring example.

        Prefer :attr:`pool_stats`, which does not depend on ThreadPoolExecutor's internals.
        """
        return self._bridge.executor

    def __repr__(self) -> str:
        key = "'***'" if self.settings.api_key else "None"
        return f"LLMClient(base_url={self.base_url!r}, model={self.model!r}, api_key={key})"

    # -- sync API ---------------------------------------------------------------------
    #
    # Every chat method takes ``model`` (default: :attr:`model`) and ``response_format``
    # (``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema": {"name", "schema"}}``);
    # ``chat_completion`` and ``chat_stream`` (and their async twins) also take ``tools``
    # (OpenAI tool definitions), ``tool_choice`` (``"auto"``, ``"none"``, ``"required"`` or
    # ``{"type": "function", "function": {"name": ...}}``) and ``extra_body`` (other request
    # fields, e.g. ``{"top_p": 0.9}``). ``temperature``/``max_tokens`` None leave them to the server.
    # Bad arguments raise ``ValueError`` before anything is sent.

    def chat(
        self,
        prompt: str,
        temperature: float | None = 0.0,
        max_tokens: int | None = 256,
        system_prompt: str | None = None,
        *,
        model: str | None = None,
        response_format: Mapping[str, Any] | None = None,
    ) -> str:
        """Send one user prompt (and an optional system prompt); return the answer text."""
        messages = prompt_messages(prompt, system_prompt)
        return self.chat_completion(messages, temperature, max_tokens, model=model,
                                    response_format=response_format).text

    def chat_with_context(
        self, messages: Sequence[Message], temperature: float | None = 0.7, max_tokens: int | None = 256,
        *, model: str | None = None, response_format: Mapping[str, Any] | None = None,
    ) -> str:
        """Send a whole conversation (``[{"role": ..., "content": ...}, ...]``); return the answer."""
        return self.chat_completion(messages, temperature, max_tokens, model=model,
                                    response_format=response_format).text

    def chat_completion(
        self, messages: Sequence[Message], temperature: float | None = 0.7, max_tokens: int | None = 256,
        *, model: str | None = None, tools: Sequence[Tool] | None = None, tool_choice: ToolChoice | None = None,
        response_format: Mapping[str, Any] | None = None, extra_body: Mapping[str, Any] | None = None,
    ) -> ChatCompletion:
        """Like :meth:`chat_with_context`, also returning the model name, token usage and the
        model's tool calls (:attr:`ChatCompletion.tool_calls`; :attr:`ChatCompletion.message` is
        the assistant message to send back, followed by one ``{"role": "tool", "tool_call_id": ...,
        "content": ...}`` message per call).

        :raises LLMStatusError: the server answered with an error status (after retries).
        :raises LLMResponseError: the answer is not a chat completion.
        :raises LLMConnectionError: the server could not be reached (after retries).

        With a response cache (``LLM_CACHE``), a temperature-0 request may be answered
        from it, or by an identical request already in flight; see :attr:`ChatCompletion.cache`.
        The cache key holds the whole request body: model, tools, tool choice, response format.
        """
        body = self._chat_body(messages, temperature, max_tokens, model, tools=tools, tool_choice=tool_choice,
                               response_format=response_format, extra_body=extra_body)
        if self._cache is None or body.get("temperature") != 0:
            return self._complete(body)
        if self.closed:
            raise RuntimeError("the LLM client is closed")
        fields, how = self._cache.get_or_call(self._cache_key(body), lambda: cacheable(self._complete(body)))
        return from_cache(fields, how)

    def _cache_key(self, body: dict[str, Any]) -> str:
        return cache_key(self._http.url("/chat/completions"), body, self._http.secret())

    def _complete(self, body: dict[str, Any]) -> ChatCompletion:
        """Send one chat completion request and parse the answer."""
        return parse_completion(self._http.post_json("/chat/completions", body), body["model"])

    def chat_stream(
        self,
        prompt: str | Sequence[Message],
        temperature: float | None = 0.0,
        max_tokens: int | None = 256,
        system_prompt: str | None = None,
        *,
        model: str | None = None,
        tools: Sequence[Tool] | None = None,
        tool_choice: ToolChoice | None = None,
        response_format: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> ChatStream:
        """Stream the answer as text deltas.

        ``prompt`` is a user prompt or a whole message list. Nothing is sent until
        the first item is read; closing the iterator (``close()``, ``with``) closes
        the upstream response. Failures before the first delta are retried, never
        after it. Tool calls arrive in pieces: read them, put together, from
        :attr:`ChatStream.tool_calls` at the end; :meth:`ChatStream.deltas` also yields reasoning.
        """
        messages = prompt_messages(prompt, system_prompt) if isinstance(prompt, str) else prompt
        body = self._chat_body(messages, temperature, max_tokens, model, tools=tools, tool_choice=tool_choice,
                               response_format=response_format, extra_body=extra_body)
        body["stream"] = True
        return ChatStream(lambda: self._http.open_stream("/chat/completions", body), stall=self.settings.timeout)

    def embed(self, texts: str | Sequence[str]) -> list[list[float]]:
        """Embed each text; returns one vector per text, in order."""
        items = [texts] if isinstance(texts, str) else list(texts)
        if not all(isinstance(t, str) for t in items):
            raise TypeError("embed() takes a string or a list of strings")
        if not items:
            return []
        data = self._http.post_json("/embeddings", {"model": self.settings.embeddings_model, "input": items})
        try:
            rows = sorted(data["data"], key=lambda row: row.get("index", 0))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise LLMResponseError("embeddings response has no data[].embedding", body=str(data)[:500]) from None
        if len(vectors) != len(items):
            raise LLMResponseError(f"asked for {len(items)} embeddings, got {len(vectors)}")
        return vectors

    def ping(self, timeout: float = 2.0) -> bool:
        """True if the server answers ``GET /models``; one try, short timeout, never raises."""
        try:
            response = self._http.get("/models", timeout)
        except requests.RequestException:
            return False
        with response:
            return response.ok

    def ping_cache(self) -> None:
        """Check that the response cache's store answers (a Redis PING, a SQLite read); nothing to
        check without a cache. Never needed for a call: a cache that is down is skipped.

        :raises OSError: saying why it does not answer.
        """
        if self._cache is not None:
            self._cache.ping()


    # -- async API: the sync methods, run on the pool --------------------------------------

    async def chat_async(
        self,
        prompt: str,
        temperature: float | None = 0.0,
        max_tokens: int | None = 256,
        system_prompt: str | None = None,
        *,
        model: str | None = None,
        response_format: Mapping[str, Any] | None = None,
    ) -> str:
        """:meth:`chat` on the thread pool."""
        messages = prompt_messages(prompt, system_prompt)
        return (await self.chat_completion_async(messages, temperature, max_tokens, model=model,
                                                 response_format=response_format)).text

    async def chat_with_context_async(
        self, messages: Sequence[Message], temperature: float | None = 0.7, max_tokens: int | None = 256,
        *, model: str | None = None, response_format: Mapping[str, Any] | None = None,
    ) -> str:
        """:meth:`chat_with_context` on the thread pool."""
        return (await self.chat_completion_async(messages, temperature, max_tokens, model=model,
                                                 response_format=response_format)).text

    async def async_chat(self, prompt: str | Sequence[Message], **options: Any) -> str:
        """The name flowllm's op code uses: a prompt (``chat_async``) or a message list
        (``chat_with_context_async``)."""
        if isinstance(prompt, str):
            return await self.chat_async(prompt, **options)
        return await self.chat_with_context_async(prompt, **options)

    async def chat_completion_async(
        self, messages: Sequence[Message], temperature: float | None = 0.7, max_tokens: int | None = 256,
        *, model: str | None = None, tools: Sequence[Tool] | None = None, tool_choice: ToolChoice | None = None,
        response_format: Mapping[str, Any] | None = None, extra_body: Mapping[str, Any] | None = None,
    ) -> ChatCompletion:
        """:meth:`chat_completion` on the thread pool.

        With a response cache, only a call that reaches the upstream takes a pool thread: a
        request answered from the cache, or waiting for an identical one in flight (in this
        process or, with SQLite, in another), waits on the event loop and holds no slot.
        """
        body = self._chat_body(messages, temperature, max_tokens, model, tools=tools, tool_choice=tool_choice,
                               response_format=response_format, extra_body=extra_body)
        if self._cache is None or body.get("temperature") != 0:
            return await self._bridge.run(self._complete, body)
        if self.closed:
            raise RuntimeError("the LLM client is closed")

        async def call() -> dict[str, Any]:
            return cacheable(await self._bridge.run(self._complete, body))

        fields, how = await self._cache.get_or_call_async(self._cache_key(body), call)
        return from_cache(fields, how)

    async def embed_async(self, texts: str | Sequence[str]) -> list[list[float]]:
        """:meth:`embed` on the thread pool."""
        return await self._bridge.run(self.embed, texts)


    async def chat_stream_async(
        self,
        prompt: str | Sequence[Message],
        temperature: float | None = 0.0,
        max_tokens: int | None = 256,
        system_prompt: str | None = None,
        *,
        model: str | None = None,
        response_format: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[str]:
        """:meth:`chat_stream` as an async iterator; the stream holds one pool thread.

        For tool calls, make the stream with :meth:`chat_stream` (``tools=...``), read it with
        :meth:`iterate_stream_async` and then its :attr:`ChatStream.tool_calls`.
        """
        stream = self.chat_stream(prompt, temperature, max_tokens, system_prompt, model=model,
                                  response_format=response_format)
        async with contextlib.aclosing(self.iterate_stream_async(stream)) as parts:
            async for text in parts:
                yield text

    async def iterate_stream_async(self, stream: ChatStream) -> AsyncIterator[str]:
        """The deltas of ``stream`` (made by :meth:`chat_stream`), read on one pool thread.

        For callers that want the stream object too, e.g. its ``finish_reason`` or
        ``tool_calls`` at the end.
        """
        # aclosing: when our consumer stops early, the bridge's iterator must be
        # closed now (which closes the upstream response), not at garbage collection.
        async with contextlib.aclosing(self._bridge.iterate(lambda: stream, stream.close)) as parts:
            async for text in parts:
                yield text

    async def iterate_deltas_async(self, stream: ChatStream) -> AsyncIterator[StreamDelta]:
        """:meth:`ChatStream.deltas` of ``stream`` (answer text, reasoning, usage), read on one pool thread."""
        async with contextlib.aclosing(self._bridge.iterate(stream.deltas, stream.close)) as parts:
            async for delta in parts:
                yield delta

    # -- lifecycle -------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Shut the thread pool down and close all connections; idempotent.

        Afterwards every call raises ``RuntimeError``.
        """
        self._http.close()
        self._bridge.shutdown(wait=False)
        if self._cache is not None:
            self._cache.close()

    close = cleanup

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.cleanup()


    def _chat_body(self, messages: Sequence[Message], temperature: float | None, max_tokens: int | None,
                   model: str | None = None, **request: Any) -> dict[str, Any]:
        return chat_body(self.settings.model, messages, temperature, max_tokens, model, **request)
