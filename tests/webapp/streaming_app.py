"""A test-only app for gunicorn: ``create_app()`` plus functions that show when their ``finally`` ran.

Served as ``tests.webapp.streaming_app:app``. ``FLOWBRIDGE_TEST_MARKER_DIR`` is the
directory where the ``finally`` of ``tick_sync`` / ``tick_async`` writes ``<name>.closed``,
so a test can see, through a real server and without mocks, that a generator
was closed when its client went away.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from webapp import create_app, sse
from webapp.functions import InputError, get_registry

app = create_app()
registry = get_registry(app)
_MARKERS = Path(os.environ.get("FLOWBRIDGE_TEST_MARKER_DIR", "."))
_STEPS = 10000


def _marker(name: str) -> Path:
    if not re.fullmatch(r"[a-z0-9-]{1,40}", name):
        raise InputError("name", "use 1-40 of a-z, 0-9 and '-'")
    return _MARKERS / f"{name}.closed"


@registry.register
def tick_sync(name: str, delay: float = 0.05) -> Iterator[dict[str, Any]]:
    """Progress every ``delay`` seconds for a long time; writes its marker file when closed."""
    marker = _marker(name)
    try:
        yield sse.start({"name": name})
        for i in range(1, _STEPS + 1):
            yield sse.progress(i, _STEPS)
            time.sleep(delay)
    finally:
        marker.write_text("closed")


@registry.register
async def tick_async(name: str, delay: float = 0.05) -> AsyncIterator[dict[str, Any]]:
    """As ``tick_sync``, as an async generator."""
    marker = _marker(name)
    try:
        yield sse.start({"name": name})
        for i in range(1, _STEPS + 1):
            yield sse.progress(i, _STEPS)
            await asyncio.sleep(delay)
    finally:
        marker.write_text("closed")


@registry.register
def fail_after(steps: int, error: str = "value") -> Iterator[dict[str, Any]]:
    """``steps`` progress events, then a ValueError (``error="value"``) or a RuntimeError."""
    yield sse.start()
    for i in range(1, steps + 1):
        yield sse.progress(i, steps + 1)
    if error == "value":
        raise ValueError("cannot go on after step %d" % steps)
    raise RuntimeError("a bug with a secret inside")
