"""PromptHandler, prompt_file_for and PromptError."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from ops.prompt import PromptError, PromptHandler, prompt_file_for


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def handler(tmp_path: Path) -> PromptHandler:
    handler = PromptHandler()
    handler.load_prompt_yaml(write(tmp_path / "x_prompt.yaml", (
        "greet: 'Hello {name}'\n"
        "greet_zh: '你好 {name}'\n"
        "bye: 'Bye'\n"
        "count: 3\n"
        "flags: |\n"
        "  Always.\n"
        "  [polite]Please.\n"
        "    [polite]Indented please.\n"
        "  [short]Be short.\n"
        "  [other]Not a passed flag.\n"
        "  [flag]flagged\n"
        "json: 'Reply as {{\"answer\": \"{answer}\"}}'\n"
        "literal: 'Braces {{x}} stay'\n"
    )))
    return handler


# -- PromptError ----------------------------------------------------------------------------------


def test_prompt_error_is_a_key_error_with_a_readable_message() -> None:
    error = PromptError("prompt 'x' not found")
    assert isinstance(error, KeyError)
    assert str(error) == "prompt 'x' not found"


# -- loading ---------------------------------------------------------------------------------------


def test_load_ignores_non_strings_and_reports_files(handler: PromptHandler, tmp_path: Path) -> None:
    assert "greet" in handler and "count" not in handler
    assert handler.files == [tmp_path / "x_prompt.yaml"]


def test_missing_file_is_a_no_op(tmp_path: Path) -> None:
    handler = PromptHandler()
    assert handler.load_prompt_yaml(tmp_path / "nowhere.yaml") is False
    assert handler.files == [] and handler.names == []


def test_empty_file_loads_nothing(tmp_path: Path) -> None:
    handler = PromptHandler()
    assert handler.load_prompt_yaml(write(tmp_path / "empty.yaml", "")) is True
    assert handler.names == []


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "a: [unclosed\n"])
def test_invalid_file_names_the_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "bad_prompt.yaml", text)
    with pytest.raises(PromptError, match="bad_prompt.yaml"):
        PromptHandler().load_prompt_yaml(path)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = write(tmp_path / "evil.yaml", "x: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(PromptError, match="evil.yaml"):
        PromptHandler().load_prompt_yaml(path)


def test_later_files_and_add_prompts_override(handler: PromptHandler, tmp_path: Path) -> None:
    handler.load_prompt_yaml(write(tmp_path / "more.yaml", "bye: 'Later'\n"))
    assert handler.get_prompt("bye") == "Later"
    handler.add_prompts({"bye": "Ciao", "new": "New"})
    assert handler.get_prompt("bye") == "Ciao" and handler.get_prompt("new") == "New"
    with pytest.raises(TypeError, match="bad"):
        handler.add_prompts({"bad": 1})


# -- get_prompt --------------------------------------------------------------------------------------


def test_language_variant_is_preferred_and_falls_back(handler: PromptHandler) -> None:
    handler.language = "zh"
    assert handler.get_prompt("greet") == "你好 {name}"
    assert handler.get_prompt("greet_zh") == "你好 {name}"  # already suffixed
    assert handler.get_prompt("bye") == "Bye"  # no bye_zh: fallback (flowllm has none)
    handler.language = ""
    assert handler.get_prompt("greet") == "Hello {name}"


def test_missing_prompt_names_prompt_language_and_files(handler: PromptHandler) -> None:
    handler.language = "zh"
    with pytest.raises(PromptError) as info:
        handler.get_prompt("absent")
    message = str(info.value)
    assert "'absent'" in message and "'zh'" in message and "x_prompt.yaml" in message
    with pytest.raises(KeyError, match="no prompt files"):
        PromptHandler().get_prompt("absent")


# -- prompt_format -------------------------------------------------------------------------------------


def test_format_fills_placeholders_and_ignores_extras(handler: PromptHandler) -> None:
    assert handler.prompt_format("greet", name="Ada", unused=1) == "Hello Ada"
    assert handler.prompt_format("json", answer="42") == 'Reply as {"answer": "42"}'


def test_missing_variable_names_prompt_and_variable(handler: PromptHandler) -> None:
    with pytest.raises(PromptError) as info:
        handler.prompt_format("greet")
    assert "'greet'" in str(info.value) and "name" in str(info.value)


def test_braces_are_literal_even_without_values(handler: PromptHandler) -> None:
    assert handler.prompt_format("literal") == "Braces {x} stay"
    assert handler.prompt_format("literal", x="ignored") == "Braces {x} stay"


def test_invalid_template_is_a_prompt_error() -> None:
    handler = PromptHandler()
    handler.add_prompts({"single": "a } b", "positional": "a {} b"})
    for name in ("single", "positional"):
        with pytest.raises(PromptError, match=name):
            handler.prompt_format(name)


def test_flags_keep_or_drop_lines_and_remove_exactly_the_prefix(handler: PromptHandler) -> None:
    on = handler.prompt_format("flags", polite=True, short=False, flag=True)
    assert on == "Always.\nPlease.\n  Indented please.\n[other]Not a passed flag.\nflagged\n"
    off = handler.prompt_format("flags", polite=False, short=True, flag=False)
    assert off == "Always.\nBe short.\n[other]Not a passed flag.\n"


def test_flags_combine_with_values() -> None:
    handler = PromptHandler()
    handler.add_prompts({"p": "Hi {name}.\n[cite]Cite {source}.\nEnd"})
    assert handler.prompt_format("p", name="Ada", cite=True, source="docs") == "Hi Ada.\nCite docs.\nEnd"
    assert handler.prompt_format("p", name="Ada", cite=False) == "Hi Ada.\nEnd"


def test_no_flags_leaves_flag_lines_and_whitespace(handler: PromptHandler) -> None:
    text = handler.prompt_format("flags")
    assert text.startswith("Always.\n[polite]Please.\n  [polite]Indented please.\n") and text.endswith("\n")


# -- prompt_file_for ----------------------------------------------------------------------------------


def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prompt_file_for_an_op_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module_path = write(tmp_path / "summarize_op.py", "class SummarizeOp:\n    pass\n")
    name = f"summarize_op_{tmp_path.name}"
    module = _import(module_path, name)
    monkeypatch.setitem(sys.modules, name, module)
    expected = tmp_path / "summarize_prompt.yaml"
    assert prompt_file_for(module.SummarizeOp) == expected  # returned even though it does not exist yet
    write(expected, "summary: 'Summarise {text}'\n")
    handler = PromptHandler()
    assert handler.load_prompt_yaml(prompt_file_for(module.SummarizeOp)) is True
    assert handler.prompt_format("summary", text="this") == "Summarise this"


def test_prompt_file_for_a_module_not_in_sys_modules(tmp_path: Path) -> None:
    # How tests (and the lead's op loader) import op files: importlib, no sys.modules entry.
    source = "class BaseThingOp:\n    @property\n    def p(self):\n        return 1\n"
    source += "class ThingOp(BaseThingOp):\n    async def async_execute(self):\n        return 1\n"
    module = _import(write(tmp_path / "thing_op.py", source), f"thing_op_{tmp_path.name}")
    assert prompt_file_for(module.ThingOp) == tmp_path / "thing_prompt.yaml"
    assert prompt_file_for(module.BaseThingOp) == tmp_path / "thing_prompt.yaml"
    bare = _import(write(tmp_path / "bare_op.py", "class BareOp:\n    pass\n"), f"bare_op_{tmp_path.name}")
    assert prompt_file_for(bare.BareOp) is None  # nothing says where it came from


def test_prompt_file_for_other_modules_and_builtins(tmp_path: Path) -> None:
    helpers = write(tmp_path / "helpers.py", "class HelperOp:\n    def f(self):\n        return 1\n")
    module = _import(helpers, f"helpers_{tmp_path.name}")
    assert prompt_file_for(module.HelperOp) is None
    assert prompt_file_for(int) is None
    assert prompt_file_for(PromptHandler) is None  # ops/prompt.py does not end in op.py


def test_seed_qa_op_prompt_file() -> None:
    from tests.ops.qa_op import QAOp

    path = prompt_file_for(QAOp)
    assert path is not None and path.name == "qa_prompt.yaml" and path.exists()
    handler = PromptHandler(language="zh")
    handler.load_prompt_yaml(path)
    assert handler.prompt_format("qa", question="你好？").startswith("请简要回答问题。")
