"""``EchoToolOp``: the example tool op of the user's guide (seeds/001), as written there."""

from __future__ import annotations

from ..services import C
from ..tool_call import ToolCall
from ..tool_op import BaseAsyncToolOp


@C.register_op()
class EchoToolOp(BaseAsyncToolOp):
    """Echo ``text`` back as ``"Echo: <text>"``: the smallest tool op, handy to check a setup."""

    def build_tool_call(self) -> ToolCall:
        return ToolCall(
            **{
                "description": "Echo input text, returns the same text as output",
                "input_schema": {
                    "text": {
                        "type": "str",
                        "description": "text to echo",
                        "required": True,
                    },
                },
            }
        )

    async def async_execute(self) -> None:
        text = self.input_dict.get("text", "")
        self.set_output(f"Echo: {text}")
