"""``MockSearchOp``: search results made up by the LLM (flowllm's), to try agents without a search API."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

from ..schema import Message, Role
from ..services import C
from ..tool_call import ToolCall
from ..tool_op import BaseAsyncToolOp
from ..utils import extract_content

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = "You are a helpful assistant that generates realistic search results in JSON format."


@C.register_op()
class MockSearchOp(BaseAsyncToolOp):
    """Answer a search ``query`` with 0 to 5 plausible results written by the LLM.

    Each result is ``{snippet, title, url, hostname, hostlogo}``; the answer is the
    JSON array as text (indented), as flowllm's. A blank query answers
    ``"No results found."`` without asking the model. The model's reply must hold
    a JSON array or object (in a ```json block or bare): otherwise it is asked
    again (``self.llm.max_retries`` times in all), then the op fails with a
    ``ValueError`` (flowllm answered ``null``).

    :param num_results: how many results to ask for; default a random number from 0 to 5, as flowllm.
    """

    def __init__(self, num_results: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_results is not None and (isinstance(num_results, bool) or not isinstance(num_results, int)
                                        or not 0 <= num_results <= 20):
            raise ValueError(f"num_results must be an integer from 0 to 20, got {num_results!r}")
        self.num_results = num_results

    def build_tool_call(self) -> ToolCall:
        return ToolCall(
            description="Search the web for a query (mock results written by the LLM, for trying agents out).",
            input_schema={"query": {"type": "string", "description": "the search query", "required": True}},
        )

    async def async_execute(self) -> None:
        query = self.input_dict["query"]
        if not isinstance(query, str):
            raise ValueError(f"{self.name}: 'query' must be a string, got {type(query).__name__}")
        if not query.strip():
            logger.warning("%s: query is empty", self.name)
            self.set_output("No results found.")
            return
        num_results = self.num_results if self.num_results is not None else random.randint(0, 5)
        messages = [
            Message(role=Role.SYSTEM, content=SYSTEM_PROMPT),
            Message(role=Role.USER, content=self.prompt_format("mock_search_op_prompt", query=query,
                                                                  num_results=num_results)),
        ]
        logger.info("%s: generating %d results", self.name, num_results)
        results = await self.llm.achat(messages=messages, callback_fn=_results)
        self.set_output(json.dumps(results, ensure_ascii=False, indent=2))


def _results(message: Message) -> list[Any] | dict[str, Any]:
    """The JSON of the model's reply. :raises ValueError: when it holds none (the model is asked again)."""
    results = extract_content(message.text, "json")
    if not isinstance(results, (list, dict)):
        raise ValueError(f"the model's search results are not a JSON array: {message.text[:200]!r}")
    return results
