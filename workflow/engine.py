"""Runs one workflow task: FlowGram's scheduling, variables, loops, cancel and reports.

A node runs once all its predecessors ran or were skipped; independent
branches run concurrently; a condition's untaken branches are skipped (no
report); loop iterations run in turn, each in a child scope.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .document import TERMINAL_TYPES, WorkflowDocument, WorkflowNode
from .executor import NodeError, NodeResult, RuntimeSettings, get_node_executor
from .javascript import ArrayItemsTypeError, js_object_keys, js_truthy, same_items_type
from .report import TaskState, storable_text
from .storable import UnstorableValue, check_storable
from .scope import NodeContext, Scope, VariableStore
from .values import TypedValue, infer_typed, output_defaults, resolve_flow_value

LOCALS_SUFFIX = "_locals"


class TaskCanceled(Exception):
    """The task was canceled; raised to unwind, never reported as an error."""


class TaskDeadline(Exception):
    """The task ran past its deadline."""


@dataclass
class Limits:
    """Bounds that end runaway tasks as failed."""

    #: seconds a task may run (None = no limit)
    deadline: float | None = 600.0
    #: iterations one loop node may run
    max_loop_iterations: int = 10_000


class TaskRun:
    """One execution of a workflow document.

    :param on_change: called after every status change (the task store saves progress there).
    :param is_cancel_requested: polled before each node and loop iteration (a flag in the store).
    """

    def __init__(
        self,
        document: WorkflowDocument,
        state: TaskState,
        settings: RuntimeSettings,
        *,
        limits: Limits | None = None,
        runtime: Any = None,
        on_change: Callable[[TaskRun], None] | None = None,
        is_cancel_requested: Callable[[], bool] | None = None,
    ) -> None:
        self.document = document
        self.state = state
        self.settings = settings
        self.limits = limits or Limits()
        self.runtime = runtime
        self._on_change = on_change or (lambda run: None)
        self._is_cancel_requested = is_cancel_requested or (lambda: False)
        self.cancelled = False
        self.globals = self._global_variables()
        self._started = time.monotonic()

    # -- variables ---------------------------------------------------------------------

    def _global_variables(self) -> dict[str, TypedValue]:
        schema = self.document.global_schema
        declared = schema.get("properties") if isinstance(schema, dict) else None
        if not isinstance(declared, dict):
            return {}  # nothing declared (JS reads no properties of a string or an array either)
        defaults = output_defaults(schema)
        return {key: _typed(defaults.get(key), spec if isinstance(spec, dict) else None)
                for key, spec in declared.items()}

    def lookup(self, scope: Scope, node_id: str, key: str) -> TypedValue | None:
        if node_id == "global":
            return self.globals.get(key)
        return scope.store.get(node_id, key)

    # -- control -----------------------------------------------------------------------

    def changed(self) -> None:
        self._on_change(self)

    def check_continue(self) -> None:
        """Raise if the task was canceled or ran past its deadline."""
        if not self.cancelled and self._is_cancel_requested():
            self.cancel()
        if self.cancelled:
            raise TaskCanceled()
        deadline = self.limits.deadline
        if deadline is not None and time.monotonic() - self._started > deadline:
            raise TaskDeadline(f"Task exceeded its deadline of {deadline:g}s")

    def cancel(self) -> None:
        """Mark the workflow and every processing node canceled (running executors are not aborted)."""
        if self.state.workflow.terminated:
            return
        self.cancelled = True
        self.state.workflow.set("canceled")
        for status in self.state.nodes.values():
            if status.status == "processing":
                status.set("canceled")
        self.changed()

    def fail(self, message: str | None) -> None:
        """End the workflow failed (unless it already ended): ``message`` (if any) in ``messages.error``,
        every processing node failed, outputs ``{}``. The caller saves (:meth:`changed`)."""
        state = self.state
        if state.workflow.terminated:
            return
        if message is not None:
            state.add_message("error", message)
        for status in state.nodes.values():
            if status.status == "processing":
                status.set("failed")
        state.outputs = {}
        state.workflow.set("failed")

    # -- running ----------------------------------------------------------------------------

    async def process(self) -> dict[str, Any]:
        """Run from the start node; returns the workflow outputs ({} unless succeeded).

        Every way to fail leaves its reason in ``messages.error``: a node's own error, the
        deadline, or whatever else was raised.
        """
        state = self.state
        state.workflow.set("processing")
        self.changed()
        scope = Scope(VariableStore())
        try:
            await self.execute_node(self.document.start, scope)
            if not self.cancelled:
                self._note_end_not_reached(scope)
        except TaskCanceled:
            return {}
        except Exception as exc:
            if self.cancelled:
                return {}
            if isinstance(exc, TaskDeadline) or not state.messages["error"]:  # not recorded by a node
                self.fail(str(exc) or type(exc).__name__)
            else:
                self.fail(None)
            self.changed()
            return {}
        if self.cancelled:
            return {}
        state.workflow.set("succeeded")
        self.changed()
        return state.outputs

    def _note_end_not_reached(self, scope: Scope) -> None:
        """Say in the report's warnings what the end node waited for if the run finished without it.

        FlowGram's engine ends such a run ``succeeded`` with outputs ``{}`` (a join whose other
        predecessor never ran stays silent); so do we, but the warning says why the outputs are empty.
        """
        end = self.document.find("end")
        if end is None or end.id in scope.executed:
            return
        waiting = [prev for prev in end.prev if prev not in scope.executed]
        names = ", ".join(f'"{n}"' for n in waiting)
        why = (f"it waits for {names}, which never ran" if waiting
               else "no path from the start node leads to it")
        self.state.add_message("warning", f'The end node "{end.id}" was not reached: {why}; the outputs are empty',
                               end.id)

    async def execute_node(self, node: WorkflowNode, scope: Scope) -> None:
        """Run ``node`` and what follows it: a chain in this loop (no recursion, so
        chains of any length work), fan-outs concurrently."""
        current: WorkflowNode | None = node
        while current is not None:
            targets = await self._execute_one(current, scope)
            if targets is None:
                return
            if len(targets) == 1:
                current = targets[0]
                continue
            if targets:
                await _gather_all(self.execute_node(target, scope) for target in targets)
            return

    async def _execute_one(self, node: WorkflowNode, scope: Scope) -> list[WorkflowNode] | None:
        """Run one node; returns the nodes to run next ([] at the end of a path), or None if it must
        not run yet (a join) or the task was canceled. A branch with no edge fails the node."""
        if node.id in scope.started or any(prev not in scope.executed for prev in node.prev):
            return None  # a join: the first caller that finds every predecessor done runs it, once
        # no await between the check above and this line: deciding and starting are one step
        scope.started.add(node.id)
        self.check_continue()
        status = self.state.node_status(node.id)
        status.set("processing")
        snapshot = self.state.new_snapshot(node.id, node.data)
        self.changed()
        try:
            context = NodeContext(self, scope, node, {})
            context.inputs = self._node_inputs(node, context)
            snapshot["inputs"] = dict(context.inputs)
            result = await self._run_executor(node, context, scope)
            if self.cancelled:
                return None
            _check_result(node, result)
            snapshot["outputs"] = result.outputs
            if result.snapshot_inputs is not None:
                snapshot["inputs"] = result.snapshot_inputs
            if result.branch is not None:
                snapshot["branch"] = result.branch
            self._set_outputs(node, result.outputs, scope)
            targets = self._next_nodes(node, result, scope)
            scope.executed.add(node.id)
            status.set("succeeded")
            self.changed()
            return targets
        except (TaskCanceled, TaskDeadline):
            raise
        except Exception as exc:
            if self.cancelled:
                raise TaskCanceled() from exc
            message = storable_text(str(exc) or type(exc).__name__)
            snapshot["error"] = message
            if isinstance(exc, NodeError) and exc.snapshot_inputs is not None:
                snapshot["inputs"] = exc.snapshot_inputs
            self.state.add_message("error", message, node.id)
            status.set("failed")
            self.changed()
            raise

    def _node_inputs(self, node: WorkflowNode, context: NodeContext) -> dict[str, Any]:
        if node.type == "start":
            return {}
        return context.parse_inputs(node.inputs_schema, node.inputs_values)

    async def _run_executor(self, node: WorkflowNode, context: NodeContext, scope: Scope) -> NodeResult:
        if node.type == "loop":
            return await self._run_loop(node, context, scope)
        executor = get_node_executor(node.type)
        if executor is None:
            raise NodeError(f"No executor found for node type {node.type}")
        result = await executor(context)
        return result if isinstance(result, NodeResult) else NodeResult(dict(result or {}))

    def _set_outputs(self, node: WorkflowNode, outputs: dict[str, Any], scope: Scope) -> None:
        if node.type == "start":
            outputs = {**output_defaults(node.outputs_schema), **outputs}
        if node.type == "loop":
            for key, value in outputs.items():
                scope.store.set(node.id, key, infer_typed(value))
            return
        declared = (node.outputs_schema or {}).get("properties") or {}
        defaults = output_defaults(node.outputs_schema)
        for key, schema in declared.items():
            value = outputs.get(key)
            scope.store.set(node.id, key, _typed(value if value is not None else defaults.get(key), schema))
        if node.type == "end":
            self.state.outputs = dict(outputs)

    def _next_nodes(self, node: WorkflowNode, result: NodeResult, scope: Scope) -> list[WorkflowNode]:
        if node.type in TERMINAL_TYPES:
            if node.type in ("break", "continue"):
                scope.flags.add(f"loop-{node.type}")
            return []
        if result.branch is not None:
            if not isinstance(result.branch, str):
                raise NodeError(f"Condition key must be a string, got {type(result.branch).__name__}")
            taken = node.next_by_port.get(result.branch, [])
            if not taken:
                raise NodeError(f'Branch "{result.branch}" not found')
            others = [t for port, targets in node.next_by_port.items() if port != result.branch for t in targets]
            # the walk from `taken` is the costly one (the rest of the graph): only when something may be skipped
            skipped = self.document.reachable(others) if others else set()
            if skipped:
                skipped -= self.document.reachable(taken)
            scope.executed.update(skipped)
            targets = taken
        else:
            targets = node.next
        if not targets:
            raise NodeError(f'Node "{node.id}" has no next nodes')
        return [self.document.nodes[t] for t in targets]

    # -- loops ---------------------------------------------------------------------------------

    async def _run_loop(self, node: WorkflowNode, context: NodeContext, scope: Scope) -> NodeResult:
        entries = _loop_entries(context)
        block_start = self.document.find("block-start", node.id)
        if block_start is None:
            raise NodeError("Loop block start node not found")
        loop_outputs: dict[str, Any] = node.data.get("loopOutputs") or {}
        if not isinstance(loop_outputs, dict):
            raise NodeError(f'Loop "loopOutputs" must be an object, got {type(loop_outputs).__name__}')
        collected: dict[str, list[Any]] = {name: [] for name in loop_outputs}
        collected_types: dict[str, list[str]] = {name: [] for name in loop_outputs}
        if len(entries) > self.limits.max_loop_iterations:
            raise NodeError(
                f'Loop "{node.id}" would run {len(entries)} iterations; the limit is {self.limits.max_loop_iterations}'
            )
        for index, (key, item) in enumerate(entries):
            self.check_continue()
            sub = Scope(VariableStore(scope.store))
            locals_id = node.id + LOCALS_SUFFIX
            sub.store.set(locals_id, "item", item)
            sub.store.set(locals_id, "index", TypedValue(index, "number"))
            if key is not None:
                sub.store.set(locals_id, "key", TypedValue(key, "string"))
            try:
                await self.execute_node(block_start, sub)
            except (TaskCanceled, TaskDeadline):
                raise
            except Exception as exc:
                if self.cancelled:
                    raise TaskCanceled() from exc
                raise NodeError("Loop block execute error") from exc
            if "loop-break" in sub.flags:
                break
            if "loop-continue" in sub.flags:
                continue
            for name, ref in loop_outputs.items():
                value = resolve_flow_value(ref, None, lambda n, k: self.lookup(sub, n, k))
                if value is None:
                    continue
                collected_types[name].append(value.type)
                collected[name].append(value.value)
        for types in collected_types.values():  # checked once every iteration ran, as FlowGram does
            try:
                same_items_type(types)
            except ArrayItemsTypeError as exc:
                raise NodeError(str(exc)) from None
        return NodeResult(collected)


def _loop_entries(context: NodeContext) -> list[tuple[str | None, TypedValue]]:
    """What a loop iterates: ``(key, item)`` per array element or object entry, FlowGram's checks and words.

    An array's items all get the array's items type (declared, or element 0's); an object's
    values each get their own type, as upstream main does.
    """
    loop_for = context.node.data.get("loopFor")
    typed = context.resolve(loop_for) if isinstance(loop_for, dict) else None
    if typed is None or not js_truthy(typed.value):
        raise NodeError('Loop "loopFor" is required')
    if typed.type == "array":
        if not isinstance(typed.value, list):
            raise NodeError('Loop "loopFor" must be an array or object')
        if typed.items_type is None:
            raise NodeError('Loop "loopFor.items" must be array items')
        return [(None, TypedValue(item, typed.items_type, infer_typed(item).items_type)) for item in typed.value]
    if typed.type != "object" or not isinstance(typed.value, dict):
        raise NodeError('Loop "loopFor" must be an array or object')
    return [(key, infer_typed(typed.value[key])) for key in js_object_keys(typed.value)]


def _check_result(node: WorkflowNode, result: NodeResult) -> None:
    """Fail the node, naming it and the problem, if what it returned cannot be stored (:mod:`.storable`)."""
    try:
        check_storable(result.outputs, "outputs")
        if result.snapshot_inputs is not None:
            check_storable(result.snapshot_inputs, "inputs")
    except UnstorableValue as exc:
        raise NodeError(f'Node "{node.id}" returned a value that cannot be stored: {exc}') from None


def _typed(value: Any, schema: dict[str, Any] | None) -> TypedValue:
    """A variable with its declared type (FlowGram keeps declared types for whole refs)."""
    if not schema or "type" not in schema:
        return infer_typed(value)
    items = schema.get("items") or {}
    return TypedValue(value, schema["type"], items.get("type") if isinstance(items, dict) else None)


async def _gather_all(coros: Any) -> None:
    """Run concurrently; on the first failure cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
