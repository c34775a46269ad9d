"""The contract between the engine and node executors, and their registry.

A node executor is an async callable taking an :class:`ExecutionContext` and
returning a :class:`NodeResult` (or a plain dict of outputs). Raising any
exception fails the node with ``str(exc)`` as its error message.

```python
async def shout(ctx: ExecutionContext) -> NodeResult:
    return NodeResult({"text": ctx.inputs["text"].upper()})

register_node_executor("shout", shout)
```
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .errors import WorkflowError
from .outbound import OutboundURLError, Target, check_outbound_url, parse_outbound_url

if TYPE_CHECKING:
    from llm_client import LLMClient

    from .values import TypedValue


class NodeError(WorkflowError):
    """A node failed; the message is what the report shows (FlowGram's wording where it has one).

    ``snapshot_inputs``, when set, is what the failed node's snapshot shows as its inputs (the http
    node's parsed request, as FlowGram records it before sending).
    """

    snapshot_inputs: dict[str, Any] | None = None


@dataclass
class NodeResult:
    """What an executor returns.

    :param outputs: the node's outputs (only keys declared in ``data.outputs`` become variables).
    :param branch: the output port taken (condition nodes).
    :param snapshot_inputs: what the snapshot shows as inputs, if not the resolved inputs (http).
    """

    outputs: dict[str, Any] = field(default_factory=dict)
    branch: str | None = None
    snapshot_inputs: dict[str, Any] | None = None


@dataclass(frozen=True)
class RuntimeSettings:
    """Per-application settings the executors need.

    :param allowed_hosts: ``host`` or ``host:port`` entries the llm and http nodes may reach.
    :param llm_base_url: the configured LLM server, always allowed; the llm node's default ``apiHost``.
    :param llm_model: the llm node's default ``modelName``.
    :param code_timeout: seconds a code node may run.
    :param code_memory_bytes: memory a code node may use.
    """

    allowed_hosts: frozenset[str] = frozenset()
    llm_base_url: str = ""
    llm_model: str = ""
    code_timeout: float = 10.0
    code_memory_bytes: int = 32 * 1024 * 1024

    @classmethod
    def from_env(cls, environ: Mapping[str, Any] | None = None) -> RuntimeSettings:
        """The settings the web app reads too: ``FLOWBRIDGE_ALLOWED_HOSTS``, ``LLM_BASE_URL`` (or
        ``OPENAI_BASE_URL``) and ``LLM_MODEL`` of ``environ`` (default: ``os.environ``).

        :raises WorkflowConfigError: naming a variable whose value is bad.
        """
        from .environment import settings_from_env  # it imports this module

        return settings_from_env(environ)

    def check_url(self, url: str) -> Target:
        """Where a request to ``url`` connects; :class:`NodeError` naming the problem unless it may.

        The allowed hosts and the configured LLM server's host and port; see :mod:`workflow.outbound`
        for what is refused as ambiguous.
        """
        allowed = set(self.allowed_hosts)
        if self.llm_base_url:
            try:
                allowed.add(parse_outbound_url(self.llm_base_url).authority)
            except OutboundURLError:
                pass  # an LLM_BASE_URL we would not send to ourselves allows nothing
        try:
            return check_outbound_url(url, allowed)
        except OutboundURLError as exc:
            raise NodeError(str(exc)) from None


class ExecutionContext(Protocol):
    """What an executor can see and do while its node runs."""

    #: the node: ``.id``, ``.type``, ``.data`` (everything but title/inputs/outputs/inputsValues),
    #: ``.inputs_schema``, ``.outputs_schema``, ``.inputs_values``
    node: Any
    #: the node's resolved inputs (FlowGram's rules: undeclared, unresolved or mistyped keys dropped)
    inputs: dict[str, Any]
    settings: RuntimeSettings

    @property
    def workflow_inputs(self) -> dict[str, Any]:
        """The task's inputs as the caller gave them (the start node's outputs); do not change them."""

    def parse_inputs(self, schema: dict[str, Any] | None, values: dict[str, Any] | None) -> dict[str, Any]:
        """Resolve a ``{name: flow value}`` mapping against a JSON schema, like node inputs."""

    def resolve(self, flow_value: Any, declared: dict[str, Any] | None = None) -> TypedValue | None:
        """Resolve one flow value (``constant``, ``ref``, ``template``...) in this node's scope, typed as
        ``declared`` (a JSON schema) says; None when it resolves to nothing."""

    def llm_client(self, api_host: str, api_key: str | None) -> LLMClient:
        """The LLM client that sends to ``api_host`` with ``api_key``: the app's own client for the
        configured server (it carries its own key), else a client kept for that host and key. Name the
        model on each call (``model=``). Check the host first: this does not (:meth:`RuntimeSettings.check_url`).

        :raises NodeError: when this task has no way to make LLM clients.
        """

    def render_template(self, text: str) -> str:
        """Resolve ``{{node.key.path}}`` references in ``text`` (FlowGram template rules)."""

    def warn(self, message: str) -> None:
        """Add a warning message to the report, for this node."""

    @property
    def cancelled(self) -> bool:
        """True once the task was canceled: stop as soon as it is safe."""


NodeExecutor = Callable[[ExecutionContext], Awaitable["NodeResult | dict[str, Any]"]]


class BaseNodeExecutor:
    """A node executor written as a class, as ``seeds/003_*`` (FAQ 3) writes custom nodes.

    Override ``async execute(node, context)``; read the node's resolved inputs with
    ``await self._get_node_inputs(node, context)``, hand back outputs by returning them or with
    ``await self._set_node_outputs(node, outputs, context)``; register an instance:
    ``register_node_executor("custom", CustomNodeExecutor())``. An instance is an executor like any
    other (an async callable taking the :class:`ExecutionContext`, which is ``context`` here, and
    ``context.node`` is ``node``), so one instance serves every node of its type, concurrently too:
    keep per-run state in locals, not on ``self``.
    """

    async def execute(self, node: Any, context: ExecutionContext) -> dict[str, Any] | None:
        """Run ``node``; return its outputs (or None after :meth:`_set_node_outputs`)."""
        raise NotImplementedError(f"{type(self).__name__} must define async execute(self, node, context)")

    async def _get_node_inputs(self, node: Any, context: ExecutionContext) -> dict[str, Any]:
        """The node's inputs, resolved as FlowGram resolves them (a copy: change it freely)."""
        return dict(context.inputs)

    async def _set_node_outputs(self, node: Any, outputs: dict[str, Any], context: ExecutionContext) -> None:
        """Make ``outputs`` the node's outputs, unless :meth:`execute` returns others."""
        if not isinstance(outputs, dict):
            raise NodeError(f"{type(self).__name__} set outputs that are not an object: {type(outputs).__name__}")
        set_so_far = _set_outputs.get()
        if set_so_far is None:
            raise NodeError(f"{type(self).__name__} set outputs outside its execute")
        set_so_far.append(dict(outputs))

    async def __call__(self, context: ExecutionContext) -> NodeResult:
        token = _set_outputs.set([])  # this run's (each node runs in its own context)
        try:
            returned = await self.execute(context.node, context)
            if returned is None:
                set_so_far = _set_outputs.get() or [{}]
                return NodeResult(set_so_far[-1])
        finally:
            _set_outputs.reset(token)
        if isinstance(returned, NodeResult):
            return returned
        if not isinstance(returned, dict):
            raise NodeError(f"{type(self).__name__}.execute returned {type(returned).__name__}, "
                            "not an object of outputs")
        return NodeResult(dict(returned))


#: The outputs a :class:`BaseNodeExecutor` set during the run in progress (in this task's context).
_set_outputs: ContextVar[list[dict[str, Any]] | None] = ContextVar("workflow_set_node_outputs", default=None)

_executors: dict[str, NodeExecutor] = {}


def register_node_executor(node_type: str, executor: NodeExecutor) -> None:
    """Install (or replace) the executor of ``node_type``."""
    if not isinstance(node_type, str) or not node_type:
        raise ValueError("node_type must be a non-empty string")
    if not callable(executor):
        raise TypeError(f"the executor of {node_type!r} must be an async callable")
    _executors[node_type] = executor


def get_node_executor(node_type: str) -> NodeExecutor | None:
    return _executors.get(node_type)


def registered_node_types() -> Iterable[str]:
    return tuple(sorted(_executors))
