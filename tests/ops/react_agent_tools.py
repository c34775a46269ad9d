"""Small deterministic tool ops for the ReAct agent's tests, registered with ``C`` on import.

- ``PopulationLookupOp`` (tool ``population_lookup``): a city's population from a fixed table.
- ``ArithmeticOp`` (tool ``arithmetic``): ``a <operation> b``; dividing by zero raises.
- ``ParallelProbeOp`` (tool ``parallel_probe``): answers ``"together"`` once ``expected`` calls have
  started (so they ran at the same time), ``"alone"`` if the others did not come within 5 seconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

from ops import BaseAsyncToolOp, C, ToolCall

POPULATIONS = {"paris": 2_100_000, "lyon": 520_000}


@C.register_op()
class PopulationLookupOp(BaseAsyncToolOp):
    """Look up a city's population."""

    def build_tool_call(self) -> ToolCall:
        return ToolCall(description="The population of a city.",
                        input_schema={"city": {"type": "string", "description": "the city", "required": True}})

    async def async_execute(self) -> None:
        city = self.input_dict["city"]
        population = POPULATIONS.get(city.strip().lower())
        self.set_output(str(population) if population is not None else f"no population known for {city}")


@C.register_op()
class ArithmeticOp(BaseAsyncToolOp):
    """Add, subtract, multiply or divide two numbers."""

    def build_tool_call(self) -> ToolCall:
        return ToolCall(
            description="Compute a <operation> b.",
            input_schema={
                "a": {"type": "number", "description": "the left operand", "required": True},
                "b": {"type": "number", "description": "the right operand", "required": True},
                "operation": {"type": "string", "description": "what to do", "required": True,
                              "enum": ["add", "subtract", "multiply", "divide"]},
            },
        )

    async def async_execute(self) -> None:
        a, b, operation = self.input_dict["a"], self.input_dict["b"], self.input_dict["operation"]
        if operation == "add":
            value = a + b
        elif operation == "subtract":
            value = a - b
        elif operation == "multiply":
            value = a * b
        else:
            value = a / b  # ZeroDivisionError for b == 0: the tool that raises
        self.set_output(str(int(value)) if float(value).is_integer() else str(value))


@C.register_op()
class ParallelProbeOp(BaseAsyncToolOp):
    """Wait (bounded) until ``expected`` calls run at once; says whether they met."""

    #: calls that have started (reset by the test before it runs the agent)
    arrived: ClassVar[int] = 0

    def build_tool_call(self) -> ToolCall:
        return ToolCall(description="Probe whether calls run in parallel.",
                        input_schema={"expected": {"type": "integer", "description": "calls to meet",
                                                   "required": True}})

    async def async_execute(self) -> None:
        ParallelProbeOp.arrived += 1
        deadline = time.monotonic() + 5.0
        for _ in range(2000):  # bounded in count and time
            if ParallelProbeOp.arrived >= self.input_dict["expected"]:
                self.set_output("together")
                return
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.005)
        self.set_output("alone")
