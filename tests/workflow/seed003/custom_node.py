# The seed's FAQ 3 "如何自定义节点类型": its class-based custom node, verbatim but for the import line
# (was: from src.domain.executor import BaseNodeExecutor) and the registration (the seed puts the
# instance in a dict of workflow_runtime_executor.py; here register_node_executor takes it by type).
# Source: seeds/003_9c24919555af1b7a.txt. Below the seed's code: a start -> custom -> end workflow
# run through WorkflowApplication.instance(), printing its result and report as JSON lines.
import json

from workflow import BaseNodeExecutor, WorkflowApplication, register_node_executor


# 1. 创建节点执行器
class CustomNodeExecutor(BaseNodeExecutor):
    async def execute(self, node, context):
        # 实现节点执行逻辑
        inputs = await self._get_node_inputs(node, context)
        # 处理输入
        outputs = {"result": "处理结果"}
        # 设置输出
        await self._set_node_outputs(node, outputs, context)
        return outputs


# 2. 注册节点类型
register_node_executor("custom", CustomNodeExecutor())


# Not the seed's: a workflow using the node, and what it answers.
class EchoInputsExecutor(BaseNodeExecutor):
    """Sets its outputs and returns nothing: the outputs set are the node's."""

    async def execute(self, node, context):
        inputs = await self._get_node_inputs(node, context)
        await self._set_node_outputs(node, {"seen": f"{node.id} got {inputs['text']}"}, context)


register_node_executor("echo-inputs", EchoInputsExecutor())


def node(node_id, node_type, x, data):
    return {"id": node_id, "type": node_type, "meta": {"position": {"x": x, "y": 0}}, "data": data}


string = {"type": "string"}
schema = {
    "nodes": [
        node("start_0", "start", 0, {"outputs": {"type": "object", "properties": {"text": string}}}),
        node("custom_0", "custom", 200, {
            "inputsValues": {"text": {"type": "ref", "content": ["start_0", "text"]}},
            "inputs": {"type": "object", "properties": {"text": string}},
            "outputs": {"type": "object", "properties": {"result": string}}}),
        node("echo_0", "echo-inputs", 400, {
            "inputsValues": {"text": {"type": "ref", "content": ["start_0", "text"]}},
            "inputs": {"type": "object", "properties": {"text": string}},
            "outputs": {"type": "object", "properties": {"seen": string}}}),
        node("end_0", "end", 600, {
            "inputsValues": {"answer": {"type": "ref", "content": ["custom_0", "result"]},
                             "seen": {"type": "ref", "content": ["echo_0", "seen"]}},
            "inputs": {"type": "object", "properties": {"answer": string, "seen": string}}}),
    ],
    "edges": [{"sourceNodeID": "start_0", "targetNodeID": "custom_0"},
              {"sourceNodeID": "custom_0", "targetNodeID": "echo_0"},
              {"sourceNodeID": "echo_0", "targetNodeID": "end_0"}],
}
app = WorkflowApplication.instance()
task_id = app.run({"schema": schema, "inputs": {"text": "hello"}}, wait=30)
print(json.dumps({"result": app.result(task_id)}, ensure_ascii=False))
print(json.dumps({"report": app.report(task_id)}, ensure_ascii=False))
