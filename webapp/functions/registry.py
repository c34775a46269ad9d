"""Invokable functions and their manifest: what ``GET /functions`` lists and ``POST /invoke/<name>`` runs.

A function is registered with a decorator; its manifest entry (the shape of
seeds/004's ``prefab-manifest.json``) is derived from the signature, the type
hints and the docstring, and anything given to the decorator overrides it::

    @register_function(description="Count to n", parameters=[{"name": "n", "maximum": 1000}])
    async def count(n: int = 10) -> AsyncIterator[dict]:
        ...

Plain functions and ``async def`` coroutine functions answer JSON; sync and
async generator functions are ``streaming`` and answer an event stream.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, Union

from .docstrings import Docstring

__all__ = [
    "PARAMETER_TYPES",
    "FunctionKind",
    "FunctionRegistry",
    "FunctionSpec",
    "InputError",
    "TextFile",
    "UploadedFile",
    "default_registry",
    "register_function",
]

#: The types a parameter may have in the manifest.
PARAMETER_TYPES = ("string", "integer", "number", "boolean", "array", "object", "file")

#: Keys a parameter entry may carry besides name, type, required, description and default.
CONSTRAINT_KEYS = ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "enum", "items",
                   "encoding")

_RETURNS_STREAM = {"type": "object", "description": "SSE event stream"}


class InputError(ValueError):
    """Raised by a function for one bad input; the caller gets a 400 naming ``inputs.<field>``.

    :param field: the input's name.
    :param problem: what is wrong with it, e.g. ``"must not be empty"``.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"inputs.{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class UploadedFile:
    """What a ``file`` parameter receives: an uploaded file, read into memory.

    Uploads are bounded by the app's ``MAX_CONTENT_LENGTH``.
    """

    data: bytes
    filename: str | None = None
    content_type: str | None = None

    def text(self, encoding: str = "utf-8") -> str:
        """The content decoded; :class:`UnicodeDecodeError` (a ValueError) if it is not text."""
        return self.data.decode(encoding)


class _TextMarker:
    def __repr__(self) -> str:
        return "TextFile"


#: Annotation of a ``file`` parameter that must be UTF-8 text: the function receives the decoded ``str``.
TextFile = Annotated[str, _TextMarker()]


class FunctionKind(enum.Enum):
    FUNCTION = "function"
    COROUTINE = "coroutine"
    GENERATOR = "generator"
    ASYNC_GENERATOR = "async_generator"

    @property
    def streaming(self) -> bool:
        return self in (FunctionKind.GENERATOR, FunctionKind.ASYNC_GENERATOR)


def _kind_of(func: Callable[..., Any]) -> FunctionKind:
    if inspect.isasyncgenfunction(func):
        return FunctionKind.ASYNC_GENERATOR
    if inspect.isgeneratorfunction(func):
        return FunctionKind.GENERATOR
    if inspect.iscoroutinefunction(func):
        return FunctionKind.COROUTINE
    return FunctionKind.FUNCTION


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    """A registered function with its manifest entry."""

    name: str
    func: Callable[..., Any]
    kind: FunctionKind
    description: str
    parameters: tuple[dict[str, Any], ...]
    returns: dict[str, Any]

    @property
    def streaming(self) -> bool:
        return self.kind.streaming

    def parameter(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.parameters if p["name"] == name), None)

    def manifest(self) -> dict[str, Any]:
        """The manifest entry: name, description, parameters, streaming, returns."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": [dict(p) for p in self.parameters],
            "streaming": self.streaming,
            "returns": dict(self.returns),
        }


class FunctionRegistry:
    """Functions by name. Each app works on its own copy (see :func:`webapp.functions.get_registry`)."""

    def __init__(self, specs: Iterable[FunctionSpec] = ()) -> None:
        self._specs: dict[str, FunctionSpec] = {}
        for spec in specs:
            self.add(spec)

    def register(
        self,
        func: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        parameters: Sequence[Mapping[str, Any]] | None = None,
        returns: Mapping[str, Any] | None = None,
    ) -> Any:
        """Register ``func``; usable as ``@registry.register`` or ``@registry.register(...)``.

        :param name: the name to invoke it by; the function's ``__name__`` if not given.
        :param description: the docstring's first paragraph if not given.
        :param parameters: entries merged by name into the derived ones, e.g.
            ``[{"name": "delay", "maximum": 5}]``; each name must be a parameter of ``func``.
        :param returns: ``{"type", "description"}``; derived from the return annotation if not given.
        :raises ValueError: if the name is taken.
        :raises TypeError: if a parameter has no usable type or the overrides do not fit the signature.
        """

        def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
            self.add(build_spec(f, name=name, description=description, parameters=parameters, returns=returns))
            return f

        return decorate(func) if func is not None else decorate

    def add(self, spec: FunctionSpec) -> None:
        existing = self._specs.get(spec.name)
        if existing is not None:
            raise ValueError(
                f"a function named {spec.name!r} is already registered ({_qualname(existing.func)}); "
                f"cannot register {_qualname(spec.func)} under the same name; pass name=... to choose another"
            )
        self._specs[spec.name] = spec

    def get(self, name: str) -> FunctionSpec | None:
        return self._specs.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> typing.Iterator[FunctionSpec]:
        return iter(sorted(self._specs.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._specs)

    def manifest(self) -> list[dict[str, Any]]:
        """Every function's manifest entry, by name."""
        return [spec.manifest() for spec in self]

    def copy(self) -> FunctionRegistry:
        return FunctionRegistry(self._specs.values())


def _qualname(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


# -- deriving the manifest ----------------------------------------------------------------------

def build_spec(
    func: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: Sequence[Mapping[str, Any]] | None = None,
    returns: Mapping[str, Any] | None = None,
) -> FunctionSpec:
    """The :class:`FunctionSpec` of ``func``: derived from it, then overridden by the arguments."""
    if not callable(func):
        raise TypeError(f"can only register functions, got {func!r}")
    fname = name or getattr(func, "__name__", "")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", fname):
        raise ValueError(f"function name {fname!r} must be letters, digits, '_', '.' or '-'")
    where = f"function {fname!r} ({_qualname(func)})"
    doc = Docstring(inspect.getdoc(func) or "")
    derived = _derive_parameters(func, doc, where)
    merged = _merge_parameters(derived, parameters or (), where)
    kind = _kind_of(func)
    return FunctionSpec(
        name=fname,
        func=func,
        kind=kind,
        description=description if description is not None else doc.summary,
        parameters=tuple(merged),
        returns=dict(returns) if returns is not None else _derive_returns(func, kind, doc),
    )


def _derive_parameters(func: Callable[..., Any], doc: Docstring, where: str) -> list[dict[str, Any]]:
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except (NameError, TypeError) as exc:
        raise TypeError(f"{where}: cannot read its type hints: {exc}") from None
    entries = []
    for param in inspect.signature(func).parameters.values():
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            raise TypeError(f"{where}: parameter {param.name!r} is {param.kind.description}; "
                            "invokable functions take named parameters only")
        has_default = param.default is not param.empty
        annotation = hints.get(param.name, param.empty)
        if annotation is param.empty:
            if not has_default or param.default is None:
                raise TypeError(f"{where}: parameter {param.name!r} needs a type hint "
                                "(or give its type with parameters=[{...}])")
            annotation = type(param.default)
        entry: dict[str, Any] = {"name": param.name}
        entry.update(_schema_of(annotation, f"{where}: parameter {param.name!r}"))
        entry["required"] = not has_default
        entry["description"] = doc.params.get(param.name, "")
        if has_default:
            entry["default"] = _jsonable_default(param.default, where, param.name)
        entries.append(_ordered(entry))
    return entries


def _jsonable_default(value: Any, where: str, pname: str) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise TypeError(f"{where}: the default of {pname!r} ({value!r}) is not JSON") from None
    return value


def _merge_parameters(
    derived: list[dict[str, Any]], overrides: Sequence[Mapping[str, Any]], where: str
) -> list[dict[str, Any]]:
    by_name = {entry["name"]: entry for entry in derived}
    for override in overrides:
        pname = override.get("name")
        if pname not in by_name:
            raise TypeError(f"{where}: parameters=[...] names {pname!r}, which is not one of its parameters "
                            f"({', '.join(by_name) or 'none'})")
        unknown = set(override) - {"name", "type", "required", "description", "default", *CONSTRAINT_KEYS}
        if unknown:
            raise TypeError(f"{where}: parameter {pname!r} has unknown manifest key(s) {sorted(unknown)}")
        if "type" in override and override["type"] not in PARAMETER_TYPES:
            raise TypeError(f"{where}: parameter {pname!r} has type {override['type']!r}; "
                            f"use one of {', '.join(PARAMETER_TYPES)}")
        by_name[pname] = _ordered({**by_name[pname], **override})
    return [by_name[entry["name"]] for entry in derived]


def _ordered(entry: dict[str, Any]) -> dict[str, Any]:
    """Keys in the manifest's order: name, type, required, description, default, then constraints."""
    head = ("name", "type", "required", "description", "default")
    return {**{k: entry[k] for k in head if k in entry}, **{k: v for k, v in entry.items() if k not in head}}


def _derive_returns(func: Callable[..., Any], kind: FunctionKind, doc: Docstring) -> dict[str, Any]:
    if kind.streaming:
        return dict(_RETURNS_STREAM)
    annotation = inspect.signature(func).return_annotation
    try:
        annotation = typing.get_type_hints(func).get("return", annotation)
    except (NameError, TypeError):
        pass
    try:
        type_ = _schema_of(annotation, "")["type"]
    except TypeError:
        type_ = "object"
    return {"type": type_, "description": doc.returns}


_SCALARS: dict[Any, str] = {str: "string", bool: "boolean", int: "integer", float: "number",
                            list: "array", tuple: "array", set: "array", dict: "object"}


def _schema_of(annotation: Any, where: str) -> dict[str, Any]:
    """``{"type": ...}`` (plus ``items``, ``enum``, ``encoding``) for a type hint."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Annotated:
        if any(isinstance(meta, _TextMarker) for meta in annotation.__metadata__):
            return {"type": "file", "encoding": "utf-8"}
        return _schema_of(args[0], where)
    if origin in (Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _schema_of(rest[0], where)
        raise TypeError(f"{where}: union {annotation!r} has no single JSON type; give parameters=[{{'type': ...}}]")
    if origin is Literal:
        kinds = {_schema_of(type(v), where)["type"] for v in args}
        if len(kinds) != 1:
            raise TypeError(f"{where}: Literal{list(args)} mixes types")
        return {"type": kinds.pop(), "enum": list(args)}
    if annotation is UploadedFile:
        return {"type": "file"}
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    base = origin or annotation
    if isinstance(base, type):
        if issubclass(base, (str, bytes)):
            return {"type": "string"}
        if issubclass(base, Mapping):
            return {"type": "object"}
        if issubclass(base, (Sequence, set, frozenset)) or base in (Iterable,):
            schema: dict[str, Any] = {"type": "array"}
            if args and args[0] is not Any and args[0] is not Ellipsis:
                try:
                    schema["items"] = {"type": _schema_of(args[0], where)["type"]}
                except TypeError:
                    pass
            return schema
    raise TypeError(f"{where}: type {annotation!r} has no JSON type; use str, int, float, bool, list, dict, "
                    "UploadedFile or TextFile, or give parameters=[{'name': ..., 'type': ...}]")


#: The registry every app starts from: the built-in functions and any registered with
#: :func:`register_function` before the app is created.
default_registry = FunctionRegistry()


def register_function(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: Sequence[Mapping[str, Any]] | None = None,
    returns: Mapping[str, Any] | None = None,
) -> Any:
    """Register ``func`` in :data:`default_registry` (see :meth:`FunctionRegistry.register`).

    Apps created afterwards serve it; to add a function to one app only, use
    ``get_registry(app).register``.
    """
    return default_registry.register(func, name=name, description=description, parameters=parameters,
                                     returns=returns)
