"""``ReactAgentOp``: flowllm 0.2's ReAct agent — the model calls the attached tool ops until it answers.

Each step asks the model with the tools offered; when it calls tools, each call runs on a *copy*
of the attached tool op (so calls never share state), all calls of a step in parallel
(``submit_async_task`` / ``join_async_task``), and every result goes back to the model as a
``role: tool`` message with the call's id. The first answer without tool calls is the final
answer (``context.response.answer`` and the output ``react_agent_result``).

Tools are attached as flowllm attaches them, ``ReactAgentOp() << [LookupOp(), CalculatorOp()]``,
or named by registered op name, ``ReactAgentOp(tools=["lookup", {"opName": "calculator",
"opParams": {...}}])`` (the form a workflow ``op`` node's ``opParams`` can carry).

Nothing the model does crashes the run: a call of a tool that was not offered, arguments that
are not a JSON object or miss a required input, and a tool that raises (or times out) are each
answered to the model with a tool message saying what went wrong, so it can correct itself.
``response.metadata["tool_calls"]`` records every call (step, id, name, arguments, status
``ok``/``error``/``not_run``, result or error), ``metadata["agent"]`` the steps taken and why
the loop stopped, ``metadata["messages"]`` the conversation (flowllm's key). When streamed, each
tool call that ran is one ``TOOL`` chunk (SSE ``progress``), and the final answer one ``ANSWER``
chunk (SSE ``content``).

Differences from flowllm, on purpose:

- ``max_steps`` bounds the model's turns. When the model still calls tools on the last one,
  those calls are not run; the answer says the agent stopped without a final answer,
  ``response.success`` is False and ``metadata["agent"]["stop_reason"]`` is ``"max_steps"``
  (flowllm ran them and answered with the last tool result).
- Unknown tools and malformed arguments are answered to the model (flowllm dropped the first
  silently, leaving the call unanswered, and crashed on the second); a failing tool's error is
  its result (flowllm: ``"<op> execution failed!"``).
- ``tool_call_interval`` defaults to 0 and waits without blocking the event loop (flowllm slept
  1 s, blocking, between calls); each call is bounded by ``tool_timeout`` seconds, and a step runs
  at most ``max_tool_calls`` calls (the others are answered as errors).
- Two attached tools with the same name, or an attached op that is not a tool op, are errors.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections.abc import Mapping
from typing import Any

from ..context import FlowContext
from ..llm import tool_error_message
from ..schema import ChunkEnum, FlowStreamChunk, Message, Role
from ..services import C
from ..tool_call import ToolCall
from ..tool_op import BaseAsyncToolOp
from ._common import check_positive_int

logger = logging.getLogger(__name__)

#: The most steps an agent may be given: every step is a model call.
MAX_STEPS_LIMIT = 100
#: Characters of a result or of arguments kept in ``metadata["tool_calls"]`` and progress chunks
#: (the whole text is in ``metadata["messages"]``).
RECORDED_CHARS = 2000
#: Context keys a tool call's arguments may not set (they belong to the run).
_RESERVED_ARGUMENTS = frozenset({"flow_id", "response", "stream_queue", "stream"})


@C.register_op()
class ReactAgentOp(BaseAsyncToolOp):
    """Answer ``query`` (or continue ``messages``) with the model, calling the attached tool ops.

    :param llm: flowllm's model name (ignored: the app's client is used), or a client.
    :param max_steps: the most model turns, 1 to 100 (flowllm's default, 5).
    :param tool_call_interval: seconds to wait between starting two tool calls of a step.
    :param add_think_tool: offer ``ThinkToolOp`` too (dropped for the step after the model used it).
    :param tools: registered tool ops to attach, by name or ``{"opName": name, "opParams": {...}}``.
    :param tool_timeout: seconds one tool call may take (None: unbounded); a slower one is an error.
    :param max_tool_calls: the most calls run in one step; the model's further calls are answered as errors.
    """

    def __init__(self, llm: Any = None, max_steps: int = 5, tool_call_interval: float = 0.0,
                 add_think_tool: bool = False, tools: list[str | Mapping[str, Any]] | None = None,
                 tool_timeout: float | None = 60.0, max_tool_calls: int = 16, **kwargs: Any) -> None:
        super().__init__(llm=llm, **kwargs)
        self.max_steps = check_positive_int(max_steps, "max_steps")
        if self.max_steps > MAX_STEPS_LIMIT:
            raise ValueError(f"max_steps must be at most {MAX_STEPS_LIMIT}, got {max_steps!r}")
        self.tool_call_interval = _seconds(tool_call_interval, "tool_call_interval")
        self.tool_timeout = None if tool_timeout is None else _seconds(tool_timeout, "tool_timeout", positive=True)
        self.max_tool_calls = check_positive_int(max_tool_calls, "max_tool_calls")
        self.add_think_tool = bool(add_think_tool)
        for tool in tools or ():
            self.add_op(_registered_tool(self.name, tool))

    def build_tool_call(self) -> ToolCall:
        return ToolCall(
            description="A ReAct agent that answers the user's query, calling its tools as it needs them.",
            input_schema={
                "query": {"type": "string", "description": "the question (or give messages)", "required": False},
                "messages": {"type": "array", "description": "the conversation, [{role, content}, ...]",
                             "required": False},
            },
        )

    # -- the parts flowllm's subclasses override -------------------------------------------------

    async def build_tool_op_dict(self) -> dict[str, BaseAsyncToolOp]:
        """The attached tool ops by tool name.

        :raises ValueError: for an attached op that is not a tool op, or two tools of one name.
        """
        attached = self.ops if isinstance(self.ops, list) else list(self.ops.values())
        tool_ops: dict[str, BaseAsyncToolOp] = {}
        for op in attached:
            if not isinstance(op, BaseAsyncToolOp):
                raise ValueError(f"{self.name}: {op.name} is not a tool op; an agent's sub-ops are its tools")
            name = op.tool_call.name
            if name in tool_ops:
                raise ValueError(f"{self.name}: two tools are named {name!r}; attach it once, or give one "
                                 "another name= (a tool is named after its op, without '_op')")
            op.language = self.language
            tool_ops[name] = op
        return tool_ops

    async def build_messages(self) -> list[Message]:
        """The system prompt and the query, or the given ``messages``.

        :raises ValueError: when neither is given, or a message is not a message.
        """
        query = self.input_dict.get("query")
        if isinstance(query, str) and query.strip():
            now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
            return [Message(role=Role.SYSTEM, content=self.prompt_format("system_prompt", time=now)),
                    Message(role=Role.USER, content=query)]
        messages = self.input_dict.get("messages")
        if not messages:
            raise ValueError(f"{self.name}: give 'query' or 'messages'")
        if not isinstance(messages, list):
            raise ValueError(f"{self.name}: 'messages' must be a list of {{role, content}}")
        built = []
        for i, message in enumerate(messages):
            if isinstance(message, Message):
                built.append(message)
            elif isinstance(message, Mapping):
                try:
                    built.append(Message(**message))
                except ValueError as exc:
                    raise ValueError(f"{self.name}: messages[{i}] is not a message: {exc}") from None
            else:
                raise ValueError(f"{self.name}: messages[{i}] must be an object with 'role' and 'content'")
        return built

    async def before_chat(self, messages: list[Message]) -> list[Message]:
        """The messages to send this step (a hook: all of them, by default)."""
        return messages

    async def execute_tool(self, op: BaseAsyncToolOp, tool_call: ToolCall) -> None:
        """Start ``op`` (a copy of the tool) on the call's arguments, as one task of the step."""
        self.submit_async_task(self._run_tool, op, tool_call.argument_dict)

    async def _run_tool(self, op: BaseAsyncToolOp, arguments: Mapping[str, Any]) -> Any:
        context = FlowContext()
        context.update({key: value for key, value in arguments.items() if key not in _RESERVED_ARGUMENTS})
        if self.tool_timeout is None:
            return await op.async_call(context)
        try:
            return await asyncio.wait_for(op.async_call(context), self.tool_timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no result after {self.tool_timeout:g}s") from None

    # -- the loop ------------------------------------------------------------------------------

    async def _reasoning_step(self, messages: list[Message], tool_op_dict: dict[str, BaseAsyncToolOp],
                              step: int) -> tuple[Message, bool]:
        """Ask the model; its message joins the conversation. True when it called tools."""
        sent = await self.before_chat(messages)
        tools = [op.tool_call for op in tool_op_dict.values()]
        assistant_message: Message = await self.llm.achat(messages=sent, tools=tools or None)
        messages.append(assistant_message)
        logger.info("%s step %d: %d tool call(s)", self.name, step + 1, len(assistant_message.tool_calls))
        return assistant_message, bool(assistant_message.tool_calls)

    async def _acting_step(self, assistant_message: Message, tool_op_dict: dict[str, BaseAsyncToolOp],
                           think_op: BaseAsyncToolOp | None, step: int) -> list[Message]:
        """Run the step's tool calls in parallel; one tool message per call, in the calls' order."""
        started: list[tuple[ToolCall, BaseAsyncToolOp | None]] = []
        running = 0
        for call in assistant_message.tool_calls:
            op = tool_op_dict.get(call.name)
            if running >= self.max_tool_calls and not call.problem:
                call = call.model_copy(update={"problem": f"not run: more than {self.max_tool_calls} tool calls "
                                                          "in one step; make fewer calls at a time"})
            if call.problem or op is None:
                started.append((call, None))
                continue
            if started and self.tool_call_interval:
                await asyncio.sleep(self.tool_call_interval)
            op_copy = op.copy()
            op_copy.tool_call.id = call.id
            await self.execute_tool(op_copy, call)
            started.append((call, op_copy))
            running += 1
        outcomes = await self.join_async_task()
        ran = [op for _, op in started if op is not None]
        by_op = dict(zip(map(id, ran), outcomes)) if len(outcomes) == len(ran) else {}
        replies = []
        for call, op in started:
            reply, record = self._tool_reply(call, op, by_op.get(id(op)) if op is not None else None, step)
            replies.append(reply)
            self._tool_records.append(record)
            await self.context.add_stream_chunk(FlowStreamChunk(
                chunk_type=ChunkEnum.TOOL, chunk={**call.simple_output_dump(), **record}))
        if think_op is not None:
            used = any(call.name == think_op.tool_call.name for call in assistant_message.tool_calls)
            if used:
                tool_op_dict.pop(think_op.tool_call.name, None)
            else:
                tool_op_dict[think_op.tool_call.name] = think_op
        return replies

    def _tool_reply(self, call: ToolCall, op: BaseAsyncToolOp | None, outcome: Any,
                    step: int) -> tuple[Message, dict[str, Any]]:
        """The tool message answering ``call``, and its record for the metadata."""
        record: dict[str, Any] = {"step": step + 1, "id": call.id, "name": call.name,
                                  "arguments": call.arguments[:RECORDED_CHARS]}
        error = call.problem or ("" if op is not None else f"tool {call.name!r} was not offered")
        if not error and isinstance(outcome, BaseException):
            error = f"tool {call.name!r} failed: {type(outcome).__name__}: {outcome}"
        elif not error and not op.context.response.success:
            error = f"tool {call.name!r} failed: {op.context.response.answer}"
        if error:
            logger.info("%s step %d: tool call %s (%s) answered with an error", self.name, step + 1, call.id,
                        call.name)
            message = (tool_error_message(call) if call.problem else
                       Message(role=Role.TOOL, tool_call_id=call.id, content=f"Error: {error}"))
            return message, {**record, "status": "error", "error": error[:RECORDED_CHARS]}
        text = _result_text(op)
        return (Message(role=Role.TOOL, content=text, tool_call_id=call.id),
                {**record, "status": "ok", "result": text[:RECORDED_CHARS]})

    async def async_execute(self) -> None:
        """Reason and act until the model answers without tools, or ``max_steps`` turns."""
        tool_op_dict = await self.build_tool_op_dict()
        think_op = self._think_op(tool_op_dict)
        messages = await self.build_messages()
        self._tool_records: list[dict[str, Any]] = []
        metadata = self.context.response.metadata
        metadata["tool_calls"] = self._tool_records
        assistant_message, steps, calling = None, 0, False
        for step in range(self.max_steps):
            steps = step + 1
            assistant_message, calling = await self._reasoning_step(messages, tool_op_dict, step)
            if not calling or steps == self.max_steps:
                break
            messages.extend(await self._acting_step(assistant_message, tool_op_dict, think_op, step))
        if calling and assistant_message is not None:
            answer = self._stopped(assistant_message, steps)
        else:
            answer = assistant_message.content if assistant_message is not None else ""
        metadata["agent"] = {"op": self.name, "steps": steps, "max_steps": self.max_steps,
                             "stop_reason": "max_steps" if calling else "answer"}
        metadata["messages"] = messages
        self.set_output(answer)
        await self.context.add_stream_chunk(FlowStreamChunk(chunk_type=ChunkEnum.ANSWER, chunk=answer))

    def _stopped(self, assistant_message: Message, steps: int) -> str:
        """Record the calls left unrun, fail the response, and say so."""
        for call in assistant_message.tool_calls:
            self._tool_records.append({"step": steps, "id": call.id, "name": call.name,
                                       "arguments": call.arguments[:RECORDED_CHARS], "status": "not_run",
                                       "error": f"not run: max_steps ({self.max_steps}) reached"})
        names = ", ".join(sorted({call.name for call in assistant_message.tool_calls}))
        answer = (f"{self.name} stopped after {steps} step(s) (max_steps={self.max_steps}) without a final "
                  f"answer: the model was still calling tools ({names}).")
        response = self.context.response
        response.success = False
        response.metadata["error"] = {"type": "MaxStepsReached", "message": answer, "op": self.name}
        logger.warning("%s stopped after max_steps=%d with tool calls pending", self.name, self.max_steps)
        return answer

    def _think_op(self, tool_op_dict: dict[str, BaseAsyncToolOp]) -> BaseAsyncToolOp | None:
        if not self.add_think_tool:
            return None
        from .think_tool_op import ThinkToolOp  # ported beside this op; only needed when asked for

        think_op = ThinkToolOp(language=self.language)
        tool_op_dict.setdefault(think_op.tool_call.name, think_op)
        return think_op


def _result_text(op: BaseAsyncToolOp) -> str:
    """A tool's output as the text of its tool message: a string as is, anything else as JSON."""
    keys = op.output_keys
    value = op.output if isinstance(keys, str) else op.output_dict
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _registered_tool(agent: str, spec: str | Mapping[str, Any]) -> BaseAsyncToolOp:
    """The tool op a ``tools`` entry names: ``"name"`` or ``{"opName": name, "opParams": {...}}``.

    :raises ValueError: naming the entry, for an unknown op, bad params or an op that is not a tool.
    """
    params: Any = {}
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"opName", "opParams"})
        if unknown:
            raise ValueError(f"{agent}: tools entries take opName and opParams, not {', '.join(unknown)}")
        name, params = spec.get("opName"), spec.get("opParams") or {}
    else:
        name = spec
    if not isinstance(name, str) or not name:
        raise ValueError(f"{agent}: a tools entry is an op name or {{\"opName\": name, \"opParams\": {{...}}}}, "
                         f"got {spec!r}")
    if not isinstance(params, Mapping):
        raise ValueError(f"{agent}: opParams of tool {name!r} must be an object")
    try:
        cls = C.get_op_class(name)
    except KeyError as exc:
        raise ValueError(f"{agent}: tools: {exc.args[0]}") from None
    try:
        op = cls(**params)
    except TypeError as exc:
        raise ValueError(f"{agent}: tool {name!r}: {exc}") from None
    if not isinstance(op, BaseAsyncToolOp):
        raise ValueError(f"{agent}: {name!r} is not a tool op")
    return op


def _seconds(value: Any, name: str, positive: bool = False) -> float:
    """:raises ValueError: unless ``value`` is a number of seconds (> 0 when ``positive``, else >= 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a number of seconds {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)
