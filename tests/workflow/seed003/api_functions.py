"""The seed's "API 文档" examples, run as a plain script on the seed's own curl workflow.

Source: ``seeds/003_9c24919555af1b7a.txt`` (FlowGram Python Runtime README): the request body is
the ``--data`` of its "使用 curl 测试 API" example (start -> llm -> end), with ``api_host`` the
LLM server of this environment (``SEED003_API_HOST``, else ``LLM_BASE_URL``) instead of
``https://api-host/api/v3``; the calls are the snippets of its "API 文档" section, in the order of
its test script ("1. 调用 TaskRunAPI ... 2. 等待工作流执行完成 3. TaskReportAPI 4. TaskResultAPI"),
with only the import line changed (``from workflow import ...``). Prints one JSON line per answer.
"""

import asyncio
import json
import os
import time

from workflow import TaskCancelAPI, TaskReportAPI, TaskResultAPI, TaskRunAPI

REQUEST_BODY = r'''{
  "inputs": {
      "model_name": "ep-20250206192339-nnr9m",
      "api_key": "your-api-key",
      "api_host": "API_HOST",
      "prompt": "Just give me the answer of '1+1=?', just one number, no other words"
  },
  "schema": "{\"nodes\":[{\"id\":\"start_0\",\"type\":\"start\",\"meta\":{\"position\":{\"x\":0,\"y\":0}},\"data\":{\"title\":\"Start\",\"outputs\":{\"type\":\"object\",\"properties\":{\"model_name\":{\"key\":14,\"name\":\"model_name\",\"type\":\"string\",\"extra\":{\"index\":1},\"isPropertyRequired\":true},\"prompt\":{\"key\":5,\"name\":\"prompt\",\"type\":\"string\",\"extra\":{\"index\":3},\"isPropertyRequired\":true},\"api_key\":{\"key\":19,\"name\":\"api_key\",\"type\":\"string\",\"extra\":{\"index\":4},\"isPropertyRequired\":true},\"api_host\":{\"key\":20,\"name\":\"api_host\",\"type\":\"string\",\"extra\":{\"index\":5},\"isPropertyRequired\":true}},\"required\":[\"model_name\",\"prompt\",\"api_key\",\"api_host\"]}}},{\"id\":\"end_0\",\"type\":\"end\",\"meta\":{\"position\":{\"x\":1000,\"y\":0}},\"data\":{\"title\":\"End\",\"inputsValues\":{\"answer\":{\"type\":\"ref\",\"content\":[\"llm_0\",\"result\"]}},\"inputs\":{\"type\":\"object\",\"properties\":{\"answer\":{\"type\":\"string\"}}}}},{\"id\":\"llm_0\",\"type\":\"llm\",\"meta\":{\"position\":{\"x\":500,\"y\":0}},\"data\":{\"title\":\"LLM_0\",\"inputsValues\":{\"modelName\":{\"type\":\"ref\",\"content\":[\"start_0\",\"model_name\"]},\"apiKey\":{\"type\":\"ref\",\"content\":[\"start_0\",\"api_key\"]},\"apiHost\":{\"type\":\"ref\",\"content\":[\"start_0\",\"api_host\"]},\"temperature\":{\"type\":\"constant\",\"content\":0},\"prompt\":{\"type\":\"ref\",\"content\":[\"start_0\",\"prompt\"]},\"systemPrompt\":{\"type\":\"constant\",\"content\":\"You are a helpful AI assistant.\"}},\"inputs\":{\"type\":\"object\",\"required\":[\"modelName\",\"temperature\",\"prompt\"],\"properties\":{\"modelName\":{\"type\":\"string\"},\"apiKey\":{\"type\":\"string\"},\"apiHost\":{\"type\":\"string\"},\"temperature\":{\"type\":\"number\"},\"systemPrompt\":{\"type\":\"string\"},\"prompt\":{\"type\":\"string\"}}},\"outputs\":{\"type\":\"object\",\"properties\":{\"result\":{\"type\":\"string\"}}}}}],\"edges\":[{\"sourceNodeID\":\"start_0\",\"targetNodeID\":\"llm_0\"},{\"sourceNodeID\":\"llm_0\",\"targetNodeID\":\"end_0\"}]}"
}'''

request = json.loads(REQUEST_BODY.replace("API_HOST", os.environ.get("SEED003_API_HOST") or os.environ["LLM_BASE_URL"]))
workflow_schema = json.loads(request["schema"])
inputs = request["inputs"]


async def main() -> None:
    # TaskRun API 示例
    task_run_output = await TaskRunAPI({
        "schema": json.dumps(workflow_schema),
        "inputs": inputs
    })
    task_id = task_run_output["taskID"]
    print(json.dumps({"taskID": task_id}))

    # 等待工作流执行完成 (the seed's test script, step 2): poll the report, bounded
    give_up = time.monotonic() + 60
    while True:
        report = await TaskReportAPI({"taskID": task_id})
        if report["workflowStatus"]["terminated"] or time.monotonic() > give_up:
            break
        await asyncio.sleep(0.02)

    # TaskReport API 示例
    report = await TaskReportAPI({"taskID": task_id})
    print(json.dumps({"report": report}))

    # TaskResult API 示例
    result = await TaskResultAPI({"taskID": task_id})
    print(json.dumps({"result": result}))

    # TaskCancel API 示例 (the task has ended: FlowGram still answers success for a known task)
    cancel_result = await TaskCancelAPI({"taskID": task_id})
    print(json.dumps({"cancel": cancel_result}))


asyncio.run(main())
