"""Composition: ``a >> b`` runs ops in sequence, ``a | b`` concurrently, on one shared context.

Chains flatten (``a >> (b >> c)`` is one sequence of three) and building one
never changes its operands. Sync ops may be mixed in: they run on a thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .base import BaseAsyncOp, BaseOp


async def run_op(op: BaseOp, context: Any) -> Any:
    """Run any op on ``context``: an async op awaited, a sync op on a thread."""
    if isinstance(op, BaseAsyncOp):
        return await op.async_call(context=context)
    return await asyncio.to_thread(op.call, context)


class _GroupOp(BaseAsyncOp):
    """Ops run together on the caller's context."""

    def __init__(self, ops: list[BaseOp] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ops: list[BaseOp] = list(ops or [])
        for op in self.ops:
            if not isinstance(op, BaseOp):
                raise TypeError(f"{type(self).__name__} takes ops, got {type(op).__name__}")

    @classmethod
    def chain(cls, left: BaseOp, right: BaseOp) -> _GroupOp:
        if not isinstance(right, BaseOp):
            return NotImplemented  # type: ignore[return-value]
        parts: list[BaseOp] = []
        for op in (left, right):
            parts.extend(op.ops if type(op) is cls else [op])  # type: ignore[attr-defined]
        return cls(ops=parts)

    def copy(self, **overrides: Any) -> _GroupOp:
        return type(self)(ops=[op.copy() for op in self.ops], **overrides)

    def __lshift__(self, ops: Any) -> BaseOp:
        # A group's ops are its members; sub-ops belong to one op (as flowllm refuses it too).
        raise TypeError(f"attach sub-ops to an op, not to a {type(self).__name__}: "
                        "write (AgentOp() << [ToolOp()]) >> NextOp(), not AgentOp() >> NextOp() << ToolOp()")

    def __repr__(self) -> str:
        joiner = " >> " if isinstance(self, SequentialOp) else " | "
        return "(" + joiner.join(repr(op) for op in self.ops) + ")"


class SequentialOp(_GroupOp):
    """``a >> b >> c``: each op in turn; returns the last op's result."""

    async def async_execute(self) -> Any:
        result = None
        for op in self.ops:
            result = await run_op(op, self.context)
        return result


class ParallelOp(_GroupOp):
    """``a | b``: all ops at once; returns their results in order.

    The first failure cancels the others and is raised as it is.
    """

    async def async_execute(self) -> list[Any]:
        tasks = [asyncio.ensure_future(run_op(op, self.context)) for op in self.ops]
        try:
            done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            return [task.result() for task in tasks]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
