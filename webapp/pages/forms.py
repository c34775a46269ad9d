"""HTML forms generated from input schemas, and the submitted form read back into typed values.

Every source of inputs describes them as a JSON schema object: an op's or a
flow's ``tool_call.input_json_schema()``, a workflow's start node ``outputs``
(FlowGram), a function's manifest (see :func:`fields_from_manifest`). One
:class:`Field` per property drives the ``form_fields`` macro of
``templates/_forms.html``, and :func:`read_form` turns the submitted strings
back into the declared types with an error per field.

Widgets: ``string`` → text (``textarea`` when ``multiline``), ``integer`` and
``number`` → number, ``boolean`` → checkbox, ``enum`` → select, ``array`` and
``object`` → a textarea holding JSON, ``file`` → file upload (text).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import FileStorage, MultiDict

from ..guards.jsonbody import MAX_DEPTH, JSONInputError, check_value

__all__ = ["Field", "fields_from_manifest", "fields_from_schema", "read_form"]

_TYPES = ("string", "integer", "number", "boolean", "array", "object", "file")
#: string fields whose name suggests a long text get a textarea
_LONG_NAMES = ("text", "content", "query", "prompt", "message", "document", "question", "system_prompt")


@dataclass
class Field:
    """One input of a form."""

    name: str
    type: str = "string"
    required: bool = False
    description: str = ""
    enum: list[Any] = field(default_factory=list)
    default: Any = None
    multiline: bool = False

    @property
    def widget(self) -> str:
        """``text``, ``textarea``, ``number``, ``checkbox``, ``select``, ``json`` or ``file``."""
        if self.enum:
            return "select"
        return {
            "integer": "number", "number": "number", "boolean": "checkbox",
            "array": "json", "object": "json", "file": "file",
        }.get(self.type, "textarea" if self.multiline else "text")

    def display(self, value: Any) -> str:
        """``value`` as the text a form field shows."""
        if value is None:
            return ""
        if self.type in ("array", "object") and not isinstance(value, str):
            return json.dumps(value, ensure_ascii=False, indent=2)
        return str(value)


def _type_of(spec: Mapping[str, Any]) -> str:
    kind = spec.get("type", "string")
    if isinstance(kind, list):  # ["string", "null"]
        kind = next((k for k in kind if k != "null"), "string")
    return kind if kind in _TYPES else "string"


def fields_from_schema(schema: Mapping[str, Any] | None) -> list[Field]:
    """The fields of a JSON schema object ``{"type": "object", "properties", "required"}``.

    A property may also say ``"required": true`` itself (ops' tool schemas do).
    """
    if not isinstance(schema, Mapping):
        return []
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    fields: list[Field] = []
    for name, spec in properties.items():
        spec = spec if isinstance(spec, Mapping) else {}
        kind = _type_of(spec)
        fields.append(Field(
            name=str(name),
            type=kind,
            required=name in required or spec.get("required") is True,
            description=str(spec.get("description") or spec.get("title") or ""),
            enum=list(spec.get("enum") or []),
            default=spec.get("default"),
            multiline=kind == "string" and (spec.get("format") == "textarea" or str(name).lower() in _LONG_NAMES),
        ))
    return fields


def fields_from_manifest(parameters: list[Mapping[str, Any]]) -> list[Field]:
    """The fields of a function manifest's ``parameters`` list."""
    return fields_from_schema({
        "type": "object",
        "properties": {p["name"]: p for p in parameters},
        "required": [p["name"] for p in parameters if p.get("required")],
    })


def read_form(
    fields: list[Field], form: MultiDict[str, str], files: MultiDict[str, FileStorage] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """``(values, errors)``: the submitted form in the fields' types, and a message per bad field.

    An empty optional field is left out (the op's own default applies); an
    empty required one is an error. Files are read as UTF-8 text.
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields:
        if f.type == "boolean":
            values[f.name] = form.get(f.name) in ("on", "true", "1")
            continue
        if f.type == "file":
            upload = (files or MultiDict()).get(f.name)
            raw = upload.read() if upload is not None and upload.filename else b""
            if not raw:
                if f.required:
                    errors[f.name] = "choose a file"
                continue
            try:
                values[f.name] = raw.decode("utf-8")
            except UnicodeDecodeError:
                errors[f.name] = "the file is not UTF-8 text"
            continue
        text = form.get(f.name, "")
        if text.strip() == "":
            if f.required:
                errors[f.name] = "required"
            continue
        try:
            values[f.name] = _convert(f, text)
        except ValueError as exc:
            errors[f.name] = str(exc)
    return values, errors


def _convert(f: Field, text: str) -> Any:
    if f.enum:
        for option in f.enum:
            if str(option) == text:
                return option
        raise ValueError(f"choose one of {', '.join(map(str, f.enum))}")
    if f.type == "integer":
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError("enter a whole number") from None
    if f.type == "number":
        try:
            number = float(text.strip())
        except ValueError:
            raise ValueError("enter a number") from None
        return int(number) if number.is_integer() and "." not in text else number
    if f.type in ("array", "object"):
        try:
            value = json.loads(text)
            check_value(value, "the JSON")  # too deep, or a lone surrogate
        except RecursionError:
            raise ValueError(f"the JSON is nested too deeply (more than {MAX_DEPTH} levels)") from None
        except JSONInputError as exc:
            raise ValueError(str(exc)) from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
        expected = list if f.type == "array" else dict
        if not isinstance(value, expected):
            raise ValueError(f"enter a JSON {'array [...]' if f.type == 'array' else 'object {...}'}")
        return value
    return text
