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

from .app import FlowLLMApp, OpApp, configure_services
from .app_config import AppConfigError
from .base import BaseAsyncOp, BaseOp
from .cache_handler import CacheHandler
from .compose import ParallelOp, SequentialOp
from .context import BaseContext, FlowContext, FlowResponse
from .expression import FlowExpression, FlowExpressionError, parse_flow_expression
from .flows import Flow, FlowConfigError, load_flows
from .mcp_client import McpServerError, configure_mcp_servers
from .mcp_tool_op import BaseMcpOp, McpToolOp
from .schema import ChunkEnum, ContentBlock, FlowStreamChunk, Message, Role, Trajectory
from .services import C, ServiceContext
from .tool_call import ToolAttr, ToolCall
from .tool_op import BaseAsyncToolOp
from .utils import extract_content, format_messages, merge_messages_content, parse_message_by_keys, token_count

__all__ = [
    "AppConfigError",
    "BaseAsyncOp",
    "BaseAsyncToolOp",
    "BaseContext",
    "BaseMcpOp",
    "BaseOp",
    "C",
    "CacheHandler",
    "ChunkEnum",
    "ContentBlock",
    "Flow",
    "FlowConfigError",
    "FlowContext",
    "FlowExpression",
    "FlowExpressionError",
    "FlowLLMApp",
    "FlowResponse",
    "FlowStreamChunk",
    "McpServerError",
    "McpToolOp",
    "Message",
    "OpApp",
    "ParallelOp",
    "Role",
    "SequentialOp",
    "ServiceContext",
    "ToolAttr",
    "ToolCall",
    "Trajectory",
    "configure_mcp_servers",
    "configure_services",
    "extract_content",
    "format_messages",
    "load_flows",
    "merge_messages_content",
    "parse_flow_expression",
    "parse_message_by_keys",
    "token_count",
]
