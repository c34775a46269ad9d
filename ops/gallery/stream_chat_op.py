"""``StreamChatOp``: ``ChatOp`` whose answer is streamed as it is generated (flowllm's chunks)."""

from __future__ import annotations

import contextlib

from ..schema import ChunkEnum
from ..services import C
from ..tool_call import ToolCall
from ._common import record_usage
from .chat_op import ChatOp

#: The chunks put on the context's stream, as flowllm's StreamChatOp does (usage is recorded, not sent).
STREAMED = frozenset({ChunkEnum.ANSWER, ChunkEnum.THINK, ChunkEnum.ERROR, ChunkEnum.TOOL})


@C.register_op()
class StreamChatOp(ChatOp):
    """Like :class:`ChatOp` (same inputs), but the answer is streamed from ``self.llm.astream_chat``.

    As flowllm's, each ``answer``, ``think`` (the model's reasoning), ``tool`` and
    ``error`` chunk goes to the context's stream as it arrives (the SSE routes send
    ``answer`` as ``content`` events and ``tool`` as ``progress``; ``think`` is not
    sent). Without a stream queue (``context.streaming`` False) the chunks are only
    collected. The output ``stream_chat_result`` is the whole answer text,
    stripped; token usage, when the server reports it, goes to ``response.metadata``.
    """

    def build_tool_call(self) -> ToolCall:
        tool_call = super().build_tool_call()
        tool_call.description = "Answer a question, or reply to a conversation, streaming the answer."
        return tool_call

    async def async_execute(self) -> None:
        parts: list[str] = []
        chunks = self.llm.astream_chat(self.build_conversation(), temperature=self.temperature,
                                       max_tokens=self.max_tokens)
        # aclosing: if sending a chunk fails, the upstream response is closed now, not at GC.
        async with contextlib.aclosing(chunks) as stream:
            async for chunk in stream:
                if chunk.chunk_type is ChunkEnum.ANSWER and isinstance(chunk.chunk, str):
                    parts.append(chunk.chunk)
                elif chunk.chunk_type is ChunkEnum.USAGE and isinstance(chunk.chunk, dict):
                    usage = {k: v for k, v in chunk.chunk.items() if isinstance(v, int) and not isinstance(v, bool)}
                    record_usage(self.context.response.metadata, self.llm.model_name, usage)
                if chunk.chunk_type in STREAMED:
                    await self.context.add_stream_chunk(chunk)
        self.set_output("".join(parts).strip())
