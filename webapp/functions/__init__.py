"""Invokable functions: ``GET /functions`` lists them, ``POST /invoke/<name>`` runs them.

Register a plain function, an ``async def`` coroutine function, or a sync or
async generator function (which streams events) with :func:`register_function`;
its manifest entry comes from the signature, type hints and docstring. Each app
serves its own copy of :data:`default_registry` (the built-ins plus whatever
was registered before the app was created); :func:`get_registry` returns it,
so a test or a plugin can add functions to one app only::

    registry = get_registry(app)

    @registry.register
    def shout(text: str) -> str:
        return text.upper()

``create_app({"FUNCTION_REGISTRY": FunctionRegistry()})`` serves exactly the
given registry instead.
"""

from __future__ import annotations

from flask import Flask, current_app

from . import builtin  # noqa: F401 - registers the built-in functions
from .inputs import InvalidInputs, validate_inputs
from .registry import (
    FunctionKind,
    FunctionRegistry,
    FunctionSpec,
    InputError,
    TextFile,
    UploadedFile,
    default_registry,
    register_function,
)

__all__ = [
    "FunctionKind",
    "FunctionRegistry",
    "FunctionSpec",
    "InputError",
    "InvalidInputs",
    "TextFile",
    "UploadedFile",
    "default_registry",
    "get_registry",
    "init_app",
    "register_function",
    "validate_inputs",
]

_EXTENSION = "flowbridge_functions"


def init_app(app: Flask) -> FunctionRegistry:
    """Give ``app`` its registry (idempotent): ``app.config["FUNCTION_REGISTRY"]`` or a copy of the default.

    :raises TypeError: if ``FUNCTION_REGISTRY`` is set to something else than a :class:`FunctionRegistry`.
    """
    registry = app.extensions.get(_EXTENSION)
    if registry is None:
        given = app.config.get("FUNCTION_REGISTRY")
        if given is not None and not isinstance(given, FunctionRegistry):
            raise TypeError(f"FUNCTION_REGISTRY must be a FunctionRegistry, got {type(given).__name__}")
        registry = app.extensions[_EXTENSION] = given if given is not None else default_registry.copy()
    return registry


def get_registry(app: Flask | None = None) -> FunctionRegistry:
    """The functions ``app`` (default: the current app) serves."""
    return init_app(app or current_app._get_current_object())  # type: ignore[attr-defined]
