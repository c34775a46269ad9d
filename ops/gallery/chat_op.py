"""``ChatOp``: answer a question or continue a conversation."""

from __future__ import annotations

from typing import Any

from ..llm import message_dict
from ..schema import Message, Role
from ..services import C
from ..tool_call import ToolCall
from ..tool_op import BaseAsyncToolOp
from ._common import InputError, as_messages, check_max_tokens, check_temperature, complete

#: The JSON schema of one message of the ``messages`` input.
MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "role": {"type": "string", "enum": [role.value for role in Role]},
        "content": {"type": "string"},
    },
    "required": ["role", "content"],
}


@C.register_op()
class ChatOp(BaseAsyncToolOp):
    """Answer ``query`` (or the conversation ``messages``) with the LLM.

    flowllm's ``ChatOp`` reads ``context.messages`` (``Message`` objects) and
    ``context.system_prompt``: so does this one, and also takes a plain ``query``
    and ``{role, content}`` dicts. The system prompt is the ``system_prompt``
    input when given (``GenSystemPromptOp`` writes one), else the ``system_prompt``
    of ``chat_prompt.yaml`` (in the op's language), left out when ``messages``
    already has a system message (flowllm requires one: an ``AssertionError``).
    ``query`` and ``messages`` together are accepted only when the conversation
    ends with the query (as ``GenSystemPromptOp`` leaves it); else which one to
    answer is unclear, an error.

    The answer (stripped) is the output ``chat_result`` and ``response.answer``;
    the model and token usage go to ``response.metadata``. Bad input raises
    :class:`~ops.gallery._common.InputError` (a ``ValueError``, and the
    ``AssertionError`` flowllm raised).

    :param temperature: sampling temperature, 0 to 2.
    :param max_tokens: the longest answer, in tokens.
    """

    def __init__(self, temperature: float = 0.7, max_tokens: int = 256, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.temperature = check_temperature(temperature)
        self.max_tokens = check_max_tokens(max_tokens)

    def build_tool_call(self) -> ToolCall:
        return ToolCall(
            description="Answer a question, or reply to a conversation, with the LLM.",
            input_schema={
                "query": {"type": "string", "description": "the question (or give messages)", "required": False},
                "messages": {
                    "type": "array",
                    "description": "the conversation, [{role, content}, ...] (or give query)",
                    "required": False,
                    "items": MESSAGE_SCHEMA,
                },
                "system_prompt": {
                    "type": "string",
                    "description": "instructions for the assistant (default: a helpful assistant)",
                    "required": False,
                },
            },
        )

    async def async_before_execute(self) -> None:
        """Check the inputs: ``query`` or ``messages`` (both only when they agree), and their shapes.

        :raises InputError: naming the input that is wrong.
        """
        await super().async_before_execute()
        query = self.input_dict.get("query")
        messages = self.input_dict.get("messages")
        if query is not None and not isinstance(query, str):
            raise InputError(f"{self.name}: 'query' must be a string, got {type(query).__name__}")
        has_query = bool(query and query.strip())
        has_messages = messages is not None and messages != []
        conversation = as_messages(self.name, messages) if has_messages else []
        if has_query and has_messages and not _ends_with(conversation, query):
            raise InputError(f"{self.name}: give exactly one of 'query' or 'messages' (got both)")
        if not has_query and not has_messages:
            raise InputError(f"{self.name}: give exactly one of 'query' or 'messages' (got neither)")
        system_prompt = self.input_dict.get("system_prompt")
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise InputError(f"{self.name}: 'system_prompt' must be a string, got {type(system_prompt).__name__}")

    def build_messages(self) -> list[dict[str, Any]]:
        """The messages to send (OpenAI dicts): system prompt first, then the conversation or the query."""
        return [message_dict(m) for m in self.build_conversation()]

    def build_conversation(self) -> list[Message]:
        """The messages to send: system prompt first, then the conversation or the query."""
        messages = self.input_dict.get("messages")
        if messages:
            conversation = as_messages(self.name, messages)
        else:
            conversation = [Message(role=Role.USER, content=self.input_dict["query"])]
        system_prompt = (self.input_dict.get("system_prompt") or "").strip()
        if not system_prompt and not any(m.role is Role.SYSTEM for m in conversation):
            system_prompt = self.get_prompt("system_prompt").strip()
        return ([Message(role=Role.SYSTEM, content=system_prompt)] if system_prompt else []) + conversation

    async def async_execute(self) -> None:
        answer = await complete(self, self.build_messages(), self.temperature, self.max_tokens)
        self.set_output(answer)


def _ends_with(conversation: list[Message], query: str) -> bool:
    """True when the last message is the user's ``query``."""
    return bool(conversation) and conversation[-1].role is Role.USER and conversation[-1].text == query
