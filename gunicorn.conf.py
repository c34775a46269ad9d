"""gunicorn settings: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Every value can be set from the environment. With no ``LLM_BASE_URL`` (or
``OPENAI_BASE_URL``) the master starts the embedded local model server once,
before forking workers, and stops it on exit; workers inherit its URL.
"""

import os

bind = os.environ.get("FLOWBRIDGE_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
worker_class = "gthread"
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
# Keep request threads free for /healthz and /readyz when every other one is busy (webapp.guards.deadlines):
# one per 8 threads unless set. Small test setups (< 8 threads) reserve none, so bursts queue.
os.environ.setdefault("FLOWBRIDGE_RESERVED_THREADS", str(threads // 8))

# Shutdown (SIGTERM to the master): each worker stops accepting, lets in-flight requests finish
# for up to graceful_timeout (then the master kills it), and worker_exit below records its running
# workflow tasks as failed ("the server shut down") and stops its LLM pool. A request still running
# after graceful_timeout is cut off. gunicorn's --timeout does not bound a request under gthread;
# FLOWBRIDGE_REQUEST_TIMEOUT does.

_local_server = None


def on_starting(server):
    global _local_server
    from llm_client.local_server import ensure_local_server
    from webapp.guards.observability import gunicorn_on_starting

    gunicorn_on_starting(server)

    _local_server = ensure_local_server(os.environ)
    if _local_server is not None:
        server.log.info("local model server at %s", _local_server.base_url)


def on_exit(server):
    if _local_server is not None:
        _local_server.stop()


def worker_exit(server, worker):
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        from webapp.extensions import close_llm_client, close_workflow_runtime

        close_workflow_runtime(app)
        close_llm_client(app)


def child_exit(server, worker):
    from webapp.guards.observability import gunicorn_child_exit

    gunicorn_child_exit(server, worker)
