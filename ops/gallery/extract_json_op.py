"""``ExtractJsonOp`` and :func:`extract_json`: get a JSON object or array out of text.

Models wrap JSON in prose and Markdown fences; :func:`extract_json` finds it,
without the LLM, in this order:

1. a fenced block tagged ``json`` (```` ```json ````, any case, spaces allowed before the tag);
2. any other fenced block;
3. the whole text;
4. the first ``{`` or ``[`` at which a complete JSON value starts
   (:meth:`json.JSONDecoder.raw_decode`, so braces inside strings and escapes are handled).

Only objects and arrays count: a fenced ``42`` or ``"text"`` is not "the JSON".
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ..services import C
from ..tool_call import ToolAttr, ToolCall
from ..tool_op import BaseAsyncToolOp
from ._common import check_max_tokens, complete, input_text

__all__ = ["ExtractJsonOp", "extract_json"]

#: Longest text searched, and most ``{``/``[`` tried as the start of JSON: a failed
#: attempt costs time proportional to its position (the decoder's error message counts
#: lines), so these two bound the search on hostile input to a fraction of a second.
MAX_TEXT_CHARS = 200_000
MAX_CANDIDATES = 1_000

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n?(.*?)```", re.DOTALL)
_OPENERS = re.compile(r"[{\[]")
def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:40]} is past the float range")
    return value


#: JSON as JSON defines it: NaN, Infinity and numbers past the float range (1e400) are not found as JSON,
#: since no JSON encoder could write them back
_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)


def _container(text: str) -> dict | list | None:
    """``text`` parsed, when it is exactly one JSON object or array (surrounding space allowed)."""
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, (dict, list)) else None


def _first_embedded(text: str) -> dict | list | None:
    """The first complete JSON object or array starting at a ``{`` or ``[`` of ``text``.

    :raises ValueError: after :data:`MAX_CANDIDATES` starts that are not JSON.
    """
    for tried, match in enumerate(_OPENERS.finditer(text)):
        if tried == MAX_CANDIDATES:
            raise ValueError(
                f"no JSON object or array found in the text (gave up after {MAX_CANDIDATES} brackets "
                f"that do not start one): {_preview(text)!r}"
            )
        try:
            value, _end = _DECODER.raw_decode(text, match.start())
        except (ValueError, RecursionError):
            continue
        return value
    return None


def _preview(text: str) -> str:
    return text.strip()[:80]


def extract_json(text: str) -> Any:
    """The JSON object or array in ``text`` (see the module doc for where it is looked for).

    :raises ValueError: when there is none, quoting the start of the text; or when
        the text is not a string or longer than :data:`MAX_TEXT_CHARS`.
    """
    if not isinstance(text, str):
        raise ValueError(f"extract_json takes a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"the text is {len(text)} characters long; JSON is searched in at most {MAX_TEXT_CHARS}")
    fences = [(tag.lower(), body) for tag, body in _FENCE.findall(text)]
    candidates = [body for tag, body in fences if tag == "json"] + [body for tag, body in fences if tag != "json"]
    for body in [*candidates, text]:
        value = _container(body)
        if value is not None:
            return value
    value = _first_embedded(text)
    if value is not None:
        return value
    raise ValueError(f"no JSON object or array found in the text: {_preview(text)!r}")


@C.register_op()
class ExtractJsonOp(BaseAsyncToolOp):
    """Parse the JSON in ``text`` (default: the previous answer) with :func:`extract_json`.

    With an ``instruction`` (e.g. "the people mentioned, as a list of {name, role}"),
    the LLM first writes that JSON from the text (temperature 0), and its reply is parsed.
    The output ``extract_json_result`` (and ``response.answer``) is the parsed object or array.

    :param max_tokens: the longest LLM reply, when an instruction is given.
    :raises ValueError: (when run) if no JSON object or array can be found.
    """

    def __init__(self, max_tokens: int = 1024, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_tokens = check_max_tokens(max_tokens)

    def build_tool_call(self) -> ToolCall:
        return ToolCall(
            description="Get the JSON object or array out of a text; with an instruction, "
            "have the LLM write that JSON from the text first.",
            input_schema={
                "text": {
                    "type": "string",
                    "description": "the text holding JSON, or to build JSON from (default: the previous answer)",
                    "required": False,
                },
                "instruction": {
                    "type": "string",
                    "description": "what JSON to produce from the text, e.g. 'the dates as a list of strings'",
                    "required": False,
                },
            },
            output_schema={
                f"{self.short_name}_result": ToolAttr(type="object", description="the parsed JSON object or array"),
            },
        )

    async def async_execute(self) -> None:
        text = input_text(self)
        instruction = self.input_dict.get("instruction")
        if instruction is not None and not isinstance(instruction, str):
            raise ValueError(f"{self.name}: 'instruction' must be a string, got {type(instruction).__name__}")
        if instruction and instruction.strip():
            prompt = self.prompt_format("extract", text=text, instruction=instruction.strip())
            text = await complete(self, [{"role": "user", "content": prompt}], 0.0, self.max_tokens)
        self.set_output(extract_json(text))
