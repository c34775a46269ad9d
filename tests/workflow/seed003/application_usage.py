# The seed's "用法" ("内核使用说明（高级）"), verbatim but for its import lines, after the
# workflow_schema and inputs of the seed's "示例" it uses (copied verbatim from that example).
# Source: seeds/003_9c24919555af1b7a.txt.
from workflow import WorkflowApplication
# (was: from runtime_py_core.domain.engine import WorkflowRuntimeEngine: unused, no such class here)
# (was: from runtime_py_core.domain.context import WorkflowRuntimeContext: unused, no such class here)

# 创建一个简单的工作流模式
workflow_schema = {
    "nodes": [
        {
            "id": "start",
            "type": "start",
            "position": {"x": 0, "y": 0},
            "ports": {
                "out": [{"id": "out", "type": "out"}]
            }
        },
        {
            "id": "end",
            "type": "end",
            "position": {"x": 200, "y": 0},
            "ports": {
                "in": [{"id": "in", "type": "in"}]
            }
        }
    ],
    "edges": [
        {
            "id": "edge1",
            "source": {"nodeId": "start", "portId": "out"},
            "target": {"nodeId": "end", "portId": "in"}
        }
    ]
}

# 创建输入参数
inputs = {
    "message": "Hello, World!"
}


# 获取工作流应用实例
app = WorkflowApplication.instance()

# 直接运行工作流
task_id = app.run({
    "schema": workflow_schema,
    "inputs": inputs
})

# 获取任务结果
result = app.result(task_id)

# 获取任务报告
report = app.report(task_id)

# 取消任务
app.cancel(task_id)
