"""ToolCall / ToolAttr: OpenAI round trips, aliases, argument parsing and input validation."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from ops.tool_call import ToolAttr, ToolCall

# -- spec §8.2 round trips ---------------------------------------------------------------------------

TOOL_CALL_RESPONSE = {
    "index": 0,
    "id": "call_0_372f5b9e-8a6b-4f8a-9e1c-2d3e4f5a6b7c",
    "function": {"arguments": '{"symbol": "ZETA.SZ"}', "name": "get_stock_price"},
    "type": "function",
}

TOOL_DEFINITION = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "It is very useful when you want to check the weather of a specified city.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "Cities or counties, such as Beijing."},
                "unit": {"type": "string", "description": "Temperature unit", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "array", "description": "Days ahead", "items": {"type": "integer"}},
            },
            "required": ["location"],
        },
    },
}


def test_tool_call_response_round_trip() -> None:
    original = copy.deepcopy(TOOL_CALL_RESPONSE)
    tool_call = ToolCall(**TOOL_CALL_RESPONSE)
    assert tool_call.simple_output_dump() == TOOL_CALL_RESPONSE
    assert TOOL_CALL_RESPONSE == original  # the input is not modified
    assert tool_call.argument_dict == {"symbol": "ZETA.SZ"} and tool_call.check_argument()


def test_tool_definition_round_trip() -> None:
    tool_call = ToolCall(**TOOL_DEFINITION)
    assert tool_call.simple_input_dump() == TOOL_DEFINITION
    assert tool_call.input_schema["location"].required is True
    assert tool_call.input_schema["unit"].required is False
    assert ToolCall.model_validate(TOOL_DEFINITION).simple_input_dump() == TOOL_DEFINITION
    assert tool_call.input_json_schema() == TOOL_DEFINITION["function"]["parameters"]


def test_our_format_dumps_required_in_schema_order() -> None:
    tool_call = ToolCall(
        name="search",
        description="Search the web",
        input_schema={
            "query": {"type": "string", "description": "what to look for"},
            "limit": ToolAttr(type="integer", description="max results", required=False),
            "site": {"type": "string", "description": "restrict to a site"},
        },
    )
    schema = tool_call.simple_input_dump()["function"]["parameters"]
    assert schema["required"] == ["query", "site"]
    assert list(schema["properties"]) == ["query", "limit", "site"]
    # and back again
    assert ToolCall(**tool_call.simple_input_dump()).simple_input_dump() == tool_call.simple_input_dump()


def test_seed_python_type_names_are_normalised() -> None:
    # seeds/001: "type": "str"
    tool_call = ToolCall(
        description="Echo input text, returns the same text as output",
        input_schema={"text": {"type": "str", "description": "text to echo", "required": True}},
    )
    assert tool_call.input_schema["text"].type == "string"
    for alias, canonical in [("int", "integer"), ("float", "number"), ("bool", "boolean"), ("list", "array"),
                             ("dict", "object"), ("String", "string"), (int, "integer")]:
        assert ToolAttr(type=alias).type == canonical
    with pytest.raises(ValidationError):
        ToolAttr(type="tuple")


def test_tool_attr_defaults_extras_and_dump() -> None:
    attr = ToolAttr()
    assert (attr.type, attr.description, attr.required, attr.enum, attr.items) == ("string", "", True, None, {})
    with_default = ToolAttr(type="integer", description="n", default=3)
    assert with_default.model_extra == {"default": 3}
    assert with_default.simple_input_dump() == {"type": "integer", "description": "n"}  # default not dumped
    assert ToolAttr(enum=["a"], items={"type": "string"}).simple_input_dump() == {
        "type": "string", "description": "", "enum": ["a"], "items": {"type": "string"}
    }


def test_arguments() -> None:
    assert ToolCall().argument_dict == {} and ToolCall().check_argument()
    assert ToolCall(arguments='{"a": 1}').argument_dict == {"a": 1}
    broken = ToolCall(name="t", arguments='{"a": ')
    assert broken.check_argument() is False
    with pytest.raises(ValueError):
        broken.argument_dict  # noqa: B018
    not_an_object = ToolCall(name="t", arguments="[1, 2]")
    assert not_an_object.check_argument() is False
    with pytest.raises(ValueError, match="JSON object"):
        not_an_object.argument_dict  # noqa: B018


def test_arguments_sent_as_an_object_are_kept_as_json() -> None:
    tool_call = ToolCall(**{"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}})
    assert tool_call.arguments == '{"x": 1}' and tool_call.argument_dict == {"x": 1}


def test_defaults() -> None:
    tool_call = ToolCall()
    assert (tool_call.index, tool_call.id, tool_call.type, tool_call.name, tool_call.arguments) == (
        0, "", "function", "", ""
    )
    assert tool_call.input_schema == {} and tool_call.output_schema == {}
    assert ToolCall().input_schema is not tool_call.input_schema


# -- validate_inputs ---------------------------------------------------------------------------------


@pytest.fixture
def tool() -> ToolCall:
    return ToolCall(
        name="demo",
        input_schema={
            "text": {"type": "string", "description": "t"},
            "n": {"type": "integer", "required": False},
            "ratio": {"type": "number", "required": False},
            "flag": {"type": "boolean", "required": False},
            "tags": {"type": "array", "items": {"type": "string"}, "required": False},
            "options": {"type": "object", "required": False},
            "mode": {"type": "string", "enum": ["fast", "slow"], "required": False},
        },
    )


def test_valid_inputs_have_no_problems(tool: ToolCall) -> None:
    good = {"text": "hi", "n": 3, "ratio": 2, "flag": False, "tags": ["a"], "options": {}, "mode": "fast",
            "unknown": object()}
    assert tool.validate_inputs(good) == []
    assert tool.validate_inputs({"text": "hi", "n": None}) == []  # optional None is "not given"


def test_missing_required_input(tool: ToolCall) -> None:
    assert tool.validate_inputs({}) == ["'text' is required"]
    assert tool.validate_inputs({"text": None}) == ["'text' is required"]


def test_wrong_types(tool: ToolCall) -> None:
    problems = tool.validate_inputs(
        {"text": 5, "n": "3", "ratio": True, "flag": 1, "tags": "a", "options": [], "mode": "medium"}
    )
    assert problems == [
        "'text' must be string, got int",
        "'n' must be integer, got str",
        "'ratio' must be number, got bool",
        "'flag' must be boolean, got int",
        "'tags' must be array, got str",
        "'options' must be object, got list",
        "'mode' must be one of 'fast', 'slow', got 'medium'",
    ]
    assert tool.validate_inputs({"text": "x", "n": True}) == ["'n' must be integer, got bool"]
    assert tool.validate_inputs({"text": "x", "n": 1.5}) == ["'n' must be integer, got float"]


def test_array_items_are_checked(tool: ToolCall) -> None:
    assert tool.validate_inputs({"text": "x", "tags": ["a", 2]}) == ["'tags[1]' must be string, got int"]
