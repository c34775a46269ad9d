"""A FlowGram-compatible workflow runtime: schema JSON in, FlowGram report JSON out.

```python
from workflow import TaskRunAPI, TaskReportAPI

task = await TaskRunAPI({"schema": schema_json, "inputs": {"query": "hi"}})
report = await TaskReportAPI({"taskID": task["taskID"]})
```

Custom node types: ``register_node_executor("my-type", async_executor)``.
"""

from .api import (
    TaskCancelAPI,
    TaskReportAPI,
    TaskResultAPI,
    TaskRunAPI,
    TaskValidateAPI,
    WorkflowApplication,
    default_runtime,
    set_default_runtime,
)
from .application import TaskCapacityError, WorkflowRuntime
from .engine import Limits
from .errors import WorkflowError
from .executor import (
    ExecutionContext,
    NodeError,
    NodeResult,
    RuntimeSettings,
    get_node_executor,
    register_node_executor,
)
from .nodes.basic import register_builtin_executors
from .request import WorkflowInputError
from .outbound import OutboundURLError, check_outbound_url, parse_allowed_host, parse_outbound_url

register_builtin_executors()

__all__ = [
    "ExecutionContext",
    "Limits",
    "NodeError",
    "NodeResult",
    "OutboundURLError",
    "RuntimeSettings",
    "TaskCancelAPI",
    "TaskCapacityError",
    "TaskReportAPI",
    "TaskResultAPI",
    "TaskRunAPI",
    "TaskValidateAPI",
    "WorkflowApplication",
    "WorkflowError",
    "WorkflowInputError",
    "WorkflowRuntime",
    "check_outbound_url",
    "default_runtime",
    "get_node_executor",
    "parse_allowed_host",
    "parse_outbound_url",
    "register_node_executor",
    "set_default_runtime",
]
