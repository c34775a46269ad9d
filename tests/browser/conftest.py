"""Browser fixtures: Playwright for Python driving Debian's Chromium (never ``playwright install``).

Chromium comes from the distribution (``apt-get install -y chromium``; ``.ci/run`` installs it when
absent). Without it these tests fail, telling how to install it: they are never skipped silently.

The browser is shared by the whole ``tests/browser`` package and stopped when its last test is done
(package scope, not session scope): between its calls Playwright's sync API leaves its own event loop
marked as running in the main thread, so ``asyncio.run()`` in later tests of the same process would
fail with "cannot be called from a running event loop" while it is alive.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"]
ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Headless Chromium from ``/usr/bin/chromium``; fails the tests clearly if it is missing."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's Chromium. Install it with "
                    "`apt-get update && apt-get install -y chromium` (as root; .ci/run does this).",
                    pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `.venv/bin/pip install -e '.[test]'`", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh browser context (no cookies, storage or cache shared between tests).

    Uncaught JavaScript errors of the page are collected in ``page.js_errors``.
    """
    context = browser.new_context()
    try:
        new_page = context.new_page()
        new_page.set_default_timeout(20_000)
        new_page.js_errors = []  # type: ignore[attr-defined]
        new_page.on("pageerror", lambda error: new_page.js_errors.append(str(error)))  # type: ignore[attr-defined]
        yield new_page
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests save screenshots: ``$FLOWBRIDGE_ARTIFACTS``, default ``<repo>/test-artifacts/``.

    Session scope: it is read before the autouse fixture that clears ``FLOWBRIDGE_*`` variables.
    """
    path = Path(os.environ.get("FLOWBRIDGE_ARTIFACTS") or ROOT / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="package")
def live(
    tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path, _upstream_server: FakeUpstream
) -> Iterator[GunicornServer]:
    """The real app (``wsgi:app``) under gunicorn, 2 workers, talking to the fake upstream.

    One server for all the page tests: a SQLite task store and session key of its own; the
    gunicorn log is kept in the artifacts directory.
    """
    state = tmp_path_factory.mktemp("live")
    env = {
        "LLM_BASE_URL": _upstream_server.base_url,
        "LLM_MAX_RETRIES": "0",
        "FLOWBRIDGE_TASK_DB": str(state / "tasks.db"),
        "FLOWBRIDGE_SECRET_KEY": "browser-tests-" + state.name,
    }
    with GunicornServer(env, workers=2, threads=8, log_path=artifacts_dir / "live-gunicorn.log") as server:
        yield server
