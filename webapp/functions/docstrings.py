"""Reading a function's docstring for its manifest entry: summary, parameter descriptions, return text.

Google style (``Args:``, ``Returns:``) and reST (``:param x:``, ``:returns:``) are understood.
"""

from __future__ import annotations

import re

__all__ = ["Docstring"]

_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Yields|Raises|Examples?|Notes?):\s*$")
_ARG_SECTIONS = ("Args", "Arguments", "Parameters")
_GOOGLE_ARG = re.compile(r"^(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")  # "name (type): text"
_REST_PARAM = re.compile(r"^:param\s+(?:\S+\s+)?(\w+):\s*(.*)$")
_REST_RETURNS = re.compile(r"^:(?:returns?|yields?):\s*(.*)$")
_RETURNS = "\0returns"  # key of the return text while parsing (no parameter has this name)


class Docstring:
    """The summary, parameter descriptions and ``Returns:`` text of a Google- or reST-style docstring.

    :param text: the docstring, as :func:`inspect.getdoc` gives it (dedented).
    """

    def __init__(self, text: str) -> None:
        # reST inline literals read badly in a JSON manifest: ``x`` becomes x
        self._texts: dict[str, list[str]] = {}
        self.summary = self._parse(text.replace("``", "").strip().splitlines())
        self.params = {name: " ".join(words) for name, words in self._texts.items() if name != _RETURNS}
        self.returns = " ".join(self._texts.get(_RETURNS, []))

    def _parse(self, lines: list[str]) -> str:
        summary: list[str] = []
        section, target, entry_indent = "summary", None, None
        for raw in lines:
            line, indent = raw.strip(), len(raw) - len(raw.lstrip())
            if not line:
                if section == "summary" and summary:
                    section = "body"
                continue
            if match := _SECTION.match(line):
                section, entry_indent = match.group(1), None
                target = _RETURNS if section in ("Returns", "Yields") else None
            elif match := _REST_PARAM.match(line):
                section, target = "rest", match.group(1)
                self._start(target, match.group(2))
            elif match := _REST_RETURNS.match(line):
                section, target = "rest", _RETURNS
                self._start(target, match.group(1))
            elif section == "summary":
                summary.append(line)
            elif section in _ARG_SECTIONS and (match := _GOOGLE_ARG.match(line)) \
                    and (entry_indent is None or indent <= entry_indent):
                entry_indent, target = indent, match.group(1)
                self._start(target, match.group(2))
            elif target is not None and section != "body":
                self._texts.setdefault(target, []).append(line)
        return " ".join(summary)

    def _start(self, name: str, text: str) -> None:
        self._texts[name] = [text] if text else []
