"""Run a seed script (``python settle.py SCRIPT``), then wait for the tasks it started and print them.

The seed's kernel example and "用法" start a task and ask for its result at once (FlowGram's
TaskResult answers nothing until the task ends), so what they print depends on timing. After the
script's own code, this prints one JSON line per task of the default runtime once it has ended:
``{"settled": {"status", "outputs", "warnings", "errors"}}``. The script runs unchanged, as __main__.
"""

import json
import runpy
import sys

from workflow import default_runtime

runpy.run_path(sys.argv[1], run_name="__main__")
runtime = default_runtime()
for record in runtime.store.list(limit=100):
    record = runtime.wait(record.task_id, 30)
    messages = record.report["messages"]
    print(json.dumps({"settled": {"status": record.status, "outputs": record.outputs,
                                  "warnings": [m["message"] for m in messages["warning"]],
                                  "errors": [m["message"] for m in messages["error"]]}}))
