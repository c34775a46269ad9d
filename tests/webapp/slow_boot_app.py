"""A test-only app whose later gunicorn workers boot slowly: ``tests.webapp.slow_boot_app:app``.

The first worker to import it loads the app at once; every other one first waits
``FLOWBRIDGE_TEST_BOOT_DELAY`` seconds, as a worker still importing on a loaded machine does.
Each writes ``<pid>.ready`` into ``FLOWBRIDGE_TEST_MARKER_DIR`` once it holds the app, so a test
can tell which workers could serve at a given moment.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from webapp import create_app

_MARKERS = Path(os.environ["FLOWBRIDGE_TEST_MARKER_DIR"])

try:
    (_MARKERS / "first-worker").open("x").close()  # exclusive create: exactly one worker wins
except FileExistsError:
    time.sleep(float(os.environ.get("FLOWBRIDGE_TEST_BOOT_DELAY", "2")))
app = create_app()
(_MARKERS / f"{os.getpid()}.ready").touch()
