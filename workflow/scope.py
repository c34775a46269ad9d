"""What one node sees while it runs: the variables of its scope and the executor context.

A task runs in a :class:`Scope` (a loop iteration gets a child scope whose
:class:`VariableStore` falls back to its parent's); each node gets a
:class:`NodeContext`, the engine's implementation of
:class:`~workflow.executor.ExecutionContext`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .document import WorkflowNode
from .executor import NodeError
from .values import TypedValue, parse_inputs, render_template, resolve_flow_value

if TYPE_CHECKING:
    from .engine import TaskRun


class VariableStore:
    """Node outputs as typed variables; a loop iteration gets a child that falls back to its parent."""

    def __init__(self, parent: VariableStore | None = None) -> None:
        self.parent = parent
        self.values: dict[str, dict[str, TypedValue]] = {}

    def set(self, node_id: str, key: str, value: TypedValue) -> None:
        self.values.setdefault(node_id, {})[key] = value

    def get(self, node_id: str, key: str) -> TypedValue | None:
        scope = self
        while scope is not None:
            found = scope.values.get(node_id, {}).get(key)
            if found is not None:
                return found
            scope = scope.parent
        return None


@dataclass
class Scope:
    """Where a (sub-)workflow runs: the whole task, or one loop iteration."""

    store: VariableStore
    executed: set[str] = field(default_factory=set)
    #: nodes that started in this scope: a join starts once, however many predecessors reach it
    started: set[str] = field(default_factory=set)
    flags: set[str] = field(default_factory=set)  # "loop-break", "loop-continue"


class NodeContext:
    """The :class:`~workflow.executor.ExecutionContext` given to executors."""

    def __init__(self, run: TaskRun, scope: Scope, node: WorkflowNode, inputs: dict[str, Any]) -> None:
        self.run = run
        self.scope = scope
        self.node = node
        self.inputs = inputs
        self.settings = run.settings

    @property
    def workflow_inputs(self) -> dict[str, Any]:
        return self.run.state.inputs

    def llm_client(self, api_host: str, api_key: str | None) -> Any:
        """The runtime's client for ``api_host`` and ``api_key`` (:meth:`WorkflowRuntime.llm_client`)."""
        if self.run.runtime is None:
            raise NodeError("the llm node needs a WorkflowRuntime for its LLM client; this task runs without one")
        return self.run.runtime.llm_client(api_host, api_key)

    def lookup(self, node_id: str, key: str) -> TypedValue | None:
        return self.run.lookup(self.scope, node_id, key)

    def parse_inputs(self, schema: dict[str, Any] | None, values: dict[str, Any] | None) -> dict[str, Any]:
        return parse_inputs(schema, values, self.lookup, self.warn)

    def render_template(self, text: str) -> str:
        return render_template(text, self.lookup)

    def resolve(self, flow_value: dict[str, Any], declared: dict[str, Any] | None = None) -> TypedValue | None:
        return resolve_flow_value(flow_value, declared, self.lookup)

    def warn(self, message: str) -> None:
        self.run.state.add_message("warning", f'node "{self.node.id}": {message}', self.node.id)

    @property
    def cancelled(self) -> bool:
        return self.run.cancelled
