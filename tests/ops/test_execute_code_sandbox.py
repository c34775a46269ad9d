"""ExecuteCodeOp's sandbox (ops/gallery/_sandbox.py): model-written code runs in a limited child process,
never in ours. Code that loops, sleeps, allocates, forks, looks for our keys or writes without end ends in a
clear, bounded result; the event loop keeps running meanwhile."""

from __future__ import annotations

import ast
import asyncio
import os
from typing import Any

import pytest

from ops import C, FlowContext, OpApp
from ops.gallery import ExecuteCodeOp
from ops.gallery._sandbox import SandboxLimits, run_python

#: small limits, so each case ends fast; a generous wall clock, so a loaded machine still hits the others first
SMALL = {"timeout": 300.0, "cpu_seconds": 1, "memory_mb": 256, "file_size_mb": 1, "max_output": 2000}


@pytest.fixture(autouse=True)
def _enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBRIDGE_EXECUTE_CODE", "1")


def test_the_op_is_off_unless_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWBRIDGE_EXECUTE_CODE")

    async def main() -> None:
        async with OpApp():
            with pytest.raises(ValueError, match="FLOWBRIDGE_EXECUTE_CODE=1"):
                await ExecuteCodeOp().async_call(code="print(1)")

    asyncio.run(main())


def run(code: str, **limits: Any) -> FlowContext:
    """Run ExecuteCodeOp on ``code``; returns the context (output, answer, metadata)."""

    async def main() -> FlowContext:
        async with OpApp(env={}):
            context = FlowContext(code=code)
            await ExecuteCodeOp(**{**SMALL, **limits}).async_call(context)
            return context

    return asyncio.run(main())


def test_the_printed_output_is_the_answer() -> None:
    context = run("import math\nprint(sum(i * i for i in range(10)), round(math.pi, 2))")
    assert context["execute_code_result"] == context.response.answer == "285 3.14\n"
    assert context.response.success is True
    assert context.response.metadata["execute_code"] == {"exit_code": 0, "error": "", "truncated": False,
                                                         "stderr": ""}


def test_an_exception_keeps_what_was_printed_and_names_the_error() -> None:
    context = run("print('before')\n1 / 0")
    assert context.response.answer == "before\nZeroDivisionError: division by zero"
    assert context.response.metadata["execute_code"]["exit_code"] == 1


def test_code_that_loops_forever_hits_the_cpu_limit() -> None:
    context = run("while True:\n    pass", cpu_seconds=1)
    assert context.response.answer == "CPU time limit of 1s exceeded; the process was killed"


def test_code_that_waits_forever_hits_the_wall_clock_timeout() -> None:
    context = run("import time\ntime.sleep(3600)", timeout=1.5)
    assert context.response.answer == "timed out after 1.5s (wall clock); the process was killed"


def test_allocating_too_much_is_a_memory_error() -> None:
    context = run("data = bytearray(4 * 1024 ** 3)\nprint(len(data))", memory_mb=256)
    assert context.response.answer == "MemoryError: over the memory limit of 256 MiB"


def test_the_code_cannot_start_processes() -> None:
    context = run("import os\npid = os.fork()\nprint('child' if pid == 0 else 'parent')")
    answer = context.response.answer
    assert answer.startswith("BlockingIOError") and "Resource temporarily unavailable" in answer
    assert "child" not in answer and "parent" not in answer


def test_the_code_does_not_see_our_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-0123456789")
    monkeypatch.setenv("LLM_API_KEY", "sk-test-secret-0123456789")
    context = run("import os\nprint(sorted(os.environ))\nprint(os.environ['OPENAI_API_KEY'])")
    answer = context.response.answer
    assert "sk-test-secret" not in answer and "LLM_API_KEY" not in answer
    assert answer.endswith("KeyError: 'OPENAI_API_KEY'")
    # only what Python itself sets for its UTF-8 locale, if anything
    assert set(ast.literal_eval(answer.splitlines()[0])) <= {"LC_CTYPE"}


def test_writing_a_huge_file_hits_the_file_size_limit() -> None:
    context = run("with open('big.bin', 'wb') as f:\n    f.write(b'x' * (50 * 1024 * 1024))\nprint('written')",
                  file_size_mb=1)
    answer = context.response.answer
    assert "OSError: [Errno 27] File too large" in answer and "written" not in answer
    assert context.response.metadata["execute_code"]["truncated"] is True


def test_printing_without_end_is_bounded() -> None:
    context = run("while True:\n    print('x' * 100)", max_output=500)
    answer = context.response.answer
    assert len(answer) < 700 and answer.endswith("[output truncated]")
    assert answer.startswith("x" * 100)


def test_the_code_runs_in_a_fresh_directory_that_is_removed() -> None:
    context = run("import os\nopen('note.txt', 'w').write('hi')\nprint(os.getcwd())")
    workdir = context.response.answer.strip()
    assert os.path.basename(os.path.dirname(workdir)).startswith("flowbridge-code-")
    assert workdir != os.getcwd() and not os.path.exists(workdir)


def test_the_event_loop_keeps_running_while_code_runs() -> None:
    """The child runs on C.thread_pool: a coroutine started after the op finishes before it."""
    order: list[str] = []

    async def main() -> None:
        async with OpApp(env={}):
            async def op() -> None:
                await ExecuteCodeOp(**SMALL).async_call(code="import time\ntime.sleep(2)\nprint('done')")
                order.append("op")

            async def ticker() -> None:
                await asyncio.sleep(0.01)
                order.append("tick")

            await asyncio.gather(op(), ticker())
            assert C.thread_pool is not None

    asyncio.run(main())
    assert order == ["tick", "op"]


def test_bad_limits_and_bad_code_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="sandbox limit timeout must be a number > 0"):
        ExecuteCodeOp(timeout=0)
    with pytest.raises(ValueError, match="memory_mb"):
        SandboxLimits(memory_mb=-1)
    with pytest.raises(TypeError, match="code must be a string"):
        run_python(b"print(1)")  # type: ignore[arg-type]

    async def main() -> None:
        async with OpApp(env={}):
            with pytest.raises(ValueError, match="'code' must be a string"):
                await ExecuteCodeOp().async_call(code=["print(1)"])
            with pytest.raises(ValueError, match="'code' is required"):
                await ExecuteCodeOp().async_call()

    asyncio.run(main())
