"""The models of ``/v1``: the upstream's, ``flow/<name>`` and ``workflow/<name>``, and how a chat feeds them.

* **Upstream models**: ``LLM_MODEL`` (and ``LLM_EMBEDDING_MODEL`` for embeddings), plus any names in
  ``FLOWBRIDGE_OPENAI_MODELS`` (comma-separated), sent to the upstream as they are.
* **Flows** (``FLOWBRIDGE_FLOWS``): a flow that declares a ``messages`` input gets the whole
  conversation there; any other gets the last user message as its text input (``query`` when it has
  one, else its single required string input) and the conversation as ``conversation``. A last user
  message that is a JSON object of the flow's inputs is taken as those inputs.
* **Workflows** (every ``*.json`` of ``FLOWBRIDGE_WORKFLOWS_DIR``, default ``examples/workflows/``):
  the last user message goes to the start node's single free-text input (a string without ``enum``),
  or, as a JSON object, is the start node's inputs. The answer is the end node's outputs: one string
  output as text, anything else as JSON.

Each model's ``input`` in ``GET /v1/models`` says which of these applies to it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import current_app

from ops import C, Flow

from ..guards.jsonbody import JSONInputError, loads_json

__all__ = ["Model", "ModelInputError", "answer_text", "find_model", "list_models", "message_text",
           "model_inputs", "upstream_names"]

FLOW_PREFIX = "flow/"
WORKFLOW_PREFIX = "workflow/"
#: Largest workflow file read from the folder (bytes); bigger ones are skipped and logged by /v1/models.
MAX_WORKFLOW_BYTES = 2 * 1024 * 1024


class ModelInputError(ValueError):
    """The conversation cannot be fed to the model; the message says what the model takes."""


@dataclass(frozen=True)
class Model:
    """One model of ``/v1/models``.

    :param kind: ``"upstream"``, ``"flow"`` or ``"workflow"``.
    :param text_input: the input the last user message goes to (None: a JSON object of inputs only).
    :param inputs: every input name the flow or workflow declares.
    """

    id: str
    kind: str
    description: str = ""
    text_input: str | None = None
    inputs: tuple[str, ...] = ()
    conversation_input: bool = False  # a flow taking the whole conversation as ``messages``
    #: a workflow's start node defaults, for the inputs a chat does not give
    defaults: Mapping[str, Any] = field(default_factory=dict, compare=False)
    flow: Flow | None = field(default=None, compare=False)
    schema: dict[str, Any] | None = field(default=None, compare=False)
    created: int = 0

    @property
    def input_doc(self) -> str:
        """What ``GET /v1/models`` says this model takes."""
        if self.kind == "upstream":
            return "the conversation, sent to the upstream LLM server as it is"
        if self.conversation_input:
            return "messages: the whole conversation"
        names = ", ".join(self.inputs) or "none"
        if self.text_input is None:
            return f"the last user message as a JSON object of the inputs ({names})"
        extra = ", and the conversation as 'conversation'" if self.kind == "flow" else ""
        return (f"{self.text_input}: the last user message (or that message as a JSON object of the "
                f"inputs: {names}){extra}")

    def describe(self) -> dict[str, Any]:
        owner = {"upstream": "upstream", "flow": "flowbridge-flow", "workflow": "flowbridge-workflow"}[self.kind]
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": owner,
                "description": self.description, "input": self.input_doc}


# -- the registry -----------------------------------------------------------------------------------

def upstream_names(embeddings: bool = False) -> list[str]:
    """The upstream model names ``/v1`` accepts for chats, the configured one first; for embeddings, the
    one the client embeds with (``LLM_EMBEDDING_MODEL``, else ``LLM_MODEL``)."""
    settings = current_app.extensions["flowbridge"]["settings"]
    if embeddings:
        return [settings.embeddings_model]
    names = [settings.model]
    extra = str(current_app.config.get("FLOWBRIDGE_OPENAI_MODELS") or "")
    names += [n.strip() for n in extra.split(",") if n.strip()]
    return list(dict.fromkeys(names))


def list_models() -> list[Model]:
    """Every model, upstream first, then flows and workflows by name."""
    models = [Model(name, "upstream", "a model of the upstream LLM server") for name in upstream_names()]
    models += [_flow_model(name, flow) for name, flow in sorted(C.flows.items())]
    models += [m for m in (_workflow_model(path) for path in _workflow_files()) if m is not None]
    return models


def find_model(name: str) -> Model | None:
    """The model called ``name``; None when there is none."""
    if name.startswith(FLOW_PREFIX):
        flow = C.flows.get(name[len(FLOW_PREFIX):])
        return _flow_model(name[len(FLOW_PREFIX):], flow) if flow is not None else None
    if name.startswith(WORKFLOW_PREFIX):
        stem = name[len(WORKFLOW_PREFIX):]
        folder = _workflows_dir()
        path = folder / f"{stem}.json"
        if not stem or "/" in stem or "\\" in stem or stem.startswith(".") or path not in _workflow_files():
            return None
        return _workflow_model(path)
    return Model(name, "upstream") if name in upstream_names() else None


def _flow_model(name: str, flow: Flow) -> Model:
    schema = flow.tool_call.input_schema
    names = tuple(schema)
    strings = [n for n, attr in schema.items() if attr.type == "string" and not attr.enum]
    required = [n for n in strings if schema[n].required]
    text = "query" if "query" in strings else (required[0] if len(required) == 1 else
                                              (strings[0] if len(strings) == 1 else None))
    conversation = "messages" in schema and schema["messages"].type == "array"
    return Model(FLOW_PREFIX + name, "flow", flow.description, text, names, conversation, flow=flow)


def _workflows_dir() -> Path:
    folder = Path(str(current_app.config.get("FLOWBRIDGE_WORKFLOWS_DIR") or "examples/workflows"))
    return folder if folder.is_absolute() else Path(current_app.root_path).parent / folder


def _workflow_files() -> list[Path]:
    folder = _workflows_dir()
    try:
        return sorted(p for p in folder.glob("*.json") if p.is_file() and not p.name.startswith("."))
    except OSError:
        return []


_cache: dict[Path, tuple[float, Model | None]] = {}
_cache_lock = threading.Lock()


def _workflow_model(path: Path) -> Model | None:
    """The model of one workflow file (read again only when the file changed); None if it is no workflow."""
    try:
        stat = path.stat()
    except OSError:
        return None
    with _cache_lock:
        cached = _cache.get(path)
    if cached is not None and cached[0] == stat.st_mtime:
        return cached[1]
    model = None
    try:
        if stat.st_size <= MAX_WORKFLOW_BYTES:
            model = _read_workflow(path, json.loads(path.read_text(encoding="utf-8")), int(stat.st_mtime))
    except (OSError, ValueError):
        model = None
    with _cache_lock:
        _cache[path] = (stat.st_mtime, model)
    return model


def _read_workflow(path: Path, schema: Any, created: int) -> Model | None:
    nodes = schema.get("nodes") if isinstance(schema, dict) else None
    start = next((n for n in nodes or () if isinstance(n, dict) and n.get("type") == "start"), None)
    if start is None:
        return None
    data = start.get("data") if isinstance(start.get("data"), dict) else {}
    outputs = data.get("outputs") if isinstance(data.get("outputs"), dict) else {}
    props = outputs.get("properties") if isinstance(outputs.get("properties"), dict) else {}
    names = tuple(props)
    strings = [n for n, p in props.items() if isinstance(p, dict) and p.get("type") == "string" and not p.get("enum")]
    title = data.get("title") if isinstance(data.get("title"), str) else path.stem
    defaults = {n: _default(p) for n, p in props.items() if isinstance(p, dict) and "default" in p}
    return Model(WORKFLOW_PREFIX + path.stem, "workflow", title, strings[0] if len(strings) == 1 else None,
                 names, schema=schema, created=created, defaults=defaults)


def _default(prop: dict[str, Any]) -> Any:
    """A start input's default as a value of its type: the editor keeps arrays, objects, numbers and
    booleans as their JSON text (``"[\\"rivers\\"]"``), which the Workflows page parses too."""
    value, kind = prop["default"], prop.get("type")
    if isinstance(value, str) and kind in ("array", "object", "integer", "number", "boolean"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


# -- a conversation as a model's inputs, its answer as text ---------------------------------------------

def message_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, Mapping) and p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


def model_inputs(model: Model, messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The inputs a chat with ``messages`` gives a flow or workflow model.

    :raises ModelInputError: no user message, or one the model cannot take.
    """
    if model.conversation_input:
        return {"messages": [dict(m) for m in messages]}
    users = [m for m in messages if m.get("role") == "user"]
    if not users:
        raise ModelInputError(f"{model.id} needs a user message: its input is {model.input_doc}")
    text = message_text(users[-1].get("content"))
    as_object = _json_object(text)
    if as_object is not None and (model.text_input is None or set(as_object) <= set(model.inputs)):
        inputs = as_object
    elif model.text_input is not None:
        inputs = {model.text_input: text}
    else:
        raise ModelInputError(f"{model.id} takes {model.input_doc}; the last user message is not a JSON object")
    if model.kind == "flow":
        inputs.setdefault("conversation", [dict(m) for m in messages])
    for name, value in model.defaults.items():
        inputs.setdefault(name, value)
    return inputs


def _json_object(text: str) -> dict[str, Any] | None:
    """The user message as a JSON object; None when it is not one (it is then the model's text input).

    :raises ModelInputError: JSON past the limits of request bodies (too deep, a lone surrogate...).
    """
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None
    try:
        value = loads_json(stripped, "the last user message")
    except JSONInputError as exc:
        if exc.syntax:
            return None
        raise ModelInputError(str(exc)) from None
    return value if isinstance(value, dict) else None


def answer_text(value: Any) -> str:
    """A flow's answer or a workflow's outputs as the assistant's text: one string as it is, else JSON."""
    if isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value.values())), str):
        return next(iter(value.values()))
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)

