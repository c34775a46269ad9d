"""The shared live server serves the pages, in a real browser, without JavaScript errors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tests.servers import GunicornServer

if TYPE_CHECKING:
    from playwright.sync_api import Page


def test_the_home_page_links_every_section(live: GunicornServer, page: Page, artifacts_dir: Path) -> None:
    page.goto(live.url + "/")
    labels = page.locator("header nav a").all_inner_texts()
    assert labels == ["Chat", "Ops & flows", "Workflows", "Tasks", "Functions", "API docs"]
    page.screenshot(path=str(artifacts_dir / "home.png"), full_page=True)
    assert page.js_errors == []  # type: ignore[attr-defined]
