"""extract_content, parse_message_by_keys, format_messages, merge_messages_content and token_count,
checking what flowllm 0.2's tests/test_extract_content.py and its llm_utils docs check."""

from __future__ import annotations

import asyncio

import pytest

from ops import (
    BaseAsyncOp,
    Message,
    Role,
    ToolCall,
    extract_content,
    format_messages,
    merge_messages_content,
    parse_message_by_keys,
    token_count,
)

# -- extract_content ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spaces", ["", " ", "  ", "   "])
def test_json_blocks_parse_whatever_the_spacing_before_the_tag(spaces: str) -> None:
    assert extract_content(f'```{spaces}json\n{{"key": "value"}}\n```') == {"key": "value"}


@pytest.mark.parametrize("spaces", ["", " ", "  "])
def test_python_blocks_give_the_code(spaces: str) -> None:
    assert extract_content(f"```{spaces}python\nprint('hello')\n```", language_tag="python") == "print('hello')"


def test_nested_json_and_surrounding_text() -> None:
    text = 'Here you go:\n```json\n{"name": "t", "value": 123, "nested": {"key": "val"}}\n```\nDone.'
    assert extract_content(text) == {"name": "t", "value": 123, "nested": {"key": "val"}}


def test_json_without_a_block_or_invalid_is_none() -> None:
    assert extract_content("This is plain text without code blocks", language_tag="json") is None
    assert extract_content("```json\n{invalid json}\n```") is None
    assert extract_content('[1, 2]') == [1, 2]


def test_other_tags_without_a_block_give_the_text() -> None:
    assert extract_content("just prose", language_tag="python") == "just prose"


def test_greedy_reaches_the_last_fence() -> None:
    text = "```md\na\n```\nb\n```"
    assert extract_content(text, "md") == "a"
    assert extract_content(text, "md", greedy=True) == "a\n```\nb"


# -- parse_message_by_keys -----------------------------------------------------------------------------


def test_keys_cut_the_text_in_order() -> None:
    assert parse_message_by_keys("prefixkey1middlekey2suffix", ["key1", "key2"]) == {"key1": "middle",
                                                                                    "key2": "suffix"}
    assert parse_message_by_keys("xxA1B2C3", ["A", "B", "C"]) == {"A": "1", "B": "2", "C": "3"}
    assert parse_message_by_keys("noise<answer>42", ["<answer>"]) == {"<answer>": "42"}
    assert parse_message_by_keys("nothing here", ["<answer>"]) == {"<answer>": ""}


def test_missing_keys() -> None:
    # the first key missing: the text before the second goes to the first
    assert parse_message_by_keys("headkey2tail", ["key1", "key2"]) == {"key1": "head", "key2": "tail"}
    # a middle key missing: the earlier key keeps the rest, and the next key is searched in it
    assert parse_message_by_keys("Aone Ctwo", ["A", "B", "C"]) == {"A": "one Ctwo", "B": "one ", "C": "two"}
    # the last key missing
    assert parse_message_by_keys("Aone", ["A", "B"]) == {"A": "one", "B": ""}


# -- messages as text ----------------------------------------------------------------------------------


def test_format_messages() -> None:
    text = format_messages([Message(role=Role.USER, content="Hello"), {"role": "assistant", "content": "Hi there!"}])
    assert text == "user: Hello\nassistant: Hi there!"


def test_merge_messages_content_numbers_the_steps() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        Message(role=Role.USER, content="Weather?"),
        Message(role=Role.ASSISTANT, content="Let me check", reasoning_content="need a tool",
                tool_calls=[ToolCall(id="c1", name="weather", arguments='{"city": "Oslo"}')]),
        Message(role=Role.TOOL, content="rain", tool_call_id="c1"),
    ]
    text = merge_messages_content(messages)
    assert "step.0" not in text  # system messages are left out
    assert "### step.1 role=user content=\nWeather?" in text
    assert "### step.2 role=assistant content=\nneed a tool\n\nLet me check" in text
    assert ' - tool call=weather\n   params={"city": "Oslo"}' in text
    assert "### step.3 role=tool tool call result=\nrain" in text


def test_bad_messages_are_named() -> None:
    with pytest.raises(TypeError, match="Message"):
        format_messages(["not a message"])


# -- token_count ---------------------------------------------------------------------------------------


def test_token_count_is_characters_over_four_rounded_up() -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},  # 28
        {"role": "user", "content": "Hello, how are you?"},  # 19
        {"role": "assistant", "content": "I'm doing well, thank you for asking!", "reasoning_content": "ok"},  # 37+2
    ]
    assert token_count(messages) == -(-(28 + 19 + 39) // 4) == 22
    assert token_count([]) == 0
    tool = ToolCall(name="search", description="find", arguments='{"q": 1}')  # 6 + 4 + 8
    assert token_count([Message(content="abcd")], tools=[tool], model="ignored") == -(-(4 + 18) // 4)


def test_only_text_blocks_count() -> None:
    message = Message(content=[{"type": "text", "text": "12345678"}, {"type": "image_url", "image_url": {"url": "u"}}])
    assert token_count([message]) == 2


def test_an_op_counts_tokens_like_flowllms_token_count_op() -> None:
    class CountOp(BaseAsyncOp):
        async def async_execute(self):
            return self.token_count([Message(**m) for m in self.context.messages])

    assert asyncio.run(CountOp().async_call(messages=[{"role": "user", "content": "x" * 9}])) == 3
