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

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .outbound import OutboundURLError, Target, check_outbound_url, parse_outbound_url


class NodeError(Exception):
    """A node failed; the message is what the report shows (FlowGram's wording where it has one)."""


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

    def parse_inputs(self, schema: dict[str, Any] | None, values: dict[str, Any] | None) -> dict[str, Any]:
        """Resolve a ``{name: flow value}`` mapping against a JSON schema, like node inputs."""

    def render_template(self, text: str) -> str:
        """Resolve ``{{node.key.path}}`` references in ``text`` (FlowGram template rules)."""

    def warn(self, message: str) -> None:
        """Add a warning message to the report, for this node."""

    @property
    def cancelled(self) -> bool:
        """True once the task was canceled: stop as soon as it is safe."""


NodeExecutor = Callable[[ExecutionContext], Awaitable["NodeResult | dict[str, Any]"]]

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
