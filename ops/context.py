"""Contexts shared by the ops of one run, and the response and stream chunks they produce.

``BaseContext`` is a dict-like bag readable as items or attributes
(``ctx["a"]`` / ``ctx.a``). Unlike flowllm's, a missing *item* raises
``KeyError`` while a missing *attribute* raises ``AttributeError``, so both
``ctx.get(...)`` and ``getattr(ctx, name, default)`` behave as in Python.

``FlowContext`` adds the run's id, its :class:`FlowResponse` and an optional
stream queue of :class:`FlowStreamChunk`. Each context gets its own id
(flowllm's default id was computed once and shared by every context).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any

from pydantic import BaseModel, Field

from .schema import ChunkEnum, FlowStreamChunk

__all__ = ["BaseContext", "ChunkType", "FlowContext", "FlowResponse", "FlowStreamChunk"]

#: The kinds of stream chunk (kept under its old name; see :class:`~ops.schema.ChunkEnum`).
ChunkType = ChunkEnum

_MISSING: Any = object()


class BaseContext:
    """A dict-like container; every key is also readable and writable as an attribute.

    Names starting with ``_`` are ordinary attributes, never data, and so are
    properties defined on the class (e.g. :attr:`FlowContext.streaming`). A key
    named like a method (``keys``, ``get`` …) is stored, but only readable as an
    item. Contexts compare and hash by identity, as flowllm's do.
    """

    def __init__(self, **kwargs: Any) -> None:
        #: the data; read it through the mapping methods
        self._data: dict[str, Any] = dict(kwargs)

    # -- attribute access ----------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails. ``_``-names never come from the data:
        # copy/pickle probe dunders before ``_data`` exists.
        if name.startswith("_"):
            raise AttributeError(name)
        data = self.__dict__.get("_data", {})
        try:
            return data[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or isinstance(getattr(type(self), name, None), property):
            object.__setattr__(self, name, value)
        else:
            self._data[name] = value

    def __delattr__(self, name: str) -> None:
        if name.startswith("_"):
            object.__delattr__(self, name)
            return
        try:
            del self._data[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no key {name!r}") from None

    # -- mapping -------------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        try:
            del self._data[key]
        except KeyError:
            raise KeyError(key) from None

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def keys(self) -> KeysView[str]:
        return self._data.keys()

    def values(self) -> ValuesView[Any]:
        return self._data.values()

    def items(self) -> ItemsView[str, Any]:
        return self._data.items()

    def update(self, mapping: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Like :meth:`dict.update`: ``mapping`` first, then ``kwargs``."""
        if mapping is not None:
            self._data.update(mapping)
        self._data.update(kwargs)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its value (``default`` if given and the key is missing).

        :raises KeyError: when the key is missing and no default is given.
        """
        if default is not _MISSING:
            return self._data.pop(key, default)
        try:
            return self._data.pop(key)
        except KeyError:
            raise KeyError(key) from None

    def setdefault(self, key: str, default: Any = None) -> Any:
        return self._data.setdefault(key, default)

    def dump(self) -> dict[str, Any]:
        """A shallow copy of the data."""
        return dict(self._data)

    def clear(self) -> None:
        self._data.clear()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"

    # -- pickling ------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class FlowResponse(BaseModel):
    """What a flow or op run answers; ``success`` is False after :meth:`set_error`."""

    answer: str | dict | list = ""
    success: bool = True
    metadata: dict = Field(default_factory=dict)

    def set_error(self, exc: BaseException, op_name: str = "") -> None:
        """Record ``exc`` as the answer (``"ValueError: message"``) and in ``metadata["error"]``."""
        self.success = False
        self.answer = f"{type(exc).__name__}: {exc}"
        self.metadata["error"] = {"type": type(exc).__name__, "message": str(exc), "op": op_name}


class FlowContext(BaseContext):
    """The context of one flow run.

    ``flow_id``, ``response`` and ``stream_queue`` live in the data like any other
    key (as in flowllm), so ``"response" in ctx`` is True and :meth:`dump`
    includes them.

    :param flow_id: the run's id; a new ``uuid4().hex`` when not given.
    :param response: the response to fill; a new :class:`FlowResponse` when not given.
    :param stream_queue: where stream chunks go; without one, the ``add_stream_*``
        methods do nothing.
    :param kwargs: initial data.
    :raises TypeError: when ``response`` is not a :class:`FlowResponse`.
    """

    def __init__(
        self,
        flow_id: str | None = None,
        response: FlowResponse | None = None,
        stream_queue: asyncio.Queue[FlowStreamChunk] | None = None,
        **kwargs: Any,
    ) -> None:
        if response is not None and not isinstance(response, FlowResponse):
            raise TypeError(f"response must be a FlowResponse, got {type(response).__name__}")
        super().__init__(**kwargs)
        self._data["flow_id"] = flow_id if flow_id else uuid.uuid4().hex
        self._data["response"] = response if response is not None else FlowResponse()
        self._data["stream_queue"] = stream_queue

    @property
    def streaming(self) -> bool:
        """True when chunks go to a queue."""
        return self._data.get("stream_queue") is not None

    def add_response_error(self, exc: BaseException, op_name: str = "") -> None:
        """Mark the response failed with ``exc`` (see :meth:`FlowResponse.set_error`)."""
        self.response.set_error(exc, op_name)

    # -- streaming -----------------------------------------------------------------------

    async def add_stream_chunk(self, chunk: FlowStreamChunk) -> None:
        """Stamp ``chunk`` with this run's id and queue it (no-op without a queue)."""
        chunk.flow_id = self.flow_id
        queue = self._data.get("stream_queue")
        if queue is not None:
            await queue.put(chunk)

    async def add_stream_string_and_type(self, chunk: str | dict | list, chunk_type: ChunkEnum | str) -> FlowContext:
        """flowllm's way to queue a piece of output of a given kind; returns the context.

        :raises ValueError: when ``chunk_type`` is not a :class:`ChunkEnum` value.
        """
        await self.add_stream_chunk(FlowStreamChunk(chunk_type=chunk_type, chunk=chunk))
        return self

    #: the name flowllm's flows call (their own definition of it is missing)
    add_stream_chunk_and_type = add_stream_string_and_type

    async def add_stream_content(self, text: str) -> None:
        await self.add_stream_chunk(FlowStreamChunk(chunk_type="content", chunk=text))

    async def add_stream_progress(self, current: int, total: int, message: str = "", result: Any = None) -> None:
        """A ``progress`` chunk ``{"current", "total", "percentage", "message"}`` (+ ``result``)."""
        percentage = round(100 * current / total, 1) if total else 0
        chunk: dict[str, Any] = {"current": current, "total": total, "percentage": percentage, "message": message}
        if result is not None:
            chunk["result"] = result
        await self.add_stream_chunk(FlowStreamChunk(chunk_type="progress", chunk=chunk))

    async def add_stream_done(self, summary: str | dict | list | None = None) -> None:
        """The last chunk of a stream: ``chunk_type="done"``, ``done=True``."""
        chunk = FlowStreamChunk(chunk_type="done", chunk=summary if summary is not None else "", done=True)
        await self.add_stream_chunk(chunk)

    async def add_stream_error(self, message: str, error_code: str = "error") -> None:
        """An ``error`` chunk, which ends the stream (``done=True``, as in flowllm).

        The message is the chunk; the code is ``metadata["error_code"]``.
        """
        chunk = FlowStreamChunk(chunk_type="error", chunk=message, done=True, metadata={"error_code": error_code})
        await self.add_stream_chunk(chunk)
