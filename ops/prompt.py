"""Prompt templates: YAML files beside the ops, with language variants and flag lines.

A prompt file is a flat mapping of names to strings, next to its op module
(``chat_op.py`` → ``chat_prompt.yaml``)::

    qa: |
      Answer briefly.
      [cite]Cite your sources.
      Question: {question}
    qa_zh: |
      请简要回答。
      问题：{question}

Differences from flowllm, on purpose: a missing ``<name>_<language>`` falls
back to ``<name>``; flag prefixes are removed exactly (``[flag]flagged`` →
``flagged``); templates are always formatted, so ``{{``/``}}`` always mean
literal braces; errors name the prompt, the variable and the files.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["PromptError", "PromptHandler", "prompt_file_for"]

logger = logging.getLogger(__name__)


class PromptError(KeyError):
    """A prompt, or a variable of one, is missing, or a prompt file is invalid.

    A ``KeyError`` for compatibility with flowllm's lookups, but printed as a
    plain message (``KeyError`` would quote it).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def prompt_file_for(cls: type) -> Path | None:
    """The prompt file of the class ``cls``: ``x_op.py`` → ``x_prompt.yaml`` beside it.

    Returns the path whether or not the file exists; ``None`` when the class has
    no source file or its file name does not end in ``op.py``.
    """
    source = _source_file(cls)
    if source is None:
        return None
    path = Path(source)
    if not path.name.endswith("op.py"):
        return None
    return path.with_name(path.name.removesuffix("op.py") + "prompt.yaml")


def _source_file(cls: type) -> str | None:
    try:
        source = inspect.getsourcefile(cls)
    except (TypeError, OSError):  # built-in, or its module is not in sys.modules
        source = None
    if source is not None:
        return source
    # A module imported from a file path (importlib, not in sys.modules): ask its methods.
    for attr in vars(cls).values():
        function = getattr(attr, "__func__", attr)  # classmethod / staticmethod
        function = getattr(function, "fget", function)  # property
        code = getattr(function, "__code__", None)
        if code is not None and code.co_filename.endswith(".py"):
            return code.co_filename
    return None


class _Variables(dict):
    """The values of a :meth:`str.format_map` call; a missing one is a :class:`PromptError`."""

    def __init__(self, values: Mapping[str, Any], prompt: str) -> None:
        super().__init__(values)
        self.prompt = prompt

    def __missing__(self, key: str) -> Any:
        raise PromptError(f"prompt {self.prompt!r} needs a value for {{{key}}}")


class PromptHandler:
    """The prompts of one op.

    :param language: when set, :meth:`get_prompt` prefers ``<name>_<language>``.
    """

    def __init__(self, language: str = "") -> None:
        self.language = language
        self._prompts: dict[str, str] = {}
        #: the prompt files loaded, in order
        self.files: list[Path] = []

    def __contains__(self, name: object) -> bool:
        return name in self._prompts

    @property
    def names(self) -> list[str]:
        return list(self._prompts)

    def load_prompt_yaml(self, path: str | Path) -> bool:
        """Add the prompts of a YAML file (``yaml.safe_load``); later files override earlier ones.

        Entries whose key or value is not a string are ignored.

        :returns: False when the file does not exist (nothing is loaded).
        :raises PromptError: naming the file, when it is not valid YAML or not a mapping.
        """
        path = Path(path)
        if not path.exists():
            return False
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise PromptError(f"prompt file {path} is not valid YAML: {exc}") from exc
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise PromptError(f"prompt file {path} must be a mapping of names to strings, got {type(data).__name__}")
        for name, text in data.items():
            if isinstance(name, str) and isinstance(text, str):
                self._prompts[name] = text
            else:
                logger.debug("ignoring non-string prompt entry %r in %s", name, path)
        self.files.append(path)
        return True

    def add_prompts(self, mapping: Mapping[str, str]) -> None:
        """Add or replace prompts.

        :raises TypeError: naming the entry, when a name or text is not a string.
        """
        for name, text in mapping.items():
            if not isinstance(name, str) or not isinstance(text, str):
                raise TypeError(f"prompt {name!r}: names and texts must be strings, got {type(text).__name__}")
        self._prompts.update(mapping)

    def get_prompt(self, name: str) -> str:
        """The template ``name``: ``name_<language>`` first when a language is set, else ``name``.

        :raises PromptError: naming the prompt, the language and the files loaded.
        """
        candidates = [name]
        suffix = f"_{self.language}"
        if self.language and not name.endswith(suffix):
            candidates.insert(0, name + suffix)
        for candidate in candidates:
            if candidate in self._prompts:
                return self._prompts[candidate]
        files = ", ".join(str(f) for f in self.files) or "no prompt files"
        tried = " or ".join(repr(c) for c in candidates)
        language = f" (language {self.language!r})" if self.language else ""
        raise PromptError(f"prompt {name!r} not found{language}: tried {tried} in {files}")

    def prompt_format(self, name: str, /, **kwargs: Any) -> str:
        """The template ``name`` with flag lines resolved and ``{placeholders}`` filled.

        Boolean kwargs are flags: a line starting (after indentation) with
        ``[flag]`` is kept without that prefix when the flag is true and dropped
        when it is false. Lines with the prefix of a flag not passed stay as they
        are. Other kwargs fill ``str.format`` placeholders; extra ones are ignored.
        The template is always formatted, so ``{{`` and ``}}`` are literal braces
        even when no values are passed. Whitespace of kept lines is unchanged.
        ``name`` is positional-only, so a template may use ``{name}``.

        :raises PromptError: naming the prompt and the variable without a value, or
            when the template is not a valid format string.
        """
        template = self.get_prompt(name)
        flags = {key: value for key, value in kwargs.items() if isinstance(value, bool)}
        values = {key: value for key, value in kwargs.items() if not isinstance(value, bool)}
        if flags:
            template = _apply_flags(template, flags)
        try:
            return template.format_map(_Variables(values, name))
        except (ValueError, IndexError) as exc:
            raise PromptError(f"prompt {name!r} is not a valid template: {exc}") from exc


def _apply_flags(template: str, flags: Mapping[str, bool]) -> str:
    lines: list[str] = []
    for line in template.splitlines(keepends=True):
        body = line.lstrip()
        indent = line[: len(line) - len(body)]
        for flag, enabled in flags.items():
            prefix = f"[{flag}]"
            if body.startswith(prefix):
                line = indent + body.removeprefix(prefix) if enabled else ""
                break
        lines.append(line)
    return "".join(lines)
