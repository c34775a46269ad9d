"""``async_route``: run ``async def`` Flask views on a persistent per-thread loop.

This is the only module of :mod:`async_utils` that knows about Flask.

Flask's own support for async views (``ensure_sync``, asgiref's
``async_to_sync``) starts a new thread and event loop for every call. Here a
view's coroutine runs on the calling worker thread's persistent loop
(:func:`async_utils._loops.thread_loop`), created on the thread's first async
request and reused by every later one, so nothing is created per request and
loop-bound objects never meet a "different loop" or a closed one.

Why ``request``, ``g``, ``current_app`` and ``session`` work inside the view:
Flask 3 keeps its app and request contexts in :mod:`contextvars`, and
``run_until_complete`` wraps the coroutine in a :class:`asyncio.Task`, which
runs in a copy of the current context, taken in the worker thread after
Flask pushed the request context. The copy refers to the same context
objects, so ``g.x = 1`` or ``session["k"] = v`` inside the view is seen by
Flask afterwards.

Under gunicorn, loops remember the pid that created them; a forked worker
never reuses its parent's loop.

A request deadline: an app calls :func:`set_deadline` at the start of each
request (and ``set_deadline(None)`` at its end); the view's coroutine is then
cancelled when the deadline passes and the app's error is raised instead.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ._loops import run_sync, set_deadline

if TYPE_CHECKING:
    from flask.typing import ResponseReturnValue

__all__ = ["async_route", "set_deadline"]


def async_route(
    view: Callable[..., Coroutine[Any, Any, ResponseReturnValue]],
) -> Callable[..., ResponseReturnValue]:
    """Turn an ``async def`` view into a sync one that Flask calls directly.

    ::

        @bp.post("/api/chat")
        @async_route
        async def chat() -> ResponseReturnValue:
            text = await get_llm_client().chat_async(request.json["message"])
            return {"response": text}

    Put it below the route decorator. It works on functions, methods
    (``MethodView.get``) and blueprint views. Exceptions raised by the view
    reach Flask unchanged, so the app's error handlers apply. Tasks the view
    starts and leaves running are cancelled when it returns, as Flask's
    documentation says of its own async views.

    If a loop is already running in the calling thread (unusual under WSGI),
    the view runs on a helper thread's persistent loop while this thread
    waits, with the same context.

    :param view: an ``async def`` function.
    :raises TypeError: at decoration time, if ``view`` is not an ``async def`` function.
    """
    if not inspect.iscoroutinefunction(view):
        raise TypeError(f"async_route expects an 'async def' view, got {view!r}; leave plain 'def' views undecorated")

    @functools.wraps(view)
    def run_view(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        return run_sync(view(*args, **kwargs))

    return run_view
