"""The package layout rules of DESIGN.md: explicit public APIs, imports pointing one way."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import llm_client
import webapp
import webapp.functions
import webapp.sse

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("module", [llm_client, webapp, webapp.functions, webapp.sse])
def test_public_api_is_sorted_and_importable(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert names == sorted(names)
    for name in names:
        assert getattr(module, name) is not None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_only_webapp_and_the_route_bridge_import_flask() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for package in ("llm_client", "async_utils")
        for path in (ROOT / package).rglob("*.py")
        if "flask" in _imports(path) and path.name != "flask_bridge.py"
    ]
    assert offenders == []


def test_lower_packages_never_import_webapp() -> None:
    for package in ("llm_client", "async_utils"):
        for path in (ROOT / package).rglob("*.py"):
            assert "webapp" not in _imports(path), path


def test_cli_help() -> None:
    for args in ([], ["serve"]):
        done = subprocess.run([sys.executable, "-m", "webapp.cli", *args, "--help"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "usage: flowbridge" in done.stdout
    done = subprocess.run([sys.executable, "-m", "webapp.cli", "fly"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "invalid choice" in done.stderr
