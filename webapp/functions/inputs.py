"""Checking a call's inputs against a function's manifest entry.

Every problem names the input as ``inputs.<name>`` (``inputs.items[2]`` for an
array element), e.g. ``inputs.items: expected an array, got string``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from ..guards.jsonbody import JSONInputError, loads_json
from .registry import FunctionSpec, InputError, UploadedFile

__all__ = ["InvalidInputs", "coerce_form_value", "json_type", "validate_inputs"]

_ARTICLES = {"array": "an array", "integer": "an integer", "object": "an object"}
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class InvalidInputs(ValueError):
    """The inputs do not fit the manifest; ``problems`` has one message per input."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def json_type(value: Any) -> str:
    """The manifest type name of a value, for messages: null, boolean, integer, number, string, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, UploadedFile):
        return "file"
    return type(value).__name__


def _a(type_: str) -> str:
    return _ARTICLES.get(type_, f"a {type_}")


def validate_inputs(spec: FunctionSpec, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments to call ``spec.func`` with.

    Checks for unknown and missing inputs, types and the entry's constraints
    (``minimum``, ``maximum``, ``minLength``, ``maxLength``, ``minItems``,
    ``maxItems``, ``enum``, ``items``). A ``file`` input may be an upload or,
    from JSON callers, a string with the file's text; with ``encoding`` the
    function receives the decoded text.

    :raises InvalidInputs: listing every problem.
    """
    problems: list[str] = []
    known = {p["name"] for p in spec.parameters}
    for name in inputs:
        if name not in known:
            takes = ", ".join(sorted(known)) or "no inputs"
            problems.append(f"inputs.{name[:60]}: unknown input; {spec.name} takes {takes}")
    arguments: dict[str, Any] = {}
    for param in spec.parameters:
        name = param["name"]
        if name not in inputs:
            if param.get("required"):
                problems.append(f"inputs.{name}: required ({_a(param['type'])})")
            continue
        try:
            arguments[name] = _check_value(param, inputs[name], name)
        except InputError as exc:
            problems.append(str(exc))
    if problems:
        raise InvalidInputs(problems)
    return arguments


def _check_value(param: Mapping[str, Any], value: Any, path: str) -> Any:
    """``value`` checked against ``param`` (and converted: whole floats to int, files to text).

    :param path: the input's name, as messages show it after ``inputs.``.
    """
    type_ = param["type"]
    if value is None:
        if "default" in param and param["default"] is None:
            return None
        raise InputError(path, f"expected {_a(type_)}, got null")
    value = _check_type(type_, value, path, param.get("encoding"))
    _check_constraints(param, value, path)
    return value


def _check_type(type_: str, value: Any, path: str, encoding: str | None) -> Any:
    got = json_type(value)
    if type_ == "file":
        return _check_file(value, path, encoding)
    if type_ == "integer" and got == "number" and float(value).is_integer():
        return int(value)
    if type_ == "number" and got == "integer":
        return value
    if got != type_:
        raise InputError(path, f"expected {_a(type_)}, got {got}")
    return value


def _check_file(value: Any, path: str, encoding: str | None) -> Any:
    if isinstance(value, str):
        return value if encoding else UploadedFile(value.encode("utf-8"), None, "text/plain; charset=utf-8")
    if not isinstance(value, UploadedFile):
        raise InputError(path, f"expected a file (an upload, or its text as a string), got {json_type(value)}")
    if not encoding:
        return value
    try:
        text = value.data.decode("utf-8-sig" if encoding.lower() in ("utf-8", "utf8") else encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        where = f" at byte {exc.start}" if isinstance(exc, UnicodeDecodeError) else ""
        raise InputError(path, f"{value.filename or 'the upload'} is not {encoding} text "
                                   f"(undecodable{where})") from None
    if "\x00" in text:
        raise InputError(path, f"{value.filename or 'the upload'} is not text (it contains NUL bytes)")
    return text


def _check_constraints(param: Mapping[str, Any], value: Any, path: str) -> None:
    if "enum" in param and value not in param["enum"]:
        raise InputError(path, f"must be one of {', '.join(map(json.dumps, param['enum']))}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in param and value < param["minimum"]:
            raise InputError(path, f"must be >= {param['minimum']}, got {value}")
        if "maximum" in param and value > param["maximum"]:
            raise InputError(path, f"must be <= {param['maximum']}, got {value}")
    if isinstance(value, str) and param["type"] == "string":
        if "minLength" in param and len(value) < param["minLength"]:
            raise InputError(path, f"must have at least {param['minLength']} characters")
        if "maxLength" in param and len(value) > param["maxLength"]:
            raise InputError(path, f"must have at most {param['maxLength']} characters, got {len(value)}")
    if isinstance(value, list):
        if "minItems" in param and len(value) < param["minItems"]:
            raise InputError(path, f"must have at least {param['minItems']} item(s)")
        if "maxItems" in param and len(value) > param["maxItems"]:
            raise InputError(path, f"must have at most {param['maxItems']} items, got {len(value)}")
        item_type = (param.get("items") or {}).get("type")
        if item_type:
            for i, item in enumerate(value):
                got = json_type(item)
                if got != item_type and not (item_type == "number" and got == "integer"):
                    raise InputError(f"{path}[{i}]", f"expected {_a(item_type)}, got {got}")


def coerce_form_value(param: Mapping[str, Any], raw: str) -> Any:
    """A multipart/form field's text as the parameter's type (``"50"`` → 50, ``"true"`` → True).

    :raises InputError: if the text is not a value of that type.
    """
    type_, path = param["type"], param["name"]
    if type_ in ("string", "file"):
        return raw
    text = raw.strip()
    if type_ == "boolean":
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
    elif type_ == "integer":
        try:
            return int(text)
        except ValueError:
            pass
    elif type_ == "number":
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
            raise InputError(path, f"expected a finite number, got the form text {raw[:40]!r}")
    else:  # array, object: JSON text
        try:
            return loads_json(text, "the form text")
        except JSONInputError as exc:
            if not exc.syntax:  # JSON we refuse (too deep, a lone surrogate, 1e400): say why
                raise InputError(path, str(exc)) from None
    raise InputError(path, f"expected {_a(type_)}, got the form text {raw[:40]!r}")
