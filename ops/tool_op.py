"""``BaseAsyncToolOp``: an async op whose inputs and outputs follow a ``ToolCall`` schema.

Before execution ``input_dict`` is filled from the context; after it,
``output_dict`` is written back to the context (and to ``response.answer``
when ``save_answer``). Both dicts are fresh for every call, unlike flowllm's.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .base import BaseAsyncOp
from .tool_call import ToolAttr, ToolCall

logger = logging.getLogger(__name__)


class BaseAsyncToolOp(BaseAsyncOp):
    """Override :meth:`build_tool_call` and :meth:`async_execute`; read ``self.input_dict``,
    write with :meth:`set_output` / :meth:`set_outputs`.

    :param tool_index: when not 0, ``.N`` is appended to every context key read and written,
        so one context can hold the results of several calls of the same tool.
    :param save_answer: write the output (several outputs: a JSON object) to ``response.answer``.
    :param input_schema_mapping: input name → the context key it is read from.
    :param output_schema_mapping: output name → the context key it is written to.
    """

    def __init__(
        self,
        enable_print_output: bool = True,
        tool_index: int = 0,
        save_answer: bool = True,
        input_schema_mapping: dict[str, str] | None = None,
        output_schema_mapping: dict[str, str] | None = None,
        max_print_output_length: int = 200,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.enable_print_output = enable_print_output
        self.tool_index = tool_index
        self.save_answer = save_answer
        self.input_schema_mapping = dict(input_schema_mapping or {})
        self.output_schema_mapping = dict(output_schema_mapping or {})
        self.max_print_output_length = max_print_output_length
        self.input_dict: dict[str, Any] = {}
        self.output_dict: dict[str, Any] = {}
        self._tool_call: ToolCall | None = None

    # -- schema ---------------------------------------------------------------------------

    def build_tool_call(self) -> ToolCall:
        """The tool's description and input/output schema. Override it."""
        return ToolCall(description=(type(self).__doc__ or "").strip())

    @property
    def tool_call(self) -> ToolCall:
        """:meth:`build_tool_call`, completed: name, index and a default output."""
        if self._tool_call is None:
            tool_call = self.build_tool_call()
            if not tool_call.name:
                tool_call.name = self.short_name
            if not tool_call.index:
                tool_call.index = self.tool_index
            if not tool_call.output_schema:
                tool_call.output_schema = {
                    f"{self.short_name}_result": ToolAttr(
                        type="string", description=f"The execution result of the {self.short_name}"
                    )
                }
            self._tool_call = tool_call
        return self._tool_call

    @property
    def output_keys(self) -> str | list[str]:
        """The output name when there is one, else the list of names."""
        keys = list(self.tool_call.output_schema)
        return keys[0] if len(keys) == 1 else keys

    @property
    def output(self) -> Any:
        """The single output's value (an op with several outputs has :attr:`output_dict`)."""
        keys = self.output_keys
        if isinstance(keys, list):
            raise AttributeError(f"{self.name} has several outputs ({', '.join(keys)}); read output_dict")
        return self.output_dict.get(keys)

    def set_output(self, value: Any, key: str = "") -> None:
        """Set an output; ``key`` may be left out when the op has exactly one."""
        keys = self.output_keys
        if isinstance(keys, str):
            if key and key != keys:
                raise KeyError(f"{self.name} has one output, {keys!r}, not {key!r}")
            key = keys
        elif not key:
            raise KeyError(f"{self.name} has several outputs ({', '.join(keys)}): name the key")
        elif key not in keys:
            raise KeyError(f"{self.name} has no output {key!r}; outputs: {', '.join(keys)}")
        self.output_dict[key] = value

    def set_outputs(self, **values: Any) -> None:
        for key, value in values.items():
            self.set_output(value, key)

    def _context_key(self, name: str, mapping: dict[str, str]) -> str:
        key = mapping.get(name, name)
        return f"{key}.{self.tool_index}" if self.tool_index else key

    # -- hooks ----------------------------------------------------------------------------

    async def async_before_execute(self) -> None:
        """Fill ``input_dict`` from the context; a missing required input is an error."""
        self.input_dict, self.output_dict = {}, {}
        for name, attr in self.tool_call.input_schema.items():
            key = self._context_key(name, self.input_schema_mapping)
            if key in self.context:
                self.input_dict[name] = self.context[key]
            elif attr.required:
                where = f" (context key {key!r})" if key != name else ""
                raise ValueError(f"{self.name}: input {name!r} is required{where}")

    async def async_after_execute(self) -> None:
        """Write the outputs to the context, and to ``response.answer`` when ``save_answer``."""
        for name in self.tool_call.output_schema:
            if name in self.output_dict:
                self.context[self._context_key(name, self.output_schema_mapping)] = self.output_dict[name]
        if self.save_answer:
            keys = self.output_keys
            if isinstance(keys, str):
                self.context.response.answer = self.output_dict.get(keys, "")
            else:
                self.context.response.answer = json.dumps(self.output_dict, ensure_ascii=False)
        if self.enable_print_output:
            # Outputs are the user's content (model answers): their names and sizes at INFO, the text
            # itself at DEBUG only.
            text = str(self.output_dict)
            logger.info("%s produced %s (%d characters)", self.name, ", ".join(self.output_dict) or "no output",
                        len(text))
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s output: %s", self.name, text[: self.max_print_output_length])

    async def async_default_execute(self, e: Exception | None = None, **kwargs: Any) -> Any:
        """Every output reads as failed, and reaches the context (flowllm loses it)."""
        for name in self.tool_call.output_schema:
            message = f"{self.name} execution failed: {e}"
            self.output_dict[name] = message
            self.context[self._context_key(name, self.output_schema_mapping)] = message
        return None
