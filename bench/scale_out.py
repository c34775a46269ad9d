"""Scale-out: workflow tasks/s with 1, 2 and 4 ``flowbridge worker`` processes, next to the embedded default.

Setup, all on 127.0.0.1: a fake upstream answering after 20 ms, in its own process; a ``redis-server``
started by the bench in a temporary directory (no persistence); per configuration one gunicorn app server
(2 workers x 16 threads, ``wsgi:app``) and its own task store file (SQLite, in a temporary directory):

* ``embedded``: no broker; the app server runs each task in process (what ``make run`` does).
* ``queued-N`` (N = 1, 2, 4): ``FLOWBRIDGE_BROKER_URL`` = its own Redis database; N processes of
  ``python -m webapp.cli worker --concurrency 8`` run the tasks, sharing the task store file with the
  app server.

With ``--postgres`` (and PostgreSQL's ``initdb``/``pg_ctl`` installed) the same configurations run again
on a PostgreSQL server the bench starts (initdb into a temporary directory, as tests/services.py does).

Every configuration is started once and stays up; idle workers of the other configurations only wait on
their own Redis database. Each round runs every configuration once, in an order that rotates between
rounds. One round of a configuration: the task store's ended-task count is read, ``--per-round`` tasks
(start -> llm -> end, bench/tasks.py's workflow) are submitted with ``POST /api/task/run`` (no wait) by 16
client threads, and the store's count is polled (every 50 ms) until they all ended. Reported per
configuration, median over rounds: tasks/s (tasks / time from the first submit to the last end seen),
submits/s, p50/p99 of ``finished_at - created_at`` from the store, CPU ms per task of the app server and the
workers (``/proc``), tasks not ``succeeded`` and 503s (retried after 0.1 s).

Run: ``.venv/bin/python bench/scale_out.py`` (about 2 minutes on 2 cores); ``--rounds N`` (default 3),
``--per-round N`` (default 200), ``--postgres``. Writes ``bench/results/scale_out.json``; exits 0 whatever
it measured.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from bench._common import (  # noqa: E402
    UpstreamProcess,
    cpu_seconds,
    loadavg,
    machine,
    median,
    percentile,
    table,
    worker_pids,
    write_json,
)
from bench.tasks import SCHEMA  # noqa: E402
from tests.servers import GunicornServer, QueueWorker  # noqa: E402
from tests.services import PostgresServer, RedisServer, _pg_bin  # noqa: E402
from workflow.store import TaskStore, make_task_store  # noqa: E402

UPSTREAM_DELAY = 0.02
APP_WORKERS = 2
APP_THREADS = 16
WORKER_COUNTS = (1, 2, 4)
WORKER_CONCURRENCY = 8
CLIENTS = 16
POLL_EVERY = 0.05
ROUND_TIMEOUT = 120.0
REQUEST_TIMEOUT = 30.0
RETRY_PAUSE = 0.1
MAX_RETRIES = 100
ENDED = ("succeeded", "failed", "canceled")


class Config:
    """One app server, its task store and (when queued) its workers on its own Redis database."""

    def __init__(self, name: str, folder: Path, env: dict[str, str], workers: int) -> None:
        self.name, self.env = name, env
        folder.mkdir(parents=True, exist_ok=True)
        self.app = GunicornServer(env, workers=APP_WORKERS, threads=APP_THREADS, log_path=folder / "app.log")
        self.workers = [QueueWorker(env, folder / f"worker{i}.log", WORKER_CONCURRENCY, ("--loglevel", "WARNING"))
                        for i in range(workers)]
        self.store: TaskStore | None = None

    def start(self) -> None:
        for worker in self.workers:
            worker.launch()
        self.app.start()
        for worker in self.workers:
            worker.wait_ready()
        self.store = make_task_store(self.env["FLOWBRIDGE_TASK_DB"])

    def pids(self) -> list[int]:
        return worker_pids(self.app.process.pid) + [w.process.pid for w in self.workers if w.process]

    def ended(self) -> int:
        assert self.store is not None
        return sum(self.store.count(status) for status in ENDED)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.app.stop()
        if self.store is not None:
            self.store.close()


def _submit_all(config: Config, n: int, tag: str, counters: collections.Counter[str]) -> list[str]:
    """``n`` tasks submitted by CLIENTS threads; a 503 is retried after RETRY_PAUSE (and counted)."""
    url = config.app.url + "/api/task/run"
    ids: list[str] = []
    lock = threading.Lock()
    next_index = [0]

    def client() -> None:
        with requests.Session() as session:
            while True:
                with lock:
                    i = next_index[0]
                    if i >= n:
                        return
                    next_index[0] += 1
                for _ in range(MAX_RETRIES + 1):
                    try:
                        with session.post(url, json={"schema": SCHEMA, "inputs": {"q": f"{tag} {i}"}},
                                          timeout=REQUEST_TIMEOUT) as response:
                            status = response.status_code
                            body = response.json() if status == 200 else None
                    except (requests.RequestException, ValueError) as exc:
                        counters[f"run {type(exc).__name__}"] += 1
                        break
                    if status == 503:
                        counters["503"] += 1
                        time.sleep(RETRY_PAUSE)
                        continue
                    if status != 200 or not body or "taskID" not in body:
                        counters[f"run HTTP {status}"] += 1
                    else:
                        with lock:
                            ids.append(body["taskID"])
                    break

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(ROUND_TIMEOUT)
    return ids


def one_round(config: Config, n: int, tag: str) -> dict[str, Any]:
    counters: collections.Counter[str] = collections.Counter()
    before = config.ended()
    pids = config.pids()
    cpu_before = cpu_seconds(pids)
    started = time.monotonic()
    ids = _submit_all(config, n, tag, counters)
    submitted = time.monotonic()
    deadline = submitted + ROUND_TIMEOUT
    ended = before
    while time.monotonic() < deadline:
        ended = config.ended()
        if ended - before >= len(ids):
            break
        time.sleep(POLL_EVERY)
    done = time.monotonic()
    cpu = cpu_seconds(pids) - cpu_before
    assert config.store is not None
    records = [config.store.get(task_id) for task_id in ids]
    latencies = [r.finished_at - r.created_at for r in records if r is not None and r.finished_at is not None]
    not_succeeded = sum(1 for r in records if r is None or r.status != "succeeded")
    return {
        "tasks": len(ids), "seconds": done - started, "tasks_per_s": len(ids) / (done - started),
        "submits_per_s": len(ids) / max(submitted - started, 1e-9),
        "p50_ms": 1000 * percentile(latencies, 50), "p99_ms": 1000 * percentile(latencies, 99),
        "cpu_ms_per_task": 1000 * cpu / max(len(ids), 1), "not_succeeded": not_succeeded + (n - len(ids)),
        "unfinished": len(ids) - (ended - before), "errors": dict(counters),
    }


def build_configs(folder: Path, upstream: str, redis: RedisServer, postgres: PostgresServer | None) -> list[Config]:
    base = {"LLM_BASE_URL": upstream, "LLM_MAX_RETRIES": "0", "FLOWBRIDGE_MAX_RUNNING_TASKS": "1000"}
    stores = [("sqlite", lambda name: str(folder / name / "tasks.db"))]
    if postgres is not None:
        stores.append(("postgresql", lambda name: postgres.create_database()))
    configs, database = [], 0
    for kind, task_db in stores:
        for workers in (0, *WORKER_COUNTS):
            name = ("embedded" if not workers else f"queued-{workers}") + f" {kind}"
            env = {**base, "FLOWBRIDGE_TASK_DB": task_db(name.replace(" ", "-"))}
            if workers:
                database += 1
                env["FLOWBRIDGE_BROKER_URL"] = f"redis://127.0.0.1:{redis.port}/{database}"
            configs.append(Config(name, folder / name.replace(" ", "-"), env, workers))
    return configs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--postgres", action="store_true", help="also on a PostgreSQL task store")
    args = parser.parse_args()
    if not (shutil.which("redis-server") or Path("/usr/bin/redis-server").exists()):
        print("scale_out: redis-server is not installed (Debian package redis-server); nothing measured")
        return 0
    folder = Path(tempfile.mkdtemp(prefix="flowbridge-scale-out-"))
    postgres = None
    if args.postgres and _pg_bin("initdb"):
        postgres = PostgresServer().init()
    redis = RedisServer().start()
    results: dict[str, list[dict[str, Any]]] = {}
    configs: list[Config] = []
    try:
        with UpstreamProcess(delay=UPSTREAM_DELAY) as upstream:
            configs = build_configs(folder, upstream.base_url, redis, postgres)
            for config in configs:
                print(f"starting {config.name}", flush=True)
                config.start()
            for config in configs:  # warm up: imports, connections, the first LLM pool threads
                one_round(config, 20, "warm-up")
            for r in range(args.rounds):
                order = configs[r % len(configs):] + configs[:r % len(configs)]
                for config in order:
                    result = one_round(config, args.per_round, f"round {r}")
                    results.setdefault(config.name, []).append(result)
                    print(f"round {r} {config.name}: {result['tasks_per_s']:.1f} tasks/s", flush=True)
    finally:
        for config in configs:
            config.stop()
        redis.close()
        if postgres is not None:
            postgres.close()
        shutil.rmtree(folder, ignore_errors=True)

    summary = {name: _summary(rounds) for name, rounds in results.items()}
    headers = ["configuration", "tasks/s", "submits/s", "p50 ms", "p99 ms", "CPU ms/task", "not succeeded", "503s"]
    rows = [[name, s["tasks_per_s"], s["submits_per_s"], s["p50_ms"], s["p99_ms"], s["cpu_ms_per_task"],
             s["not_succeeded"], s["503s"]] for name, s in summary.items()]
    print(table(headers, rows))
    print(f"loadavg {loadavg()}")
    path = write_json("scale_out.json", {
        "machine": machine(),
        "setup": {"upstream_delay_s": UPSTREAM_DELAY, "app_server": f"{APP_WORKERS} workers x {APP_THREADS} threads",
                  "worker_concurrency": WORKER_CONCURRENCY, "clients": CLIENTS, "rounds": args.rounds,
                  "per_round": args.per_round, "postgres": postgres is not None},
        "summary": summary, "rounds": results, "loadavg": loadavg(),
    })
    print(f"wrote {path}")
    return 0


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        **{key: median([r[key] for r in rounds]) for key in
           ("tasks_per_s", "submits_per_s", "p50_ms", "p99_ms", "cpu_ms_per_task")},
        "not_succeeded": sum(r["not_succeeded"] for r in rounds),
        "unfinished": sum(r["unfinished"] for r in rounds),
        "503s": sum(r["errors"].get("503", 0) for r in rounds),
    }


if __name__ == "__main__":
    sys.exit(main())
