"""``async_route``: async Flask views on a persistent per-thread loop."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from typing import Any

import pytest
from flask import Blueprint, Flask, current_app, g, jsonify, request, session
from flask.views import MethodView
from werkzeug.serving import make_server

from async_utils import async_route, loops_created
from async_utils._loops import thread_loop

JOIN_TIMEOUT = 10.0


class TeapotError(Exception):
    """A custom error the app's handler turns into a 418."""


@pytest.fixture
def app() -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY="test", GREETING="hello")
    app.extensions["seen"] = {"loops": [], "errors": [], "g_after": []}

    @app.before_request
    def load_user() -> None:
        g.user = request.headers.get("X-User", "anon")

    @app.after_request
    def record_g(response: Any) -> Any:
        app.extensions["seen"]["g_after"].append(g.get("set_in_view"))
        return response

    @app.errorhandler(TeapotError)
    def teapot(exc: TeapotError) -> Any:
        app.extensions["seen"]["errors"].append(exc)
        return jsonify(error={"type": "TeapotError", "message": str(exc)}), 418

    @app.post("/echo")
    @async_route
    async def echo() -> Any:
        await asyncio.sleep(0)
        app.extensions["seen"]["loops"].append(asyncio.get_running_loop())
        g.set_in_view = "from view"
        session["visits"] = session.get("visits", 0) + 1
        return jsonify(
            message=request.json["message"],
            user=g.user,
            greeting=current_app.config["GREETING"],
            visits=session["visits"],
        )

    @app.get("/teapot")
    @async_route
    async def teapot_view() -> Any:
        await asyncio.sleep(0)
        raise TeapotError("short and stout")

    @app.get("/ping")
    @async_route
    async def ping() -> str:
        await asyncio.sleep(0)
        return "pong"

    return app


def test_view_sees_request_g_current_app_and_session(app: Flask) -> None:
    client = app.test_client()
    for visit in (1, 2):
        response = client.post("/echo", json={"message": "hi"}, headers={"X-User": "ada"})
        assert response.status_code == 200
        assert response.get_json() == {"message": "hi", "user": "ada", "greeting": "hello", "visits": visit}
    # ``g`` set inside the view is the request's own ``g``.
    assert app.extensions["seen"]["g_after"] == ["from view", "from view"]


def test_exceptions_reach_flask_error_handlers(app: Flask) -> None:
    response = app.test_client().get("/teapot")
    assert response.status_code == 418
    assert response.get_json() == {"error": {"type": "TeapotError", "message": "short and stout"}}
    [error] = app.extensions["seen"]["errors"]
    assert type(error) is TeapotError


def test_sequential_requests_reuse_one_loop_and_no_threads(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/ping").data == b"pong"  # warm-up: may create this thread's loop
    loops_before = loops_created()
    threads_before = threading.active_count()
    for i in range(200):
        response = client.post("/echo", json={"message": i})
        assert response.status_code == 200
        assert response.get_json()["message"] == i
    assert loops_created() - loops_before == 0
    assert threading.active_count() == threads_before
    loops = app.extensions["seen"]["loops"]
    assert len(loops) == 200
    assert all(loop is thread_loop() for loop in loops)
    assert not thread_loop().is_closed()


def test_leftover_tasks_are_cancelled_when_the_view_returns(app: Flask) -> None:
    outcome: list[str] = []

    async def background() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    @app.get("/spawn")
    @async_route
    async def spawn() -> str:
        asyncio.ensure_future(background())
        await asyncio.sleep(0)
        return "spawned"

    assert app.test_client().get("/spawn").data == b"spawned"
    assert outcome == ["cancelled"]


def test_method_views_and_blueprints() -> None:
    app = Flask(__name__)
    bp = Blueprint("things", __name__, url_prefix="/things")

    class ThingView(MethodView):
        @async_route
        async def get(self, name: str) -> Any:
            await asyncio.sleep(0)
            return {"name": name, "method": request.method, "view": type(self).__name__}

    @bp.get("/<int:n>")
    @async_route
    async def by_number(n: int) -> Any:
        await asyncio.sleep(0)
        return {"n": n, "blueprint": request.blueprint}

    bp.add_url_rule("/named/<name>", view_func=ThingView.as_view("named"))
    app.register_blueprint(bp)
    client = app.test_client()
    assert client.get("/things/7").get_json() == {"n": 7, "blueprint": "things"}
    assert client.get("/things/named/x").get_json() == {"name": "x", "method": "GET", "view": "ThingView"}


def test_decorator_keeps_metadata_and_rejects_sync_views() -> None:
    async def documented() -> str:
        """Docstring."""
        return "x"

    wrapped = async_route(documented)
    assert wrapped.__name__ == "documented"
    assert wrapped.__doc__ == "Docstring."
    assert wrapped.__wrapped__ is documented  # type: ignore[attr-defined]
    assert wrapped() == "x"

    def plain() -> str:
        return "x"

    with pytest.raises(TypeError, match="async def"):
        async_route(plain)  # type: ignore[arg-type]


def test_called_under_a_running_loop_falls_back_to_helper(app: Flask) -> None:
    """Unusual, but must neither deadlock nor fail with "already running"."""
    results: list[Any] = []

    async def drive() -> None:
        # The test client calls the view synchronously while this loop runs.
        response = app.test_client().post("/echo", json={"message": "nested"})
        results.append((response.status_code, response.get_json()["message"]))

    thread = threading.Thread(target=lambda: asyncio.run(drive()))
    thread.start()
    thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive()
    assert results == [(200, "nested")]


def test_concurrent_requests_on_a_real_server_use_per_thread_loops() -> None:
    workers = 4
    app = Flask(__name__)
    barrier = threading.Barrier(workers, timeout=JOIN_TIMEOUT)
    seen: list[dict[str, Any]] = []
    problems: list[str] = []
    lock = threading.Lock()

    @app.errorhandler(Exception)
    def record(exc: Exception) -> Any:
        problems.append(repr(exc))
        return {"error": repr(exc)}, 500

    @app.get("/work/<int:n>")
    @async_route
    async def work(n: int) -> Any:
        loop = asyncio.get_running_loop()
        entry = {"n": n, "loop": loop, "thread": threading.current_thread(), "own": loop is thread_loop()}
        with lock:
            seen.append(entry)
        # Every request waits here until all are in flight at once; the wait
        # runs in a worker thread so the loop itself never blocks.
        await asyncio.to_thread(barrier.wait)
        # Loop-bound primitives work on this thread's loop.
        event = asyncio.Event()
        loop.call_soon(event.set)
        await asyncio.wait_for(event.wait(), JOIN_TIMEOUT)
        return {"n": n, "path": request.path}

    server = make_server("127.0.0.1", 0, app, threaded=True)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    serving.start()
    responses: dict[int, tuple[int, dict[str, Any]]] = {}

    def fetch(n: int) -> None:
        url = f"http://127.0.0.1:{server.server_port}/work/{n}"
        with urllib.request.urlopen(url, timeout=JOIN_TIMEOUT) as reply:
            responses[n] = (reply.status, json.loads(reply.read()))

    try:
        clients = [threading.Thread(target=fetch, args=(n,)) for n in range(workers)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(JOIN_TIMEOUT)
    finally:
        server.shutdown()
        server.server_close()
        serving.join(JOIN_TIMEOUT)

    assert problems == []
    assert responses == {n: (200, {"n": n, "path": f"/work/{n}"}) for n in range(workers)}
    assert len({id(entry["loop"]) for entry in seen}) == workers
    assert len({entry["thread"].ident for entry in seen}) == workers
    assert all(entry["own"] for entry in seen)
    # Request threads exit after their response; their loops are closed with them.
    for entry in seen:
        entry["thread"].join(JOIN_TIMEOUT)
        assert entry["loop"].is_closed()
