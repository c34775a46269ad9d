"""``ExecuteCodeOp``: run model-written Python (flowllm's), in a limited child process, never in ours."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from ..services import C
from ..tool_call import ToolCall
from ..tool_op import BaseAsyncToolOp
from ._sandbox import SandboxLimits, SandboxResult, run_python

logger = logging.getLogger(__name__)

#: The variable that lets models run code at all: off unless set to 1/true/yes. The op is a tool any API
#: or MCP client (and any agent) can call, and its sandbox does not cut the network.
ENABLE_VARIABLE = "FLOWBRIDGE_EXECUTE_CODE"


class ExecuteCodeDisabled(ValueError):
    """The op was called while :data:`ENABLE_VARIABLE` is off (a ValueError: the API answers 422 naming it)."""


def execute_code_enabled() -> bool:
    return os.environ.get(ENABLE_VARIABLE, "").strip().lower() in ("1", "true", "yes")


@C.register_op()
class ExecuteCodeOp(BaseAsyncToolOp):
    """Run the ``code`` input (Python) and answer with what it printed.

    As flowllm's ``ExecuteCodeOp`` this is a tool an agent can call for analysis
    or calculation, and it runs on ``C.thread_pool``, off the event loop. Unlike
    flowllm's, which ``exec``\\ s the code in the server's own process (with the
    server's memory, environment and API keys in reach), the code runs in a child
    process with limits (see :mod:`ops.gallery._sandbox` for what they cover and
    what they do not, e.g. the network).

    The output ``execute_code_result`` is the code's stdout. When the code fails,
    it is the stdout so far followed by the reason on its own line (the exception,
    ``"timed out after 10s ..."``, ``"MemoryError: ..."``); flowllm gave ``str(e)``
    alone. ``response.metadata["execute_code"]`` holds ``exit_code``, ``error``,
    ``truncated`` and the code's stderr (bounded).

    :param timeout: wall-clock seconds per run.
    :param cpu_seconds: CPU seconds per run.
    :param memory_mb: address space of the child, MiB.
    :param file_size_mb: the largest file (stdout included) the code may write, MiB.
    :param max_output: characters of output kept.
    """

    def __init__(self, timeout: float = 10.0, cpu_seconds: int = 5, memory_mb: int = 512, file_size_mb: int = 8,
                 max_output: int = 20_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limits = SandboxLimits(timeout=timeout, cpu_seconds=cpu_seconds, memory_mb=memory_mb,
                                    file_size_mb=file_size_mb, max_output=max_output)

    def build_tool_call(self) -> ToolCall:
        return ToolCall(
            description="Execute python code can be used in scenarios such as analysis or calculation, "
                        "and the final result can be printed using the `print` function.",
            input_schema={
                "code": {"type": "string", "description": "code to be executed", "required": True},
            },
        )

    async def async_before_execute(self) -> None:
        await super().async_before_execute()
        if not execute_code_enabled():
            raise ExecuteCodeDisabled(f"{self.name} is disabled: set {ENABLE_VARIABLE}=1 to let it run Python "
                                  "(in a limited child process; the network is not cut)")
        code = self.input_dict["code"]
        if not isinstance(code, str):
            raise ValueError(f"{self.name}: 'code' must be a string, got {type(code).__name__}")

    def execute(self) -> SandboxResult:
        """Run the code (blocking; :meth:`async_execute` calls it on ``C.thread_pool``)."""
        return run_python(self.input_dict["code"], self.limits)

    async def async_execute(self) -> None:
        result = await asyncio.get_running_loop().run_in_executor(C.thread_pool, self.execute)
        if result.error:
            logger.info("%s: the code stopped: %s", self.name, result.error)
        self.context.response.metadata["execute_code"] = {
            "exit_code": result.exit_code, "error": result.error, "truncated": result.truncated,
            "stderr": result.stderr,
        }
        self.set_output(_output(result))


def _output(result: SandboxResult) -> str:
    """stdout, then the reason the run stopped (if it did not end normally), then a truncation note."""
    text = result.stdout
    if result.error:
        text += ("" if not text or text.endswith("\n") else "\n") + result.error
    if result.truncated:
        text += ("" if text.endswith("\n") else "\n") + "[output truncated]"
    return text
