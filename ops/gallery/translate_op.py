"""``TranslateOp``: translate a text, or the answer of the op before it."""

from __future__ import annotations

from typing import Any

from ..services import C
from ..tool_call import ToolCall
from ..tool_op import BaseAsyncToolOp
from ._common import check_max_tokens, check_temperature, complete, input_text


@C.register_op()
class TranslateOp(BaseAsyncToolOp):
    """Translate ``text`` (default: the previous answer) into ``target_language`` (default ``to``).

    :param to: the language to translate into when the ``target_language`` input is not given.
    :param temperature: sampling temperature, 0 to 2.
    :param max_tokens: the longest translation, in tokens.
    :raises ValueError: when ``to`` is empty or a number is out of range.
    """

    def __init__(self, to: str = "English", temperature: float = 0.2, max_tokens: int = 1024, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(to, str) or not to.strip():
            raise ValueError(f"to must name a language, got {to!r}")
        self.to = to.strip()
        self.temperature = check_temperature(temperature)
        self.max_tokens = check_max_tokens(max_tokens)

    def build_tool_call(self) -> ToolCall:
        return ToolCall(
            description=f"Translate a text (into {self.to} unless another language is asked for).",
            input_schema={
                "text": {
                    "type": "string",
                    "description": "the text to translate (default: the previous answer)",
                    "required": False,
                },
                "target_language": {
                    "type": "string",
                    "description": f"the language to translate into (default: {self.to})",
                    "required": False,
                },
            },
        )

    def target_language(self) -> str:
        """The ``target_language`` input when given, else ``to``.

        :raises ValueError: when the input is not a string.
        """
        value = self.input_dict.get("target_language")
        if value is None:
            return self.to
        if not isinstance(value, str):
            raise ValueError(f"{self.name}: 'target_language' must be a string, got {type(value).__name__}")
        return value.strip() or self.to

    async def async_execute(self) -> None:
        prompt = self.prompt_format("translate", text=input_text(self), target_language=self.target_language())
        translation = await complete(self, [{"role": "user", "content": prompt}], self.temperature, self.max_tokens)
        self.set_output(translation)
