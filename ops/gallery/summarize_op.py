"""``SummarizeOp``: summarise a text, or the answer of the op before it."""

from __future__ import annotations

from typing import Any

from ..services import C
from ..tool_call import ToolCall
from ..tool_op import BaseAsyncToolOp
from ._common import check_positive_int, check_temperature, complete, input_text


@C.register_op()
class SummarizeOp(BaseAsyncToolOp):
    """Summarise ``text`` in at most ``max_words`` words; without ``text``, the previous answer.

    ``ChatOp() >> SummarizeOp(max_words=50)`` summarises the chat answer.

    :param max_words: the longest summary, in words (an integer > 0).
    :param language: the language to write the summary in; empty: the text's language.
        (Unlike other ops' ``language``, it is not the prompt language, which is then the app's.)
    :param temperature: sampling temperature, 0 to 2 (low: summaries should be faithful).
    :raises ValueError: when ``max_words`` or ``temperature`` is out of range.
    """

    def __init__(self, max_words: int = 100, language: str = "", temperature: float = 0.2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_words = check_positive_int(max_words, "max_words")
        if not isinstance(language, str):
            raise ValueError(f"language must be a string, got {language!r}")
        self.summary_language = language.strip()
        self.temperature = check_temperature(temperature)

    def build_tool_call(self) -> ToolCall:
        return ToolCall(
            description=f"Summarise a text in at most {self.max_words} words.",
            input_schema={
                "text": {
                    "type": "string",
                    "description": "the text to summarise (default: the previous answer)",
                    "required": False,
                },
            },
        )

    @property
    def max_tokens(self) -> int:
        """Room for ``max_words`` words in any language, plus a margin (the prompt sets the length)."""
        return self.max_words * 4 + 64

    async def async_execute(self) -> None:
        prompt = self.prompt_format(
            "summarize",
            text=input_text(self),
            max_words=self.max_words,
            language=self.summary_language,
            to_language=bool(self.summary_language),
            same_language=not self.summary_language,
        )
        summary = await complete(self, [{"role": "user", "content": prompt}], self.temperature, self.max_tokens)
        self.set_output(summary)
