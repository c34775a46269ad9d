"""``ThinkToolOp``: a tool whose call is the model's reflection before it acts (flowllm's)."""

from __future__ import annotations

from typing import Any

from ..services import C
from ..tool_call import ToolCall
from ..tool_op import BaseAsyncToolOp


@C.register_op()
class ThinkToolOp(BaseAsyncToolOp):
    """Offered to an agent's model so that it writes down its reasoning as a tool call.

    The tool is named ``think_tool``; its one input, ``reflection``, is the model's
    thought. The answer is a fixed acknowledgement (``reflection_output`` of
    ``think_tool_prompt.yaml``), or the reflection itself with
    ``add_output_reflection=True``.
    """

    def __init__(self, add_output_reflection: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_output_reflection = bool(add_output_reflection)

    def build_tool_call(self) -> ToolCall:
        return ToolCall(
            name="think_tool",
            description=self.get_prompt("tool_desc"),
            input_schema={
                "reflection": {"type": "string", "description": self.get_prompt("reflection"), "required": True},
            },
        )

    async def async_execute(self) -> None:
        if self.add_output_reflection:
            self.set_output(self.input_dict["reflection"])
        else:
            self.set_output(self.get_prompt("reflection_output"))
