"""flowllm's way of configuring an app — ``FlowLLMApp("config=default,search", "llm.default.model_name=x",
config_path=..., llm_api_key=...)`` — read into flowbridge's settings.

Arguments are merged in flowllm's order: the config files named by
``config=`` / ``c=`` (comma-separated, later files win; ``config_path=`` is
one more), then ``key.path=value`` arguments, then keyword arguments
(``a__b=1`` is ``a.b=1``). Values of ``key=value`` text are read as JSON when
they are JSON (``3``, ``0.5``, ``{"a": 1}``), ``true``/``false``/``none``/``null``
in any case, else as text.

What maps onto flowbridge, and how:

==============================================  ===============================================
``language``                                    prompt language (``FLOWBRIDGE_LANGUAGE``)
``thread_pool_max_workers``                     size of ``C.thread_pool``
``cache``                                       the op cache (``FLOWBRIDGE_OP_CACHE``)
``flows`` (a path)                              the flows file (``FLOWBRIDGE_FLOWS``)
``flow`` (flowllm) / ``flows`` (a mapping)      flows declared inline, added to the file's
``enabled_flows`` / ``disabled_flows``          which flows are loaded
``llm.default.model_name``                      ``LLM_MODEL``
``embedding_model.default.model_name``          ``LLM_EMBEDDING_MODEL``
``llm.default.backend``, ``embedding_model``    ``openai_compatible`` (the only backend)
``.default.backend``
``vector_store.default.backend``                ``memory`` (the only vector store)
``llm_api_key`` / ``llm_api_base``              ``LLM_API_KEY`` / ``LLM_BASE_URL``
``embedding_api_key`` / ``embedding_api_base``  accepted when equal to the LLM's (one endpoint)
==============================================  ===============================================

The config name ``default`` is flowbridge's defaults (nothing to load); any
other name is a YAML file (``.yaml`` added when missing). Everything else —
flowllm's ``backend``, ``http``, ``mcp``, ``external_mcp``, other LLMs,
``params`` … — is an :class:`AppConfigError` naming the key, instead of
being ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["AppConfig", "AppConfigError", "parse_app_args", "read_app_config"]

#: Settings that pass straight through to ``configure_services``.
_PLAIN_KEYS = ("language", "thread_pool_max_workers", "cache", "enabled_flows", "disabled_flows")
_OPENAI_BACKENDS = ("", "openai_compatible")


class AppConfigError(ValueError):
    """An app argument or config entry that flowbridge cannot honour; the message names it."""


@dataclass
class AppConfig:
    """What the arguments configure: ``configure_services`` overrides and LLM variables."""

    overrides: dict[str, Any] = field(default_factory=dict)
    llm_env: dict[str, str] = field(default_factory=dict)


def _read_value(text: str) -> Any:
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    return text


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _set_path(target: dict[str, Any], path: str, value: Any, label: str) -> None:
    keys = path.split(".")
    if not all(keys):
        raise AppConfigError(f"{label}: {path!r} is not a key path like llm.default.model_name")
    for key in keys[:-1]:
        child = target.setdefault(key, {})
        if not isinstance(child, dict):
            raise AppConfigError(f"{label}: {key!r} is set to a value and also used as a section")
        target = child
    target[keys[-1]] = value


def _load_config_file(name: str) -> dict[str, Any]:
    if name == "default":
        return {}
    path = Path(name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if not path.is_file():
        raise AppConfigError(
            f"config {name!r}: no file {path} (the config 'default' is flowbridge's defaults; "
            "flowllm's other bundled configs are not part of flowbridge)"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise AppConfigError(f"config {name!r}: cannot read {path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AppConfigError(f"config {name!r}: {path} must hold a mapping of settings")
    return data


def parse_app_args(args: Sequence[str], kwargs: Mapping[str, Any], config_path: str | None = None) -> dict[str, Any]:
    """The settings ``args`` (``key=value`` texts), ``kwargs`` and ``config_path`` describe, merged.

    :raises AppConfigError: for an argument that is not ``key=value`` or a config that cannot be read.
    """
    configs: list[str] = [config_path] if config_path else []
    dotted: dict[str, Any] = {}
    for arg in args:
        if not isinstance(arg, str) or "=" not in arg:
            raise AppConfigError(f"argument {arg!r} is not key=value (e.g. 'config=default' or "
                                 "'llm.default.model_name=gpt-4o-mini')")
        key, _, text = arg.lstrip("-").partition("=")
        key = key.strip()
        if key in ("c", "config"):
            configs = [part.strip() for part in text.split(",") if part.strip()]
        else:
            _set_path(dotted, key, _read_value(text), f"argument {arg!r}")
    merged: dict[str, Any] = {}
    for name in configs:
        merged = _merge(merged, _load_config_file(name))
    merged = _merge(merged, dotted)
    for key, value in kwargs.items():
        nested: dict[str, Any] = {}
        _set_path(nested, key.replace("__", "."), value, f"argument {key}=")
        merged = _merge(merged, nested)
    return merged


def _model_section(config: dict[str, Any], section: str, variable: str, out: AppConfig) -> None:
    """``llm:`` / ``embedding_model:``: only ``default``, with backend and model_name."""
    entries = config.pop(section)
    if not isinstance(entries, Mapping):
        raise AppConfigError(f"{section}: expected a mapping like {section}.default.model_name")
    for name, entry in entries.items():
        if name != "default":
            raise AppConfigError(f"{section}.{name}: flowbridge has one model setting ({section}.default); "
                                 f"ops asking for {section} {name!r} use it")
        if not isinstance(entry, Mapping):
            raise AppConfigError(f"{section}.default: expected a mapping with model_name")
        for key, value in entry.items():
            if key == "backend":
                if value not in _OPENAI_BACKENDS:
                    raise AppConfigError(f"{section}.default.backend: only 'openai_compatible' is available, "
                                         f"not {value!r}")
            elif key == "model_name":
                if value:
                    out.llm_env[variable] = str(value)
            else:
                raise AppConfigError(f"{section}.default.{key}: not supported by flowbridge "
                                     "(set LLM_* environment variables or pass options per call)")


def _vector_store_section(config: dict[str, Any]) -> None:
    entries = config.pop("vector_store")
    for name, entry in (entries or {}).items() if isinstance(entries, Mapping) else [("", entries)]:
        if name != "default" or not isinstance(entry, Mapping):
            raise AppConfigError(f"vector_store.{name}: only vector_store.default (backend: memory) is available")
        for key, value in entry.items():
            if (key, value) not in (("backend", "memory"), ("embedding_model", "default")):
                raise AppConfigError(f"vector_store.default.{key}={value!r}: only the in-memory vector store "
                                     "(backend: memory, embedding_model: default) is available")


def read_app_config(config: Mapping[str, Any]) -> AppConfig:
    """Map merged settings (see :func:`parse_app_args`) onto flowbridge's.

    :raises AppConfigError: naming the first key that has no meaning here.
    """
    rest = dict(config)
    out = AppConfig()
    for key in _PLAIN_KEYS:
        if key in rest:
            out.overrides[key] = rest.pop(key)
    inline = rest.pop("flow", None)
    flows = rest.pop("flows", None)
    if isinstance(flows, Mapping):
        inline = {**(flows or {}), **(inline or {})}
    elif flows is not None:
        out.overrides["flows"] = str(flows)
    if inline is not None:
        if not isinstance(inline, Mapping):
            raise AppConfigError("flow: expected a mapping of flow name → {flow_content, ...}")
        out.overrides["flow"] = dict(inline)
    if "llm" in rest:
        _model_section(rest, "llm", "LLM_MODEL", out)
    if "embedding_model" in rest:
        _model_section(rest, "embedding_model", "LLM_EMBEDDING_MODEL", out)
    if "vector_store" in rest:
        _vector_store_section(rest)
    if rest:
        key = next(iter(rest))
        raise AppConfigError(f"{key}: not a flowbridge setting (supported: {', '.join(_PLAIN_KEYS)}, flows, flow, "
                             "llm.default.model_name, embedding_model.default.model_name, vector_store.default)")
    return out
