"""Workflow tasks on Celery workers, through Redis (``FLOWBRIDGE_BROKER_URL=redis://...``).

An app server records each task ``pending`` and sends its ID to the queue :data:`QUEUE`; a
``flowbridge worker`` (a Celery worker with the app loaded) runs it with
:meth:`WorkflowRuntime.execute <workflow.application.WorkflowRuntime.execute>`. Everything else (report,
result, cancel, events, the pages) reads and writes the shared task store, as without a queue.

How a task survives the loss of a process (the settings of :func:`celery_config`):

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged when its task *ends*;
  a worker that dies before it claimed the task leaves the message to another worker, so a queued
  task is never lost with a worker.
* ``worker_prefetch_multiplier = 1``: a worker holds only the messages of the tasks it runs; the
  rest wait in Redis for whichever worker is free, and only those die with a worker.
* A task runs at most once: :meth:`RedisTaskQueue.claim` (``SET NX`` in Redis) lets one delivery
  start it, and the runtime starts only ``pending`` tasks; a redelivered message (visibility timeout,
  a lost worker) of a task that started finds it ``processing`` or ended and does nothing.
* A task whose worker died is failed by the store's heartbeat check (any app server or worker), with
  the lost worker's ``host:pid:token`` in its error, ``FLOWBRIDGE_ORPHAN_AFTER`` seconds (+ one
  heartbeat interval) after the worker's last heartbeat. It is not resumed: its nodes may have had
  effects (HTTP calls) that must not happen twice.
* ``visibility_timeout`` (``FLOWBRIDGE_BROKER_VISIBILITY_TIMEOUT``, default 300 s) only bounds how long
  a message delivered to a worker that died *before claiming it* waits before another worker gets it;
  a longer task is not run again when it passes (see the claim above).
* Redis without persistence forgets its queue when it restarts: each queued task's owner names the
  Redis server's ``run_id``, so :meth:`RedisTaskQueue.housekeeping` (every heartbeat interval, in one
  process at a time) sees the tasks queued on a Redis that restarted and sends them again, and keeps
  the heartbeats of the tasks still queued. A task queued while Redis is unreachable for longer than
  ``FLOWBRIDGE_ORPHAN_AFTER`` is failed by the heartbeat check, naming the queue.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from typing import Any

import redis
from celery import Celery
from flask import Flask

from workflow import TaskCapacityError, TaskQueue, TaskQueueError, TaskStore

logger = logging.getLogger(__name__)

#: The Celery queue (a Redis list of that name) of workflow tasks.
QUEUE = "flowbridge"
#: The Celery task that runs one workflow task.
RUN_TASK = "flowbridge.run_workflow_task"
#: Prefix of the owner of a task waiting in the queue; the rest names the Redis server and its run.
QUEUED_PREFIX = "queued on "
#: Seconds a claim blocks other deliveries of the same task: ample to mark it processing.
CLAIM_SECONDS = 120
#: Queued tasks whose heartbeat one housekeeping round reads and beats at most.
HOUSEKEEPING_BATCH = 100_000
_KEY = "flowbridge:"

_app: Flask | None = None  # the Flask app of this worker process (set by bind_app)


def celery_config(config: dict[str, Any]) -> dict[str, Any]:
    """Celery's settings for ``FLOWBRIDGE_BROKER_URL``: see the module's documentation for why."""
    return {
        "broker_url": config["FLOWBRIDGE_BROKER_URL"],
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": config["FLOWBRIDGE_BROKER_VISIBILITY_TIMEOUT"],
            "unacked_restore_interval": 10,
            "unacked_restore_throttle": 1,  # every 10 s, not every 100 s
            "socket_timeout": 5, "socket_connect_timeout": 5,
        },
        "task_default_queue": QUEUE,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,  # outcomes are in the task store
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.5,
                                      "interval_max": 1},
        "worker_hijack_root_logger": False,  # the app's logging (LOG_FORMAT, LOG_LEVEL) stays
        "worker_redirect_stdouts": False,
        "worker_send_task_events": False,
    }


def make_celery(config: dict[str, Any]) -> Celery:
    """The Celery app of ``config`` (an app server's or a worker's), with the task that runs workflows."""
    celery = Celery("flowbridge")
    celery.conf.update(celery_config(config))

    @celery.task(name=RUN_TASK, ignore_result=True)
    def run_workflow_task(task_id: str) -> None:
        from ..extensions import get_workflow_runtime

        if _app is None:
            raise RuntimeError("no Flask app in this worker: start it with `flowbridge worker`")
        runtime = get_workflow_runtime(_app)
        with runtime.queue.running():  # type: ignore[union-attr]
            record = runtime.execute(str(task_id))
        if record is not None and record.status == "pending":  # another delivery holds its claim
            raise run_workflow_task.retry(countdown=CLAIM_SECONDS, max_retries=None)

    return celery


def bind_app(app: Flask) -> None:
    """Make ``app`` the one this worker process runs tasks with."""
    global _app
    _app = app


def redis_label(url: str) -> str:
    """``host:port/db`` of a Redis URL: where tasks are queued, without a password."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"


class RedisTaskQueue(TaskQueue):
    """Tasks through Celery on Redis, with the bound ``max_queued`` (then :class:`TaskCapacityError`)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.url = config["FLOWBRIDGE_BROKER_URL"]
        self.max_queued = config["FLOWBRIDGE_MAX_QUEUED_TASKS"]
        self.label = redis_label(self.url)
        self.celery = make_celery(config)
        self.redis = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5,
                                          health_check_interval=30)
        self._run_id: tuple[float, str] | None = None
        # one housekeeping round per heartbeat interval among all processes (the runtime's interval)
        interval = min(5.0, config["FLOWBRIDGE_ORPHAN_AFTER"] / 6)
        self._round_ms = max(100, int(interval * 900))
        #: this process's worker name, when it is a ``flowbridge worker`` (it then announces itself), and
        #: the tasks it runs now
        self.worker_name: str | None = None
        self.active = 0
        self._lock = threading.Lock()
        self._worker_ttl = int(3 * interval) + 1

    def _server_run(self) -> str:
        """The Redis server's ``run_id`` (new at every start), read at most once a second."""
        if self._run_id is None or time.monotonic() - self._run_id[0] > 1.0:
            self._run_id = (time.monotonic(), str(self.redis.info("server")["run_id"])[:12])
        return self._run_id[1]

    def queued_owner(self) -> str:
        try:
            return f"{QUEUED_PREFIX}{self.label} (run {self._server_run()})"
        except redis.RedisError as exc:
            raise TaskQueueError(f"Redis at {self.label} is unreachable: {exc}") from exc

    def depth(self) -> int:
        """Messages waiting in the queue (not those workers run)."""
        return int(self.redis.llen(QUEUE))

    def check_room(self) -> None:
        try:
            depth = self.depth()
        except redis.RedisError as exc:
            raise TaskQueueError(f"Redis at {self.label} is unreachable: {exc}") from exc
        if depth >= self.max_queued:
            raise TaskCapacityError(f"the task queue is full ({depth} tasks wait for a worker, "
                                    f"FLOWBRIDGE_MAX_QUEUED_TASKS={self.max_queued}); try again later")

    def submit(self, task_id: str) -> None:
        try:
            self.celery.send_task(RUN_TASK, args=[task_id], queue=QUEUE)
        except Exception as exc:  # kombu/redis errors after the publish retries
            raise TaskQueueError(f"Redis at {self.label}: {exc}") from exc

    def claim(self, task_id: str, owner: str) -> bool:
        return bool(self.redis.set(f"{_KEY}claim:{task_id}", owner, nx=True, ex=CLAIM_SECONDS))

    def housekeeping(self, store: TaskStore) -> None:
        """Beat the heartbeats of queued tasks; queue again those a restarted Redis forgot (one process a round)."""
        owner = self.queued_owner()
        try:
            if self.worker_name is not None:  # seen online for a few heartbeat rounds (metrics)
                self.redis.set(f"{_KEY}worker:{self.worker_name}", self.active, ex=self._worker_ttl)
            self._housekeeping(store, owner)
        except redis.RedisError as exc:
            raise TaskQueueError(f"Redis at {self.label} is unreachable: {exc}") from exc

    def _housekeeping(self, store: TaskStore, owner: str) -> None:
        if not self.redis.set(f"{_KEY}housekeeping", owner, nx=True, px=self._round_ms):
            return  # another process did this round
        queued = [r for r in store.list(status="pending", limit=HOUSEKEEPING_BATCH)
                  if r.owner.startswith(QUEUED_PREFIX)]
        store.heartbeat(owner, [r.task_id for r in queued if r.owner == owner])
        for record in queued:
            if record.owner == owner:
                continue
            # queued on this Redis before it restarted empty: its message is gone (a task queued on a
            # Redis that kept its data finds a second message harmless: claim() lets one start it)
            self._requeue(store, record.task_id, owner)

    def _requeue(self, store: TaskStore, task_id: str, owner: str) -> None:
        """Queue ``task_id`` again, holding its claim meanwhile, so that no worker starts it from an
        old message while its owner changes (one that already started it keeps it)."""
        if not self.claim(task_id, "requeue"):
            return  # a worker is starting it
        try:
            record = store.get(task_id)
            if record is None or record.status != "pending" or not record.owner.startswith(QUEUED_PREFIX):
                return
            logger.warning("task %s was queued on a Redis that restarted (%s): queuing it again",
                           task_id, record.owner)
            store.update(task_id, owner=owner, heartbeat_at=time.time())
            self.submit(task_id)
        finally:
            self.redis.delete(f"{_KEY}claim:{task_id}")

    def running(self) -> _Running:
        """Count a task this worker runs (``with queue.running(): ...``)."""
        return _Running(self)

    def ping(self, timeout: float) -> None:
        """Raise unless Redis answers within ``timeout`` seconds (``/readyz``)."""
        with redis.Redis.from_url(self.url, socket_timeout=timeout, socket_connect_timeout=timeout) as probe:
            probe.ping()

    def observe(self) -> tuple[int, int, int]:
        """``(queued, workers online, workers busy)`` across the cluster (``/metrics``)."""
        keys = list(self.redis.scan_iter(f"{_KEY}worker:*", count=1000))
        running = [int(value or 0) for value in self.redis.mget(keys)] if keys else []
        return self.depth(), len(running), sum(1 for n in running if n > 0)

    def close(self) -> None:
        self.redis.close()


class _Running:
    def __init__(self, queue: RedisTaskQueue) -> None:
        self.queue = queue

    def __enter__(self) -> None:
        with self.queue._lock:
            self.queue.active += 1

    def __exit__(self, *exc_info: object) -> None:
        with self.queue._lock:
            self.queue.active -= 1
