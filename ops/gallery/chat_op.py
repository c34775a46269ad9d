"""``ChatOp``: answer a question or continue a conversation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..services import C
from ..tool_call import ToolCall
from ..tool_op import BaseAsyncToolOp
from ._common import check_max_tokens, check_temperature, complete

#: The JSON schema of one message of the ``messages`` input.
MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "role": {"type": "string", "enum": ["system", "user", "assistant"]},
        "content": {"type": "string"},
    },
    "required": ["role", "content"],
}


@C.register_op()
class ChatOp(BaseAsyncToolOp):
    """Answer ``query`` (or the conversation ``messages``) with the LLM.

    The system prompt is the ``system_prompt`` input when given, else the
    ``system_prompt`` of ``chat_prompt.yaml`` (in the op's language); the
    default is left out when ``messages`` already has a system message.
    The answer (stripped) is the output ``chat_result`` and ``response.answer``;
    the model and token usage go to ``response.metadata``.

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
        """Check that exactly one of ``query`` and ``messages`` is given, and their shapes.

        :raises ValueError: naming the input that is wrong.
        """
        await super().async_before_execute()
        query = self.input_dict.get("query")
        messages = self.input_dict.get("messages")
        if query is not None and not isinstance(query, str):
            raise ValueError(f"{self.name}: 'query' must be a string, got {type(query).__name__}")
        has_query = bool(query and query.strip())
        has_messages = messages is not None and messages != []
        if has_query == has_messages:
            got = "both" if has_query else "neither"
            raise ValueError(f"{self.name}: give exactly one of 'query' or 'messages' (got {got})")
        if has_messages:
            _check_messages(self.name, messages)
        system_prompt = self.input_dict.get("system_prompt")
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise ValueError(f"{self.name}: 'system_prompt' must be a string, got {type(system_prompt).__name__}")

    def build_messages(self) -> list[dict[str, str]]:
        """The messages to send: system prompt first, then the query or the conversation."""
        query = self.input_dict.get("query")
        if query and query.strip():
            conversation = [{"role": "user", "content": query}]
        else:
            conversation = [{"role": m["role"], "content": m["content"]} for m in self.input_dict["messages"]]
        system_prompt = (self.input_dict.get("system_prompt") or "").strip()
        if not system_prompt and not any(m["role"] == "system" for m in conversation):
            system_prompt = self.get_prompt("system_prompt").strip()
        return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + conversation

    async def async_execute(self) -> None:
        answer = await complete(self, self.build_messages(), self.temperature, self.max_tokens)
        self.set_output(answer)


def _check_messages(op_name: str, messages: Any) -> None:
    """:raises ValueError: naming the first message that is not ``{role, content}`` strings."""
    if not isinstance(messages, list):
        raise ValueError(f"{op_name}: 'messages' must be a list of {{role, content}}, got {type(messages).__name__}")
    roles = MESSAGE_SCHEMA["properties"]["role"]["enum"]
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"{op_name}: messages[{i}] must be an object with 'role' and 'content'")
        if message.get("role") not in roles:
            raise ValueError(f"{op_name}: messages[{i}].role must be one of {', '.join(roles)}, "
                             f"got {message.get('role')!r}")
        if not isinstance(message.get("content"), str):
            raise ValueError(f"{op_name}: messages[{i}].content must be a string")
