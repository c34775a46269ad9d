"""gunicorn settings: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Every value can be set from the environment. With no ``LLM_BASE_URL`` (or
``OPENAI_BASE_URL``) the master starts the embedded local model server once,
before forking workers, and stops it on exit; workers inherit its URL.
"""

import os
import resource
import threading
import time

bind = os.environ.get("FLOWBRIDGE_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Capacity follows the work, not the CPU count: a request thread is held for the whole of an LLM
# call or stream and costs tens of KB while it waits, so a worker has threads by the thousand
# (started as requests need them; idle ones cost ~35 KB each). 2 workers x 1024 serve 1,000 concurrent streams even
# when connections land unevenly on the workers (docs/benchmarks.md). A streamed chat holds one thread
# (it reads its upstream on it). The worker sets the GIL's switch interval to FLOWBRIDGE_SWITCH_INTERVAL
# (default 0.02 s; see webapp/server/worker.py).
threads = int(os.environ.get("GUNICORN_THREADS", "1024"))
# gthread with deadlines on reading a request's headers and body (FLOWBRIDGE_HEADER_TIMEOUT,
# FLOWBRIDGE_BODY_TIMEOUT: a client too slow gets 408), see webapp/server/worker.py.
worker_class = "webapp.server.worker.FlowbridgeWorker"
# Connections one worker holds (busy or kept alive); at the limit it stops accepting and the other
# workers take the new ones. Room for every thread plus idle kept-alive connections.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", str(threads + 1024)))
backlog = int(os.environ.get("GUNICORN_BACKLOG", "4096"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
# gunicorn's control socket lives at one fixed path per user, which several
# instances on one machine (tests, benchmarks) would fight over; we do not use it.
control_socket_disable = True
# gunicorn's own lines as JSON too when LOG_FORMAT=json, from the first one.
logger_class = "webapp.guards.gunicorn_log.GunicornLogger"

# The app sizes its LLM pool to at least this many threads (see webapp.extensions.pool_size).
os.environ["FLOWBRIDGE_REQUEST_THREADS"] = str(threads)
# Split each worker's threads (webapp.guards.capacity): 1/16 kept for /healthz and the other status
# routes and for answering refusals, 1/8 for requests waiting (FLOWBRIDGE_QUEUE_WAIT at most) for a
# work slot, the rest work slots. Small test setups (< 8 threads) get neither, so bursts queue in gthread.
os.environ.setdefault("FLOWBRIDGE_RESERVED_THREADS", str(threads // 16))
os.environ.setdefault("FLOWBRIDGE_QUEUE_DEPTH", str(threads // 8))

# Every stream holds a client socket and an upstream socket: raise the soft limit on open files to
# the hard one (workers inherit it). A soft limit of 1024 would cap a worker near 500 streams.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
_wanted = _hard if _hard != resource.RLIM_INFINITY else 1 << 20
if _soft != resource.RLIM_INFINITY and _soft < _wanted:
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (_wanted, _hard))
    except (ValueError, OSError):  # e.g. above the kernel's nr_open: keep what we have
        pass

# Shutdown (SIGTERM to the master): work that finishes within graceful_timeout is finished and
# delivered, the rest fails at once. Each worker stops accepting and lets in-flight requests finish;
# then worker_exit below lets its running workflow tasks finish until graceful_timeout (since the
# SIGTERM) is nearly over, records those still running as failed ("the server shut down"), stops its
# LLM pool and exits at once, abandoning LLM calls still running (their results would be discarded).
# gunicorn's --timeout does not bound a request under gthread; FLOWBRIDGE_REQUEST_TIMEOUT does.

_local_server = None


def on_starting(server):
    global _local_server
    from llm_client.local_server import ensure_local_server
    from webapp.guards.observability import gunicorn_on_starting

    gunicorn_on_starting(server)
    # The addresses really bound (-b on the command line wins over FLOWBRIDGE_BIND): the workers'
    # Host check (webapp.guards.origin) is on when they are all loopback.
    os.environ["FLOWBRIDGE_BIND"] = ",".join(server.cfg.bind)

    _local_server = ensure_local_server(os.environ)
    if _local_server is not None:
        server.log.info("local model server at %s", _local_server.base_url)


def on_exit(server):
    if _local_server is not None:
        _local_server.stop()


def worker_exit(server, worker):
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        from webapp.extensions import close_llm_client, close_workflow_runtime, finish_running_tasks
        from webapp.server.worker import exit_now

        stop_deadline = getattr(worker, "stop_deadline", None)  # set on SIGTERM (webapp.server.worker)
        # Keep the last 2 s (a quarter of a short grace) to record the rest and exit before the master kills us.
        margin = min(2.0, graceful_timeout / 4)
        if stop_deadline is not None:
            finish_running_tasks(app, stop_deadline - margin - time.monotonic())
        # Recording the failures comes first and is quick; the runtime then waits for its loop to unwind,
        # which a hung call can stretch: bounded here, whatever is left is abandoned by exit_now.
        closer = threading.Thread(target=close_workflow_runtime, args=(app, margin / 4), daemon=True)
        closer.start()
        closer.join(margin / 2)
        close_llm_client(app)
        exit_now(server.log, linger=margin / 4)


def child_exit(server, worker):
    from webapp.guards.observability import gunicorn_child_exit

    gunicorn_child_exit(server, worker)
