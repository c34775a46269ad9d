"""Flows: named op expressions declared in YAML, run on a fresh op tree per call.

```yaml
flows:
  summarize_chat:
    flow_content: "ChatOp() >> SummarizeOp(max_words=50)"
    description: "Answer, then summarise the answer"
    stream: false
    input_schema:
      query: {type: string, description: "the question", required: true}
```
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .base import BaseOp
from .context import FlowContext, FlowResponse
from .expression import FlowExpression, FlowExpressionError
from .tool_call import ToolAttr, ToolCall
from .tool_op import BaseAsyncToolOp


class FlowConfigError(ValueError):
    """A flows file or flow declaration is invalid; the message names the flow and field."""


class FlowSpec(BaseModel):
    """One entry under ``flows:``."""

    model_config = ConfigDict(extra="forbid")

    flow_content: str = Field(min_length=1)
    description: str = ""
    stream: bool = False
    input_schema: dict[str, ToolAttr] = Field(default_factory=dict)


class Flow:
    """A named, checked flow expression.

    :raises FlowExpressionError: if the expression uses anything but registered ops.
    """

    def __init__(self, name: str, spec: FlowSpec, ops: Mapping[str, type[BaseOp]]) -> None:
        self.name = name
        self.spec = spec
        self.expression = FlowExpression(spec.flow_content, ops)

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def stream(self) -> bool:
        return self.spec.stream

    @property
    def tool_call(self) -> ToolCall:
        """The flow as a tool: its declared inputs, else those of its single tool op."""
        schema = self.spec.input_schema
        if not schema:
            root = self.expression.root_op_name()
            if root is not None:
                op = self.expression.build()
                if isinstance(op, BaseAsyncToolOp):
                    schema = op.tool_call.input_schema
        return ToolCall(name=self.name, description=self.description, input_schema=dict(schema))

    def build(self) -> BaseOp:
        return self.expression.build()

    async def run(self, context: FlowContext | None = None, **inputs: Any) -> FlowResponse:
        """Run the flow on a new op tree; returns ``context.response``.

        Errors raise (ops default to ``raise_exception=True``).
        """
        context = context if context is not None else FlowContext()
        context.update(inputs)
        context["stream"] = self.stream
        op = self.build()
        from .compose import run_op

        await run_op(op, context)
        return context.response

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "stream": self.stream,
            "flow_content": self.spec.flow_content,
            "tool": self.tool_call.simple_input_dump(),
        }


def parse_flows(data: Any, ops: Mapping[str, type[BaseOp]], source: str = "flows") -> dict[str, Flow]:
    """Flows from the parsed YAML document ``{"flows": {name: spec}}``."""
    if data is None:
        return {}
    if not isinstance(data, Mapping) or not isinstance(data.get("flows", {}), Mapping):
        raise FlowConfigError(f"{source}: expected a mapping with a 'flows:' mapping of name → flow")
    flows: dict[str, Flow] = {}
    for name, raw in (data.get("flows") or {}).items():
        try:
            spec = FlowSpec.model_validate(raw if raw is not None else {})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'flow'}: {err['msg']}" for err in exc.errors()
            )
            raise FlowConfigError(f"{source}: flow {name!r}: {problems}") from None
        try:
            flows[str(name)] = Flow(str(name), spec, ops)
        except FlowExpressionError as exc:
            raise FlowConfigError(f"{source}: flow {name!r}: {exc}") from None
    return flows


def load_flows(path: str | Path, ops: Mapping[str, type[BaseOp]] | None = None) -> dict[str, Flow]:
    """Read a flows YAML file (``yaml.safe_load``).

    :raises FlowConfigError: naming the file, the flow and what is wrong.
    """
    from .services import C

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowConfigError(f"cannot read flows file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FlowConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_flows(data, C.ops if ops is None else ops, source=str(path))
