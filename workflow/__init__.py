"""A FlowGram-compatible workflow runtime: schema JSON in, FlowGram report JSON out.

```python
from workflow import TaskRunAPI, TaskReportAPI

task = await TaskRunAPI({"schema": schema_json, "inputs": {"query": "hi"}})
report = await TaskReportAPI({"taskID": task["taskID"]})
```

Custom node types: ``register_node_executor("my-type", async_executor)``, or an instance of a
:class:`BaseNodeExecutor` subclass (``async def execute(self, node, context)``).
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
from .environment import (
    ENV_DEFAULTS,
    LLM_PREFIXES,
    WorkflowConfigError,
    parse_allowed_hosts,
    read_environment,
    runtime_from_env,
)
from .errors import WorkflowError
from .executor import (
    BaseNodeExecutor,
    ExecutionContext,
    NodeError,
    NodeResult,
    RuntimeSettings,
    get_node_executor,
    register_node_executor,
)
from .nodes.basic import register_builtin_executors
from .queue import TaskQueue, TaskQueueError
from .outbound import OutboundURLError, check_outbound_url, parse_allowed_host, parse_outbound_url
from .report import STATUSES, TERMINAL_STATUSES, mask_secrets
from .request import Validation, WorkflowInputError
from .sql_db import StoreUnavailableError
from .store import (
    BUSY_TIMEOUT,
    MemoryTaskStore,
    SQLiteTaskStore,
    SQLTaskStore,
    TaskRecord,
    TaskStore,
    connect_sqlite,
    make_task_store,
)

register_builtin_executors()

__all__ = [
    "BUSY_TIMEOUT",
    "BaseNodeExecutor",
    "ENV_DEFAULTS",
    "ExecutionContext",
    "LLM_PREFIXES",
    "Limits",
    "MemoryTaskStore",
    "NodeError",
    "NodeResult",
    "OutboundURLError",
    "RuntimeSettings",
    "SQLTaskStore",
    "SQLiteTaskStore",
    "STATUSES",
    "StoreUnavailableError",
    "TERMINAL_STATUSES",
    "TaskCancelAPI",
    "TaskCapacityError",
    "TaskQueue",
    "TaskQueueError",
    "TaskRecord",
    "TaskReportAPI",
    "TaskResultAPI",
    "TaskRunAPI",
    "TaskStore",
    "TaskValidateAPI",
    "Validation",
    "WorkflowApplication",
    "WorkflowConfigError",
    "WorkflowError",
    "WorkflowInputError",
    "WorkflowRuntime",
    "check_outbound_url",
    "connect_sqlite",
    "default_runtime",
    "get_node_executor",
    "make_task_store",
    "mask_secrets",
    "parse_allowed_host",
    "parse_allowed_hosts",
    "parse_outbound_url",
    "read_environment",
    "register_node_executor",
    "runtime_from_env",
    "set_default_runtime",
]
