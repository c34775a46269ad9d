"""``flowbridge run-workflow``: run a FlowGram workflow in this process, showing node statuses live."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import CLIError, model_server

if TYPE_CHECKING:
    from workflow import TaskRecord, WorkflowRuntime

    from ..task_events import NodeWatch

__all__ = ["add_run_workflow_parser", "run_workflow_command"]

#: Seconds between two looks at the running task's report.
POLL_INTERVAL = 0.1
#: Seconds a canceled task may take to stop before the command gives up on it.
CANCEL_GRACE = 10.0


def add_run_workflow_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "run-workflow", help="run a FlowGram workflow, showing node statuses",
        description="Run a FlowGram workflow schema (JSON file, or - for stdin) in this process. Node status "
                    "changes are shown on stderr as they happen; the outputs are printed on stdout as JSON. "
                    "Exit status 1 if the task fails or is canceled (its error messages on stderr). Ctrl-C "
                    "cancels the task. llm nodes use LLM_BASE_URL / LLM_MODEL; FLOWBRIDGE_ALLOWED_HOSTS, "
                    "FLOWBRIDGE_TASK_DEADLINE and FLOWBRIDGE_MAX_LOOP_ITERATIONS apply as in the server.",
        epilog="example: flowbridge run-workflow examples/workflows/code.json --inputs '{\"text\": \"to be or not\"}'")
    parser.add_argument("schema", metavar="SCHEMA.json", help="the workflow schema file, or - for stdin")
    parser.add_argument("--inputs", default="{}", metavar="JSON", help="the start node's inputs, a JSON object")
    parser.set_defaults(handler=run_workflow_command)


def run_workflow_command(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..task_events import NodeWatch, final_event  # now: Ctrl-C while the task runs must find _follow ready

    schema = _read_json(args.schema)
    try:
        inputs = json.loads(args.inputs)
    except ValueError as exc:
        raise CLIError(f"--inputs is not JSON: {exc}") from None
    if not isinstance(inputs, dict):
        raise CLIError("--inputs must be a JSON object, like '{\"query\": \"hi\"}'")
    config = load_config()  # a bad FLOWBRIDGE_* value: an error naming it
    with model_server():
        runtime, close = _runtime(config)
        try:
            task_id = runtime.run(schema, inputs)
            record = _follow(runtime, task_id, NodeWatch(schema if isinstance(schema, dict) else None),
                             config["FLOWBRIDGE_TASK_DEADLINE"])
        finally:
            close()
    if record.status == "succeeded":
        print(json.dumps(record.outputs or {}, ensure_ascii=False, indent=2, default=str))
        return 0
    raise CLIError(f"task {record.status}: {final_event(record)['data']}")


def _read_json(name: str) -> Any:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CLIError(f"{name} is not UTF-8 text: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CLIError(f"{name} is not JSON: {exc}") from None


def _runtime(config: dict[str, Any]) -> tuple[WorkflowRuntime, Any]:
    """A runtime with an in-memory store and the app's settings, and the function that closes it all."""
    from llm_client import LLMClient
    from ops import C, configure_services
    from workflow import Limits, MemoryTaskStore, RuntimeSettings, WorkflowRuntime

    clients: list[LLMClient] = []

    def provider() -> LLMClient:
        if not clients:
            clients.append(LLMClient())
        return clients[0]

    configure_services(os.environ, llm_provider=provider, language=config["FLOWBRIDGE_LANGUAGE"],
                       cache=config["FLOWBRIDGE_OP_CACHE"], flows=config["FLOWBRIDGE_FLOWS"])
    runtime = WorkflowRuntime(
        MemoryTaskStore(),
        RuntimeSettings.from_env(),  # after model_server(), which may have set LLM_BASE_URL
        llm_provider=provider,
        limits=Limits(deadline=config["FLOWBRIDGE_TASK_DEADLINE"],
                      max_loop_iterations=config["FLOWBRIDGE_MAX_LOOP_ITERATIONS"]),
        max_running=1,
    )

    def close() -> None:
        runtime.shutdown()
        for client in clients:
            client.cleanup()
        C.close()

    return runtime, close


def _follow(runtime: WorkflowRuntime, task_id: str, watch: NodeWatch, deadline: float) -> TaskRecord:
    """Show the task's node status changes until it ends; the first Ctrl-C cancels it."""
    give_up = time.monotonic() + deadline + CANCEL_GRACE  # the runtime fails the task at its deadline
    canceled = False
    print(f"task {task_id}: started", file=sys.stderr, flush=True)
    while True:
        try:
            record = runtime.get(task_id)
            if record is None:
                raise CLIError(f"task {task_id} disappeared")
            for event in watch.changes(record.report):
                _show(event["data"])
            if record.terminated:
                print(f"task {task_id}: {record.status}", file=sys.stderr)
                return record
            if time.monotonic() > give_up:
                raise CLIError(f"task {task_id} did not end in time")
            time.sleep(POLL_INTERVAL)
        except KeyboardInterrupt:
            if canceled:
                raise
            canceled = True
            give_up = min(give_up, time.monotonic() + CANCEL_GRACE)
            print(f"\ncanceling task {task_id} (Ctrl-C again to quit at once)", file=sys.stderr)
            runtime.cancel(task_id)


def _show(data: dict[str, Any]) -> None:
    line = f"[{data.get('current')}/{data.get('total')}] {data.get('message')}"
    cost = data.get("timeCost")
    if data.get("status") in ("succeeded", "failed", "canceled") and isinstance(cost, (int, float)):
        line += f" in {cost / 1000:.2f}s"
    print(line, file=sys.stderr, flush=True)
