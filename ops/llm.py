"""``self.llm`` of an op: flowllm 0.2's ``BaseLLM`` methods over flowbridge's one LLM client.

An adapter, not a second client: :class:`OpLLM` wraps the op's :class:`~llm_client.LLMClient`
(the app's, or the op's own ``llm=``) and adds flowllm's ``chat``/``achat``/``stream_chat``/
``astream_chat``, which take and return :class:`~ops.schema.Message` objects, take tools as
:class:`~ops.tool_call.ToolCall` and yield :class:`~ops.schema.FlowStreamChunk`. Every other
attribute is the client's (``self.llm.chat_completion_async(...)``, ``self.llm.async_chat(prompt)``,
``self.llm.model``...). The one name both have, ``chat``, dispatches on its first argument: a
string is the client's ``chat(prompt, ...) -> str``, a list of messages is flowllm's.

The model's tool calls come back as ``ToolCall`` objects with ``id``, ``name``, ``arguments`` and
:attr:`~ops.tool_call.ToolCall.argument_dict`. A call that cannot be run is kept, never dropped
and never raised: its ``problem`` says why (arguments that are not a JSON object, a tool that was
not offered, a required input missing or of the wrong type), so an agent can answer it with a
tool message telling the model (see :func:`tool_error_message`).

Differences from flowllm, on purpose: failures raise the client's typed errors (``LLMError``);
only with ``OpLLM(..., raise_exception=False)`` do ``chat``/``achat`` return ``default_value``
and the streams end with one ``ERROR`` chunk. The client already retried what can be retried;
``max_retries`` here re-asks the model when ``callback_fn`` fails on its answer. A stream is
never restarted once it has begun. ``temperature``/``max_tokens`` are sent only when given
(here or to the constructor), as flowllm does; other keyword arguments go into the request body.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from llm_client import ChatCompletion, LLMClient, LLMError, StreamDelta

from .schema import ChunkEnum, FlowStreamChunk, Message, Role
from .tool_call import ToolCall

__all__ = ["OpLLM", "check_tool_calls", "op_llm", "tool_error_message"]

logger = logging.getLogger(__name__)

#: Request options the client takes as arguments; other keyword arguments go into ``extra_body``.
_CLIENT_OPTIONS = ("temperature", "max_tokens", "model", "tool_choice", "response_format")
_KINDS = {"content": ChunkEnum.ANSWER, "reasoning": ChunkEnum.THINK, "usage": ChunkEnum.USAGE}

_adapters: weakref.WeakKeyDictionary[LLMClient, OpLLM] = weakref.WeakKeyDictionary()
_adapters_lock = threading.Lock()


def op_llm(client: LLMClient | OpLLM) -> OpLLM:
    """The adapter of ``client`` (one per client, so ``op.llm is other_op.llm`` when they share it)."""
    if isinstance(client, OpLLM):
        return client
    with _adapters_lock:
        adapter = _adapters.get(client)
        if adapter is None:
            adapter = _adapters[client] = OpLLM(client)
        return adapter


class OpLLM:
    """flowllm's LLM interface over an :class:`~llm_client.LLMClient` (see the module docstring).

    :param client: the client every call goes through.
    :param model_name: the model to ask (default: the client's, ``LLM_MODEL``).
    :param max_retries: attempts when ``callback_fn`` raises on the model's answer.
    :param raise_exception: False: a failure returns ``default_value`` (chat) or ends the stream
        with an ``ERROR`` chunk, as flowllm's default; True (ours): it raises.
    :param params: request options sent with every call (``temperature=0``, ``top_p=...``).
    """

    def __init__(self, client: LLMClient, model_name: str | None = None, max_retries: int = 3,
                 raise_exception: bool = True, **params: Any) -> None:
        if not isinstance(max_retries, int) or max_retries < 1:
            raise ValueError(f"max_retries must be an integer >= 1, got {max_retries!r}")
        self.client = client
        self._model_name = model_name
        self.max_retries = max_retries
        self.raise_exception = raise_exception
        self.kwargs = params

    @property
    def model_name(self) -> str:
        return self._model_name or self.client.model

    def __getattr__(self, name: str) -> Any:
        # Only called for names OpLLM does not have: the client's methods and properties.
        if name == "client":
            raise AttributeError(name)
        return getattr(self.client, name)

    def __repr__(self) -> str:
        return f"OpLLM({self.client!r}, model_name={self.model_name!r})"

    # -- chat ----------------------------------------------------------------------------------

    def chat(self, messages: str | Sequence[Message | Mapping[str, Any]], *args: Any, **kwargs: Any) -> Any:
        """flowllm's ``chat(messages, tools=None, enable_stream_print=False, callback_fn=None,
        default_value=None, **kwargs) -> Message | callback result``; with a string first argument,
        the client's ``chat(prompt, temperature, max_tokens, system_prompt, *, model) -> str``."""
        if isinstance(messages, str):
            return self.client.chat(messages, *args, **kwargs)
        return self._chat(messages, *args, **kwargs)

    def _chat(self, messages: Sequence[Message | Mapping[str, Any]], tools: Sequence[ToolCall] | None = None,
              enable_stream_print: bool = False, callback_fn: Callable[[Message], Any] | None = None,
              default_value: Any = None, **kwargs: Any) -> Any:
        request, offered = self._request(messages, tools, kwargs)
        for attempt in range(self.max_retries):
            try:
                message = _answer(self.client.chat_completion(**request), offered, enable_stream_print)
            except Exception as exc:  # noqa: BLE001 - raised, or default_value with raise_exception=False
                return self._failed(exc, default_value)
            done, result = self._callback(callback_fn, message, attempt, default_value)
            if done:
                return result
        return default_value  # not reached: the last attempt is done either way

    async def achat(self, messages: Sequence[Message | Mapping[str, Any]], tools: Sequence[ToolCall] | None = None,
                    enable_stream_print: bool = False, callback_fn: Callable[[Message], Any] | None = None,
                    default_value: Any = None, **kwargs: Any) -> Any:
        """The model's answer as an assistant :class:`Message` (``content``, ``reasoning_content``,
        ``tool_calls``), or ``callback_fn(message)``; the async twin of :meth:`chat`."""
        request, offered = self._request(messages, tools, kwargs)
        for attempt in range(self.max_retries):
            try:
                completion = await self.client.chat_completion_async(**request)
                message = _answer(completion, offered, enable_stream_print)
            except Exception as exc:  # noqa: BLE001 - raised, or default_value with raise_exception=False
                return self._failed(exc, default_value)
            done, result = self._callback(callback_fn, message, attempt, default_value)
            if done:
                return result
        return default_value

    def _callback(self, callback_fn: Callable[[Message], Any] | None, message: Message, attempt: int,
                  default_value: Any = None) -> tuple[bool, Any]:
        """``(True, result)`` of ``callback_fn(message)`` (or the message); ``(False, None)`` when the
        callback failed and the model is to be asked again."""
        if callback_fn is None:
            return True, message
        try:
            return True, callback_fn(message)
        except Exception as exc:  # noqa: BLE001 - the answer could not be used: ask again, or give up
            if attempt == self.max_retries - 1:
                return True, self._failed(exc, default_value)
            logger.warning("%s: callback_fn failed on the answer (attempt %d of %d), asking again: %s: %s",
                           self.model_name, attempt + 1, self.max_retries, type(exc).__name__, exc)
            return False, None

    def _failed(self, exc: Exception, default_value: Any) -> Any:
        """Raise ``exc``; with ``raise_exception=False`` (flowllm's default) log it and return ``default_value``."""
        if self.raise_exception:
            raise exc
        logger.warning("chat with model=%s failed, returning default_value: %s: %s", self.model_name,
                       type(exc).__name__, exc)
        return default_value

    # -- streams -------------------------------------------------------------------------------

    def stream_chat(self, messages: Sequence[Message | Mapping[str, Any]], tools: Sequence[ToolCall] | None = None,
                    **kwargs: Any) -> Iterator[FlowStreamChunk]:
        """The answer as chunks: ``THINK`` (reasoning), ``ANSWER`` (text), ``USAGE`` (token counts,
        when the server sends them), then one ``TOOL`` chunk per tool call (its OpenAI dump; an
        invalid call has ``metadata["problem"]``)."""
        request, offered = self._request(messages, tools, kwargs)
        stream = self.client.chat_stream(request.pop("messages"), **request)
        try:
            with contextlib.closing(stream.deltas()) as deltas:
                for delta in deltas:
                    yield _chunk(delta)
        except LLMError as exc:
            if self.raise_exception:
                raise
            yield FlowStreamChunk(chunk_type=ChunkEnum.ERROR, chunk=str(exc), metadata={"error": type(exc).__name__})
            return
        yield from _tool_chunks(stream.tool_calls, offered)

    async def astream_chat(self, messages: Sequence[Message | Mapping[str, Any]],
                           tools: Sequence[ToolCall] | None = None, **kwargs: Any) -> AsyncIterator[FlowStreamChunk]:
        """:meth:`stream_chat` for async code; the stream is read on one thread of the client's pool."""
        request, offered = self._request(messages, tools, kwargs)
        stream = self.client.chat_stream(request.pop("messages"), **request)
        try:
            async with contextlib.aclosing(self.client.iterate_deltas_async(stream)) as deltas:
                async for delta in deltas:
                    yield _chunk(delta)
        except LLMError as exc:
            if self.raise_exception:
                raise
            yield FlowStreamChunk(chunk_type=ChunkEnum.ERROR, chunk=str(exc), metadata={"error": type(exc).__name__})
            return
        for chunk in _tool_chunks(stream.tool_calls, offered):
            yield chunk

    def close(self) -> None:
        """Nothing: the client belongs to the app (or to whoever gave it to the op), which closes it."""

    async def async_close(self) -> None:
        """Nothing (see :meth:`close`)."""

    # -- the request ---------------------------------------------------------------------------

    def _request(self, messages: Sequence[Message | Mapping[str, Any]], tools: Sequence[ToolCall] | None,
                 kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, ToolCall]]:
        """The client's arguments, and the offered tools by name."""
        if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
            raise TypeError(f"messages must be a list of Message, got {type(messages).__name__}")
        options = {**self.kwargs, **kwargs}
        offered = {tool.name: tool for tool in (_tool(t) for t in tools or ())}
        request: dict[str, Any] = {name: options.pop(name, None) for name in _CLIENT_OPTIONS}
        request["model"] = request["model"] or self._model_name
        request["messages"] = [message_dict(m) for m in messages]
        request["tools"] = [tool.simple_input_dump() for tool in offered.values()] or None
        request["extra_body"] = options or None
        return request, offered


# -- conversions ------------------------------------------------------------------------------


def message_dict(message: Message | Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI request form of a message: role, content, and when present its tool calls
    (without flowllm's ``index``), ``tool_call_id``, ``name`` and ``reasoning_content``."""
    if not isinstance(message, Message):
        if not isinstance(message, Mapping):
            raise TypeError(f"a message must be a Message or a dict, got {type(message).__name__}")
        message = Message.model_validate(dict(message))
    out: dict[str, Any] = {"role": message.role.value, "content": message.dump_content()}
    if message.tool_calls:
        out["tool_calls"] = [{"id": call.id, "type": call.type or "function",
                              "function": {"name": call.name, "arguments": call.arguments}}
                             for call in message.tool_calls]
    for key in ("tool_call_id", "name", "reasoning_content"):
        if getattr(message, key):
            out[key] = getattr(message, key)
    return out


def _tool(tool: ToolCall | Mapping[str, Any]) -> ToolCall:
    if isinstance(tool, ToolCall):
        if not tool.name:
            raise ValueError("a tool offered to the model needs a name")
        return tool
    if isinstance(tool, Mapping):
        return _tool(ToolCall.model_validate(dict(tool)))
    raise TypeError(f"tools must be ToolCall objects (an op's tool_call), got {type(tool).__name__}")


def check_tool_calls(calls: Sequence[Mapping[str, Any]], offered: Mapping[str, ToolCall]) -> list[ToolCall]:
    """The model's calls (OpenAI dicts) as ``ToolCall`` objects, each with its ``problem`` ("" if none)."""
    checked = []
    for raw in calls:
        call = ToolCall.model_validate(dict(raw))
        call.problem = _problem(call, offered)
        checked.append(call)
    return checked


def _problem(call: ToolCall, offered: Mapping[str, ToolCall]) -> str:
    tool = offered.get(call.name)
    if tool is None:
        names = ", ".join(sorted(offered)) or "none"
        return f"tool {call.name!r} was not offered (the tools are: {names})"
    try:
        arguments = call.argument_dict
    except ValueError as exc:
        return f"the arguments of {call.name!r} are not a JSON object ({exc}): {call.arguments[:200]!r}"
    problems = tool.validate_inputs(arguments)
    return f"bad arguments for {call.name!r}: " + "; ".join(problems) if problems else ""


def tool_error_message(call: ToolCall) -> Message:
    """The tool message that answers an invalid call with its problem, for the model to correct it."""
    return Message(role=Role.TOOL, tool_call_id=call.id,
                   content=f"Error: {call.problem or 'this tool call could not be run'}. "
                           "Correct the call and try again.")


def _answer(completion: ChatCompletion, offered: Mapping[str, ToolCall], show: bool) -> Message:
    message = Message(role=Role.ASSISTANT, content=completion.text, reasoning_content=completion.reasoning_content,
                      tool_calls=check_tool_calls(completion.tool_calls, offered))
    if show:
        think = f"<think>\n{message.reasoning_content}\n</think>\n" if message.reasoning_content else ""
        print(think + message.content, flush=True)
    return message


def _chunk(delta: StreamDelta) -> FlowStreamChunk:
    return FlowStreamChunk(chunk_type=_KINDS[delta.kind], chunk=delta.value)


def _tool_chunks(calls: Sequence[Mapping[str, Any]], offered: Mapping[str, ToolCall]) -> Iterator[FlowStreamChunk]:
    for call in check_tool_calls(calls, offered):
        yield FlowStreamChunk(chunk_type=ChunkEnum.TOOL, chunk=call.simple_output_dump(),
                              metadata={"problem": call.problem} if call.problem else {})
