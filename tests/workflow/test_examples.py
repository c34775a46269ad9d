"""The shipped example workflows (``examples/workflows/*.json``) validate and run to ``succeeded``.

Each runs through :class:`WorkflowApplication` on a :class:`WorkflowRuntime` with a memory
store, its llm and op nodes talking to the fake upstream (which echoes the prompt), with the
inputs the run page would send: the start node's defaults.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_client import LLMClient
from ops import OpApp
from tests.fake_upstream import FakeUpstream
from workflow import RuntimeSettings, TaskValidateAPI, WorkflowApplication, WorkflowRuntime
from workflow.store import MemoryTaskStore
from workflow.validation import validate_task

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples" / "workflows"
NAMES = sorted(path.stem for path in EXAMPLES.glob("*.json"))


def load(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{name}.json").read_text())


def default_inputs(schema: dict[str, Any]) -> dict[str, Any]:
    """The start node's defaults, JSON strings parsed for arrays and objects (as FlowGram stores them)."""
    start = next(n for n in schema["nodes"] if n["type"] == "start")
    inputs = {}
    for name, spec in start["data"]["outputs"]["properties"].items():
        value = spec.get("default")
        if isinstance(value, str) and spec.get("type") in ("array", "object"):
            value = json.loads(value)
        inputs[name] = value
    return inputs


@pytest.fixture
def app(upstream: FakeUpstream) -> Iterator[WorkflowApplication]:
    client = LLMClient(upstream.base_url, env={})
    runtime = WorkflowRuntime(MemoryTaskStore(), RuntimeSettings(llm_base_url=upstream.base_url,
                                                                 llm_model="fake-model"),
                              llm_provider=lambda: client)
    with OpApp(env={"LLM_BASE_URL": upstream.base_url}):
        yield WorkflowApplication(runtime)
    runtime.shutdown()
    client.cleanup()


def test_the_examples_are_there() -> None:
    assert {"branch", "loop", "op_node", "code"} <= set(NAMES)
    for name in NAMES:
        start = next(n for n in load(name)["nodes"] if n["type"] == "start")
        assert start["data"]["title"] not in ("", "Start"), f"{name}: give the start node a descriptive title"
    readme = (EXAMPLES / "README.md").read_text()
    assert all(f"`{name}.json`" in readme for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_example_validates(name: str) -> None:
    schema = load(name)
    assert validate_task(schema, default_inputs(schema)) == []
    answer = asyncio.run(TaskValidateAPI({"schema": json.dumps(schema), "inputs": default_inputs(schema)}))
    assert answer == {"valid": True}  # no errors, and no node type without an executor


@pytest.mark.parametrize("name", NAMES)
def test_every_example_runs_to_succeeded(name: str, app: WorkflowApplication, upstream: FakeUpstream) -> None:
    schema = load(name)
    task_id = app.run(json.dumps(schema), default_inputs(schema), wait=30)
    record = app.runtime.get(task_id)
    assert record is not None
    assert record.status == "succeeded", record.report["messages"]["error"]
    assert record.outputs
    assert all(value not in (None, "") for value in record.outputs.values()), record.outputs


def test_branch_takes_the_branch_asked_for(app: WorkflowApplication, upstream: FakeUpstream) -> None:
    schema = json.dumps(load("branch"))
    for detail, ran, skipped in (("short", "llm_short", "llm_detailed"), ("detailed", "llm_detailed", "llm_short")):
        task_id = app.run(schema, {"question": "Why?", "detail": detail}, wait=30)
        record = app.runtime.get(task_id)
        assert record.status == "succeeded"
        assert record.outputs == {"answer": "echo: Why?", "detail": detail}
        reports = record.report["reports"]
        assert reports[ran]["status"] == "succeeded" and skipped not in reports


def test_loop_collects_one_answer_per_item(app: WorkflowApplication, upstream: FakeUpstream) -> None:
    task_id = app.run(json.dumps(load("loop")), {"topics": ["a", "b"]}, wait=30)
    assert app.result(task_id) == {"topics": ["a", "b"], "sentences": ["echo: Write one sentence about a.",
                                                                       "echo: Write one sentence about b."]}


def test_op_node_chains_two_ops(app: WorkflowApplication, upstream: FakeUpstream) -> None:
    upstream.configure(reply="Bonjour.")
    task_id = app.run(json.dumps(load("op_node")), {"text": "Hello there.", "language": "French"}, wait=30)
    assert app.result(task_id) == {"summary": "Bonjour.", "translation": "Bonjour."}
    assert upstream.stats()["by_path"]["/v1/chat/completions"] == 2


def test_code_counts_words(app: WorkflowApplication) -> None:
    task_id = app.run(json.dumps(load("code")), {"text": "to be or not to be"}, wait=30)
    assert app.result(task_id) == {"words": 6, "unique": ["be", "not", "or", "to"], "shout": "TO BE OR NOT TO BE"}
