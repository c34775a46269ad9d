"""``ToolCall`` and ``ToolAttr``: a tool's schema, convertible to and from OpenAI's formats.

Both OpenAI shapes round-trip exactly::

    ToolCall(**definition).simple_input_dump() == definition   # {"type": "function", "function": {...}}
    ToolCall(**call).simple_output_dump() == call              # {"index", "id", "type", "function": {...}}

Attribute types also accept Python names (``"str"`` → ``"string"``, ``"int"`` →
``"integer"`` …), as the user's guides write them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["ToolAttr", "ToolCall"]

AttrType = Literal["string", "array", "integer", "number", "boolean", "object"]

#: Python-ish type names accepted in schemas, and the JSON schema type each means.
TYPE_ALIASES: dict[str, str] = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "list": "array",
    "dict": "object",
}


class ToolAttr(BaseModel):
    """One input or output of a tool. Extra fields (e.g. ``default``) are kept on the model
    but never written to the OpenAI dumps."""

    model_config = ConfigDict(extra="allow")

    type: AttrType = "string"
    description: str = ""
    required: bool = True
    enum: list | None = None
    items: dict = Field(default_factory=dict)

    @field_validator("type", mode="before")
    @classmethod
    def _normalise_type(cls, value: Any) -> Any:
        if isinstance(value, type):
            value = value.__name__
        if isinstance(value, str):
            value = value.strip().lower()
            return TYPE_ALIASES.get(value, value)
        return value

    def simple_input_dump(self) -> dict[str, Any]:
        """The JSON schema of this attribute: ``{type, description}`` plus ``enum``/``items`` when set."""
        dump: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.enum:
            dump["enum"] = list(self.enum)
        if self.items:
            dump["items"] = dict(self.items)
        return dump


class ToolCall(BaseModel):
    """A tool: its name, description and schemas, or one call of it (``id`` + ``arguments``).

    Both roles share the class, as in flowllm: a tool op's :meth:`build_tool_call` describes
    the tool (``simple_input_dump()`` is what the model is offered), and each call the model
    makes comes back as a ``ToolCall`` with the model's ``id``, the tool ``name`` and the
    ``arguments`` as JSON text (read them with :attr:`argument_dict`).
    """

    index: int = 0
    id: str = ""
    type: str = "function"
    name: str = ""
    #: the call's arguments, a JSON object as a string
    arguments: str = ""
    description: str = ""
    input_schema: dict[str, ToolAttr] = Field(default_factory=dict)
    output_schema: dict[str, ToolAttr] = Field(default_factory=dict)
    #: why a call the model made cannot be run, ``""`` for a good one: arguments that are not a
    #: JSON object, a tool that was not offered, inputs missing or of the wrong type (set by
    #: ``self.llm``'s chat methods, see :mod:`ops.llm`; an agent answers such a call with the problem)
    problem: str = ""

    @model_validator(mode="before")
    @classmethod
    def _from_openai(cls, data: Any) -> Any:
        """Accept a tool definition or a tool-call response in OpenAI's format.

        ``arguments`` given as an object (``ToolCall(name="search", arguments={"query": "x"})``)
        is kept as its JSON text, as a model's call carries it.
        """
        if isinstance(data, Mapping) and isinstance(data.get("arguments"), (Mapping, list)):
            data = {**data, "arguments": json.dumps(data["arguments"], ensure_ascii=False)}
        if not isinstance(data, Mapping) or not isinstance(data.get("function"), Mapping):
            return data
        data = dict(data)
        function = data.pop("function")
        for key in ("name", "description"):
            if key in function:
                data[key] = function[key]
        if "arguments" in function:
            arguments = function["arguments"]
            # Some servers send the arguments as an object instead of a JSON string.
            data["arguments"] = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        parameters = function.get("parameters")
        if isinstance(parameters, Mapping):
            required = set(parameters.get("required") or ())
            data["input_schema"] = {
                name: {**attr, "required": name in required} if isinstance(attr, Mapping) else attr
                for name, attr in (parameters.get("properties") or {}).items()
            }
        return data

    # -- dumps ---------------------------------------------------------------------------

    def input_json_schema(self) -> dict[str, Any]:
        """The JSON schema object of the inputs (OpenAI's ``parameters``)."""
        return {
            "type": "object",
            "properties": {name: attr.simple_input_dump() for name, attr in self.input_schema.items()},
            "required": [name for name, attr in self.input_schema.items() if attr.required],
        }

    def simple_input_dump(self) -> dict[str, Any]:
        """The OpenAI tool definition ``{"type": "function", "function": {...}}``."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.input_json_schema(),
            },
        }

    def simple_output_dump(self) -> dict[str, Any]:
        """The OpenAI tool-call ``{"index", "id", "function": {"arguments", "name"}, "type"}``."""
        return {
            "index": self.index,
            "id": self.id,
            "function": {"arguments": self.arguments, "name": self.name},
            "type": self.type,
        }

    # -- arguments -----------------------------------------------------------------------

    @property
    def argument_dict(self) -> dict[str, Any]:
        """The parsed arguments; ``{}`` when there are none.

        :raises ValueError: when the arguments are not a JSON object.
        """
        if not self.arguments.strip():
            return {}
        value = json.loads(self.arguments)
        if not isinstance(value, dict):
            raise ValueError(f"arguments of tool {self.name!r} must be a JSON object, got {type(value).__name__}")
        return value

    @classmethod
    def from_mcp_tool(cls, tool: Any) -> ToolCall:
        """An MCP ``Tool`` (the ``mcp`` SDK's) as a ``ToolCall`` (see :func:`ops.mcp_client.tool_call_from_mcp`)."""
        from .mcp_client import tool_call_from_mcp

        return tool_call_from_mcp(tool)

    def to_mcp_tool(self) -> Any:
        """This tool as an MCP ``Tool``: name, description and the input JSON schema."""
        from .mcp_server import to_mcp_tool

        return to_mcp_tool(self)

    def check_argument(self) -> bool:
        """True when :attr:`argument_dict` can be read."""
        try:
            self.argument_dict
        except ValueError:
            return False
        return True

    def validate_inputs(self, values: Mapping[str, Any]) -> list[str]:
        """Problems with ``values`` as this tool's inputs, one readable line each; ``[]`` if none.

        A missing (or ``None``) required input, a value of the wrong JSON type
        (booleans are not numbers; integers are numbers), a value outside ``enum``,
        and array items of the wrong type are reported. Unknown keys are allowed.
        """
        problems: list[str] = []
        for name, attr in self.input_schema.items():
            value = values.get(name)
            if value is None:
                if attr.required:
                    problems.append(f"{name!r} is required")
                continue
            problem = _type_problem(name, attr.type, value)
            if problem:
                problems.append(problem)
                continue
            if attr.enum and value not in attr.enum:
                choices = ", ".join(repr(choice) for choice in attr.enum)
                problems.append(f"{name!r} must be one of {choices}, got {value!r}")
            item_type = attr.items.get("type") if attr.type == "array" else None
            if isinstance(item_type, str):
                item_type = TYPE_ALIASES.get(item_type, item_type)
                problems.extend(
                    p for i, item in enumerate(value) if (p := _type_problem(f"{name}[{i}]", item_type, item))
                )
        return problems


def _type_problem(label: str, expected: str, value: Any) -> str:
    """``""`` when ``value`` has the JSON type ``expected``, else the problem."""
    if expected == "string":
        ok = isinstance(value, str)
    elif expected == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif expected == "boolean":
        ok = isinstance(value, bool)
    elif expected == "array":
        ok = isinstance(value, (list, tuple))
    elif expected == "object":
        ok = isinstance(value, Mapping)
    else:  # an items type we do not know: nothing to check
        ok = True
    return "" if ok else f"{label!r} must be {expected}, got {type(value).__name__}"
