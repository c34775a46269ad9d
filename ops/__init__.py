"""The Op framework: ops, tool ops, contexts, composition and flows (flowllm-compatible).

```python
from ops import BaseAsyncOp, C, OpApp

@C.register_op()
class SumOp(BaseAsyncOp):
    async def async_execute(self):
        return self.context["a"] + self.context["b"]

async with OpApp():
    assert await SumOp().async_call(a=1, b=2) == 3
```
"""

from .app import OpApp, configure_services
from .base import BaseAsyncOp, BaseOp
from .compose import ParallelOp, SequentialOp
from .context import BaseContext, FlowContext, FlowResponse, FlowStreamChunk
from .expression import FlowExpression, FlowExpressionError, parse_flow_expression
from .flows import Flow, FlowConfigError, load_flows
from .services import C, ServiceContext
from .tool_call import ToolAttr, ToolCall
from .tool_op import BaseAsyncToolOp

__all__ = [
    "BaseAsyncOp",
    "BaseAsyncToolOp",
    "BaseContext",
    "BaseOp",
    "C",
    "Flow",
    "FlowConfigError",
    "FlowContext",
    "FlowExpression",
    "FlowExpressionError",
    "FlowResponse",
    "FlowStreamChunk",
    "OpApp",
    "ParallelOp",
    "SequentialOp",
    "ServiceContext",
    "ToolAttr",
    "ToolCall",
    "configure_services",
    "load_flows",
    "parse_flow_expression",
]
