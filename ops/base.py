"""``BaseOp`` and ``BaseAsyncOp``: one unit of LLM logic with hooks, retries, prompts and cache.

Differences from flowllm, on purpose: errors raise by default; with
``raise_exception=False`` a failure is recorded on ``context.response``
(``success=False``) instead of vanishing; every context gets its own id;
plain functions given to ``submit_async_task`` run on a thread instead of
being dropped, and ``join_async_task`` keeps exceptions in the results.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from async_utils import AsyncHelper

from .cache import OpCache, call_sync_or_async
from .context import BaseContext, FlowContext
from .llm import OpLLM, op_llm
from .prompt import PromptHandler, prompt_file_for
from .schema import Message
from .services import C
from .tool_call import ToolCall
from .utils import token_count

if TYPE_CHECKING:
    from llm_client import LLMClient

    from .compose import ParallelOp, SequentialOp
    from .services import EmbeddingModel
    from .vector_store import InMemoryVectorStore

logger = logging.getLogger(__name__)

_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def camel_to_snake(name: str) -> str:
    """``ChatLLMOp`` → ``chat_llm_op``, ``HTTPFetchOp`` → ``http_fetch_op``, ``Op1Op`` → ``op1_op``."""
    return _WORD_BOUNDARY.sub("_", name).lower()


class BaseOp:
    """A synchronous op: override :meth:`execute` (and optionally the other hooks).

    :param name: defaults to the snake_case class name (``ChatLLMOp`` → ``chat_llm_op``).
    :param max_retries: attempts before giving up (1 = no retry).
    :param raise_exception: raise the last error (default); if False, record it on
        ``context.response`` and return that.
    :param language: prompt language (default ``C.language``): ``get_prompt("x")`` tries ``x_zh`` first.
    :param prompt_path: a prompt YAML file instead of ``<module>_prompt.yaml`` beside the op.
    :param llm: an :class:`~llm_client.LLMClient` (or :class:`~ops.llm.OpLLM`) to use instead of the
        app's; a string (flowllm's name of a configured LLM) is ignored: the app's client is used.
    :param enable_cache: let :meth:`save_load_cache` use the shared cache.
    :param cache_expire_hours: lifetime of cached entries (0 = expire at once).
    :param ops: sub-ops, a list or a name → op mapping (default: an empty mapping); ``op << x``
        attaches more (see :meth:`__lshift__`).
    :param kwargs: anything else is kept in :attr:`op_params`.
    """

    #: kept for flowllm compatibility; prompts are found from the class's source file
    file_path: ClassVar[str] = ""

    def __init__(
        self,
        name: str = "",
        max_retries: int = 1,
        raise_exception: bool = True,
        language: str = "",
        prompt_path: str = "",
        llm: LLMClient | OpLLM | str | None = None,
        embedding_model: Any = None,
        vector_store: Any = None,
        enable_cache: bool = False,
        cache_expire_hours: float = 0.1,
        ops: list[BaseOp] | Mapping[str, BaseOp] | None = None,
        **kwargs: Any,
    ) -> None:
        if not type(self).__name__.endswith("Op"):
            raise TypeError(f"op class names end in 'Op'; rename {type(self).__name__}")
        if not isinstance(max_retries, int) or max_retries < 1:
            raise ValueError(f"max_retries must be an integer >= 1, got {max_retries!r}")
        if cache_expire_hours < 0:
            raise ValueError(f"cache_expire_hours must be >= 0, got {cache_expire_hours!r}")
        self.name = name or type(self).op_name()
        self.max_retries = max_retries
        self.raise_exception = raise_exception
        self.language = language
        self.prompt_path = prompt_path
        self._llm = llm if not isinstance(llm, str) else None
        self._embedding_model = embedding_model if not isinstance(embedding_model, str) else None
        self._vector_store = vector_store if not isinstance(vector_store, str) else None
        self.enable_cache = enable_cache
        self.cache_expire_hours = cache_expire_hours
        self.op_params: dict[str, Any] = kwargs
        #: sub-ops (an agent's tools): by name, or a list when built with ``ops=[...]``
        self.ops: BaseContext | list[BaseOp] = [] if isinstance(ops, (list, tuple)) else BaseContext()
        for key, op in ops.items() if isinstance(ops, Mapping) else (("", op) for op in ops or ()):
            self.add_op(op, key)
        self.context: FlowContext = FlowContext()
        self._prompt: PromptHandler | None = None
        self._thread_tasks: list[futures.Future[Any]] = []

    def __new__(cls, *args: Any, **kwargs: Any) -> BaseOp:
        # Remember the constructor's arguments, for copy().
        op = super().__new__(cls)
        op._saved_init = (args, dict(kwargs))
        return op

    # -- names ------------------------------------------------------------------------------

    @classmethod
    def op_name(cls) -> str:
        return camel_to_snake(cls.__name__)

    @property
    def short_name(self) -> str:
        return self.name.removesuffix("_op")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={getattr(self, 'name', type(self).op_name())!r})"

    def copy(self, **overrides: Any) -> BaseOp:
        """A new op built with the same constructor arguments, ``overrides`` winning,
        with copies of its sub-ops (as they are now, also those attached with ``<<``)."""
        args, kwargs = self._saved_init
        kwargs = {key: value for key, value in kwargs.items() if key != "ops"}
        op = type(self)(*args, **{**kwargs, **overrides})
        if isinstance(self.ops, list):
            op.ops = [sub.copy() for sub in self.ops]
        else:
            op.ops = BaseContext(**{name: sub.copy() for name, sub in self.ops.items()})
        return op

    # -- sub-ops ------------------------------------------------------------------------------

    def add_op(self, op: BaseOp, name: str = "") -> None:
        """Attach ``op`` as a sub-op: appended to a list, else stored under ``name`` (default ``op.name``).

        :raises TypeError: when ``op`` is not an op.
        :raises ValueError: when another sub-op already has that name (flowllm replaced it silently).
        """
        if not isinstance(op, BaseOp):
            raise TypeError(f"{self.name}: only ops can be attached, got {type(op).__name__}")
        if isinstance(self.ops, list):
            self.ops.append(op)
            return
        key = name or op.name
        if key in self.ops and self.ops[key] is not op:
            raise ValueError(f"{self.name}: a sub-op named {key!r} is already attached; give the other one name=...")
        self.ops[key] = op

    def __lshift__(self, ops: BaseOp | Mapping[str, BaseOp] | list[BaseOp] | tuple[BaseOp, ...]) -> BaseOp:
        """``agent << tool``, ``agent << [tool1, tool2]``, ``agent << {"search": tool}``: attach
        sub-ops (see :meth:`add_op`) and return this op, as flowllm's ``<<`` does.

        :raises TypeError: for anything but an op, a list or tuple of ops, or a name → op mapping.
        """
        if isinstance(ops, BaseOp):
            self.add_op(ops)
        elif isinstance(ops, Mapping):
            for name, op in ops.items():
                self.add_op(op, str(name))
        elif isinstance(ops, (list, tuple)):
            for op in ops:
                self.add_op(op)
        else:
            raise TypeError(f"{self.name} << takes an op, a list of ops or a name → op mapping, "
                            f"got {type(ops).__name__}")
        return self

    # -- services --------------------------------------------------------------------------

    @property
    def llm(self) -> OpLLM:
        """flowllm's ``chat``/``achat``/``stream_chat``/``astream_chat`` and the client's methods,
        over the op's own client (``llm=``) or the app's: see :mod:`ops.llm`."""
        return op_llm(self._llm if self._llm is not None else C.llm)

    @property
    def embedding_model(self) -> EmbeddingModel:
        return self._embedding_model if self._embedding_model is not None else C.embedding_model

    @property
    def vector_store(self) -> InMemoryVectorStore:
        return self._vector_store if self._vector_store is not None else C.vector_store

    # -- prompts ---------------------------------------------------------------------------

    @property
    def prompt(self) -> PromptHandler:
        """Prompts of this op: the YAML beside each class in its MRO (base first), or ``prompt_path``."""
        if self._prompt is None:
            handler = PromptHandler(language=self.language or C.language)
            if self.prompt_path:
                if not handler.load_prompt_yaml(Path(self.prompt_path)):
                    raise FileNotFoundError(f"{self.name}: prompt file {self.prompt_path} does not exist")
            else:
                for klass in reversed(type(self).__mro__):
                    if issubclass(klass, BaseOp) and klass.__module__ != __name__:
                        path = prompt_file_for(klass)
                        if path is not None:
                            handler.load_prompt_yaml(path)
            self._prompt = handler
        return self._prompt

    def get_prompt(self, name: str) -> str:
        return self.prompt.get_prompt(name)

    def prompt_format(self, name: str, /, **variables: Any) -> str:
        return self.prompt.prompt_format(name, **variables)

    def token_count(self, messages: Iterable[Message | Mapping[str, Any]],
                    tools: Iterable[ToolCall] | None = None, **kwargs: Any) -> int:
        """An estimate of the tokens of ``messages`` and ``tools`` (see :func:`ops.utils.token_count`)."""
        return token_count(messages, tools, **kwargs)

    # -- cache ------------------------------------------------------------------------------

    @property
    def cache(self) -> OpCache:
        return OpCache(C.cache_backend, namespace=self.name, expire_hours=self.cache_expire_hours)

    def save_load_cache(self, key: str, fn: Callable[[], Any]) -> Any:
        """The cached value of ``key``, else ``fn()`` (stored when caching is enabled)."""
        if not self.enable_cache:
            return fn()
        hit, value = self.cache.get(key)
        if hit:
            return value
        value = fn()
        self.cache.set(key, value)
        return value

    # -- threads ----------------------------------------------------------------------------

    def submit_task(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> BaseOp:
        """Start ``fn(*args, **kwargs)`` on ``C.thread_pool`` (blocking work in parallel); returns the op."""
        self._thread_tasks.append(C.thread_pool.submit(fn, *args, **kwargs))
        return self

    def join_task(self, task_desc: str | None = None, timeout: float | None = None) -> list[Any]:
        """Wait for the tasks of :meth:`submit_task`: their results, in submission order.

        The first failure is raised once all have finished. After ``timeout`` seconds the
        tasks not started yet are cancelled and ``TimeoutError`` is raised. Unlike flowllm,
        list results are not flattened and falsy results are kept (as :meth:`join_async_task`).
        """
        tasks, self._thread_tasks = self._thread_tasks, []
        _done, pending = futures.wait(tasks, timeout=timeout)
        if pending:
            for task in pending:
                task.cancel()
            raise TimeoutError(f"{self.name}: {len(pending)} of {len(tasks)} {task_desc or 'tasks'} "
                               f"unfinished after {timeout}s")
        return [task.result() for task in tasks]

    # -- running ----------------------------------------------------------------------------

    def _bind(self, context: FlowContext | None, kwargs: dict[str, Any]) -> FlowContext:
        if context is not None and not isinstance(context, FlowContext):
            raise TypeError(f"{self.name}: context must be a FlowContext, got {type(context).__name__}")
        context = context if context is not None else FlowContext()
        context.update(kwargs)
        self.context = context
        return context

    def _give_up(self, attempt: int, exc: Exception) -> bool:
        """Log a failed attempt; True when it was the last one."""
        last = attempt == self.max_retries - 1
        if not last:
            logger.warning("%s failed (attempt %d of %d): %s", self.name, attempt + 1, self.max_retries, exc)
        return last

    def _failed(self, exc: Exception) -> None:
        logger.error("%s failed: %s: %s", self.name, type(exc).__name__, exc)
        self.context.add_response_error(exc, self.name)

    def call(self, context: FlowContext | None = None, **kwargs: Any) -> Any:
        """Run before → execute → after; return execute's result, else ``context.response``."""
        context = self._bind(context, kwargs)
        result = None
        for attempt in range(self.max_retries):
            try:
                self.before_execute()
                result = self.execute()
                self.after_execute()
                break
            except Exception as exc:
                if not self._give_up(attempt, exc):
                    continue
                if self.raise_exception:
                    raise
                self._failed(exc)
                result = self.default_execute(exc)
        return result if result is not None else context.response

    def before_execute(self) -> None:
        """Validate inputs here and fail early."""

    def execute(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement execute()")

    def after_execute(self) -> None:
        """Post-process outputs here."""

    def default_execute(self, e: Exception | None = None, **kwargs: Any) -> Any:
        """The result when every attempt failed and ``raise_exception`` is False."""
        return None

    # -- composition ------------------------------------------------------------------------

    def __rshift__(self, other: BaseOp) -> SequentialOp:
        from .compose import SequentialOp

        return SequentialOp.chain(self, other)

    def __or__(self, other: BaseOp) -> ParallelOp:
        from .compose import ParallelOp

        return ParallelOp.chain(self, other)


class BaseAsyncOp(BaseOp):
    """An async op: override :meth:`async_execute`; ``await op.async_call(**inputs)``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("async_mode", None)  # flowllm's flag; every BaseAsyncOp is async here
        super().__init__(**kwargs)
        self.task_list: list[asyncio.Future[Any]] = []

    async def async_call(self, context: FlowContext | None = None, **kwargs: Any) -> Any:
        """Run the async hooks with retries; return execute's result, else ``context.response``."""
        context = self._bind(context, kwargs)
        result = None
        for attempt in range(self.max_retries):
            try:
                await self.async_before_execute()
                result = await self.async_execute()
                await self.async_after_execute()
                break
            except Exception as exc:
                if not self._give_up(attempt, exc):
                    continue
                if self.raise_exception:
                    raise
                self._failed(exc)
                result = await self.async_default_execute(exc)
        return result if result is not None else context.response

    def call(self, context: FlowContext | None = None, **kwargs: Any) -> Any:
        """The sync twin of :meth:`async_call`, usable from plain threads and from inside a loop."""
        return AsyncHelper.run_async_in_sync(self.async_call(context, **kwargs))

    def execute(self) -> Any:
        raise TypeError(f"{type(self).__name__} is async: use await op.async_call() or op.call()")

    async def async_before_execute(self) -> None:
        """Validate inputs here and fail early."""

    async def async_execute(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement async_execute()")

    async def async_after_execute(self) -> None:
        """Post-process outputs here."""

    async def async_default_execute(self, e: Exception | None = None, **kwargs: Any) -> Any:
        return None

    # -- cache and concurrency --------------------------------------------------------------

    async def async_save_load_cache(self, key: str, fn: Callable[[], Any]) -> Any:
        """The cached value of ``key``, else the result of ``fn`` (a coroutine function or a
        plain function, which runs on a thread), stored when caching is enabled."""
        if self.enable_cache:
            return await self.cache.save_load(key, fn)
        return await call_sync_or_async(fn)

    def submit_async_task(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Start ``fn(*args, **kwargs)`` now: a coroutine function as a task, a plain one on a thread."""
        loop = asyncio.get_running_loop()
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "func", None)):
            task = loop.create_task(fn(*args, **kwargs))
        elif callable(fn):
            task = loop.create_task(call_sync_or_async(lambda: fn(*args, **kwargs)))
        else:
            raise TypeError(f"{self.name}: submit_async_task takes a function, got {type(fn).__name__}")
        self.task_list.append(task)

    async def join_async_task(self, timeout: float | None = None, return_exceptions: bool = True) -> list[Any]:
        """Wait for the submitted tasks; results in submission order.

        With ``return_exceptions`` failures are returned in their slots; without,
        the first failure is raised and the other tasks are cancelled. On timeout
        the unfinished tasks are cancelled and ``asyncio.TimeoutError`` raised. The
        task list is cleared either way.
        """
        tasks, self.task_list = self.task_list, []
        if not tasks:
            return []
        try:
            gathered = asyncio.gather(*tasks, return_exceptions=return_exceptions)
            return list(await asyncio.wait_for(gathered, timeout))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
