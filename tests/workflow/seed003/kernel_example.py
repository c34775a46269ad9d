# The seed's kernel example ("内核使用说明（高级）", "示例"), verbatim but for its import line
# (was: from runtime_py_core.api import ...). Source: seeds/003_9c24919555af1b7a.txt.
from workflow import TaskRunAPI, TaskResultAPI, TaskReportAPI, TaskCancelAPI
import json
import asyncio

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

# 运行工作流
async def run_workflow():
    # 运行工作流
    task_run_output = await TaskRunAPI({
        "schema": json.dumps(workflow_schema),
        "inputs": inputs
    })
    
    task_id = task_run_output["taskID"]
    print(f"Task ID: {task_id}")
    
    # 获取任务结果
    result = await TaskResultAPI({"taskID": task_id})
    print(f"Task Result: {result}")
    
    # 获取任务报告
    report = await TaskReportAPI({"taskID": task_id})
    print(f"Task Report: {report}")
    
    # 取消任务（如果需要）
    # cancel_result = await TaskCancelAPI({"taskID": task_id})
    # print(f"Task Cancel Result: {cancel_result}")

# 运行示例
asyncio.run(run_workflow())
