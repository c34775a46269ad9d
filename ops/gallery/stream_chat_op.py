"""``StreamChatOp``: ``ChatOp`` whose answer is streamed as it is generated."""

from __future__ import annotations

import contextlib

from ..services import C
from ..tool_call import ToolCall
from .chat_op import ChatOp


@C.register_op()
class StreamChatOp(ChatOp):
    """Like :class:`ChatOp`, but each text delta goes to the context's stream as it arrives.

    Without a stream queue (``context.streaming`` False) the deltas are only
    collected. The output ``stream_chat_result`` is the whole answer, stripped.
    Token usage is not reported by streams, so ``response.metadata`` is left alone.
    """

    def build_tool_call(self) -> ToolCall:
        tool_call = super().build_tool_call()
        tool_call.description = "Answer a question, or reply to a conversation, streaming the answer."
        return tool_call

    async def async_execute(self) -> None:
        parts: list[str] = []
        stream = self.llm.chat_stream_async(self.build_messages(), self.temperature, self.max_tokens)
        # aclosing: if sending a delta fails, the upstream response is closed now, not at GC.
        async with contextlib.aclosing(stream) as deltas:
            async for delta in deltas:
                parts.append(delta)
                if self.context.streaming:
                    await self.context.add_stream_content(delta)
        self.set_output("".join(parts).strip())
