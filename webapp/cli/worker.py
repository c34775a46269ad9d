"""``flowbridge worker``: a Celery worker that runs the workflow tasks app servers queue.

It loads the app's configuration from the environment, as ``flowbridge serve`` does: the same
``FLOWBRIDGE_BROKER_URL`` (Redis), ``FLOWBRIDGE_TASK_DB`` (the task store every app server and
worker shares), ``LLM_BASE_URL`` and the task limits. See :mod:`webapp.server.task_queue` for how tasks
survive a lost worker.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from typing import Any

from .common import model_server, positive_int

__all__ = ["add_worker_parser", "run_worker"]


def add_worker_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "worker", help="run queued workflow tasks (a Celery worker)",
        description="Run the workflow tasks that app servers queue on FLOWBRIDGE_BROKER_URL (redis://...), "
                    "recording them in the shared FLOWBRIDGE_TASK_DB. Stop it with SIGTERM: it finishes the "
                    "tasks it runs, then exits.")
    parser.add_argument("--concurrency", "-c", type=positive_int, default=4,
                        help="tasks this worker runs at once (default %(default)s)")
    parser.add_argument("--hostname", "-n", default=None,
                        help="the Celery node name (default flowbridge-PID@HOST)")
    parser.add_argument("--loglevel", "-l", default=os.environ.get("LOG_LEVEL", "INFO"),
                        help="log level (default %(default)s)")
    parser.set_defaults(handler=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    from .. import ConfigError, create_app
    from ..extensions import get_workflow_runtime
    from ..server.task_queue import QUEUE, bind_app

    # the LLM pool is sized to the tasks run at once, as an app server sizes it to its request threads
    app = create_app({"FLOWBRIDGE_REQUEST_THREADS": args.concurrency})
    if not app.config["FLOWBRIDGE_BROKER_URL"]:
        raise ConfigError("flowbridge worker needs FLOWBRIDGE_BROKER_URL (redis://host:port/0)")
    bind_app(app)
    runtime = get_workflow_runtime(app)
    if runtime.queue is None:  # pragma: no cover - the broker URL makes one
        raise ConfigError("FLOWBRIDGE_BROKER_URL is set but the runtime has no queue")
    logging.basicConfig(stream=sys.stderr, level=args.loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    hostname = args.hostname or f"flowbridge-{os.getpid()}@{socket.gethostname()}"
    runtime.queue.worker_name = hostname  # type: ignore[attr-defined]  # announced in Redis (/metrics)
    celery = runtime.queue.celery  # type: ignore[attr-defined]
    from celery.signals import worker_ready

    from ..server.task_queue import redis_label

    def announce(**_: Any) -> None:  # operators (and the tests) wait for this line
        print(f"flowbridge worker {hostname} ready: {args.concurrency} tasks at once from queue {QUEUE} on "
              f"{redis_label(app.config['FLOWBRIDGE_BROKER_URL'])}", file=sys.__stderr__, flush=True)

    worker_ready.connect(announce, weak=False)
    with model_server():
        runtime.start()  # heartbeats and the orphan check run while idle too
        # threads: one process, one event loop for all its tasks (they wait on I/O: LLM and HTTP nodes)
        celery.worker_main(["worker", "--pool=threads", f"--concurrency={args.concurrency}", f"--queues={QUEUE}",
                            f"--hostname={hostname}", f"--loglevel={args.loglevel.upper()}",
                            "--without-gossip", "--without-mingle"])
    return 0
