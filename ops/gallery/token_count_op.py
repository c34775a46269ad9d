"""``TokenCountOp``: an estimate of the tokens a conversation takes (flowllm's)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ..schema import Message
from ..services import C
from ..tool_call import ToolAttr, ToolCall
from ..tool_op import BaseAsyncToolOp

logger = logging.getLogger(__name__)


@C.register_op()
class TokenCountOp(BaseAsyncToolOp):
    """Count the tokens of the ``messages`` input (dicts or :class:`~ops.schema.Message`).

    The count is :meth:`~ops.base.BaseOp.token_count`'s estimate (characters / 4, see
    :mod:`ops.utils`). flowllm's op only logs it; here it is also the output
    ``token_count`` (an integer, in the context) and ``response.answer`` (its text).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("save_answer", False)  # the answer is the count's text, set below
        super().__init__(**kwargs)

    def build_tool_call(self) -> ToolCall:
        return ToolCall(
            description="Estimate how many tokens a conversation takes (characters / 4).",
            input_schema={
                "messages": {"type": "array", "description": "the messages, [{role, content}, ...]",
                             "required": True, "items": {"type": "object"}},
            },
            output_schema={"token_count": ToolAttr(type="integer", description="the estimated token count")},
        )

    async def async_execute(self) -> None:
        messages = self.input_dict["messages"]
        if not isinstance(messages, list):
            raise ValueError(f"{self.name}: 'messages' must be a list of messages, got {type(messages).__name__}")
        parsed = []
        for i, message in enumerate(messages):
            if not isinstance(message, (Message, Mapping)):
                raise ValueError(f"{self.name}: messages[{i}] must be a message object, got {type(message).__name__}")
            parsed.append(message if isinstance(message, Message) else Message(**message))
        count = self.token_count(parsed)
        logger.info("%s: token count result: %d", self.name, count)
        self.set_output(count)
        self.context.response.answer = str(count)
