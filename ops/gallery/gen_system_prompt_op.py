"""``GenSystemPromptOp``: have the LLM write a system prompt fitted to the question (flowllm's)."""

from __future__ import annotations

import logging
from ..schema import Message, Role
from ..services import C
from ..tool_call import ToolAttr, ToolCall
from ..tool_op import BaseAsyncToolOp
from ..utils import extract_content, format_messages
from ._common import InputError, as_messages

logger = logging.getLogger(__name__)


@C.register_op()
class GenSystemPromptOp(BaseAsyncToolOp):
    """Write a system prompt for ``query`` (or the conversation ``messages``): its tone, role and style
    fitted to what the user asks and how they feel.

    As flowllm's, the conversation is left in ``context.messages`` (``Message`` objects; a query
    becomes one user message) and the prompt in ``context.system_prompt``, so
    ``GenSystemPromptOp() >> ChatOp()`` answers with it. The prompt is the model's
    ```` ``` prompt ```` block, or its whole reply when there is none; it is also
    ``response.answer``. Neither input → :class:`~ops.gallery._common.InputError`
    (a ``ValueError`` that is also the ``AssertionError`` flowllm raised).
    """

    def build_tool_call(self) -> ToolCall:
        return ToolCall(
            description="Write a system prompt fitted to a question or conversation (its tone, role and style).",
            input_schema={
                "query": {"type": "string", "description": "the question (or give messages)", "required": False},
                "messages": {"type": "array", "description": "the conversation, [{role, content}, ...]",
                             "required": False, "items": {"type": "object"}},
            },
            output_schema={"system_prompt": ToolAttr(type="string", description="the generated system prompt")},
        )

    async def async_execute(self) -> None:
        query = self.input_dict.get("query")
        if query is not None and not isinstance(query, str):
            raise InputError(f"{self.name}: 'query' must be a string, got {type(query).__name__}")
        if query:
            messages = [Message(role=Role.USER, content=query)]
        else:
            messages = as_messages(self.name, self.input_dict.get("messages") or [])
        if not messages:
            raise InputError(f"{self.name}: both `query` and `messages` are not provided!")
        self.context.messages = messages
        user_prompt = self.prompt_format("gen_system_prompt_prompt", formated_messages=format_messages(messages))
        system_prompt = await self.llm.achat(messages=[Message(role=Role.USER, content=user_prompt)], tools=None,
                                             callback_fn=_prompt_of)
        self.set_output(system_prompt)


def _prompt_of(message: Message) -> str:
    """The ``prompt`` block of the reply (logged with its ``think`` block), else the whole reply.

    :raises ValueError: when that is blank (the model is asked again).
    """
    logger.debug("think=%s", extract_content(message.text, "think"))
    prompt = extract_content(message.text, "prompt").strip()
    if not prompt:
        raise ValueError("the model wrote an empty system prompt")
    return prompt
