from __future__ import annotations

import ast
import pathlib

import async_utils

PACKAGE = pathlib.Path(async_utils.__file__).parent


def test_all_is_sorted_and_complete() -> None:
    assert async_utils.__all__ == sorted(async_utils.__all__)
    assert async_utils.__all__ == [
        "AsyncBatchProcessor",
        "AsyncConfig",
        "AsyncConfigError",
        "AsyncHelper",
        "Deadline",
        "PerThread",
        "async_route",
        "current_deadline",
        "loops_created",
        "thread_loop",
    ]
    for name in async_utils.__all__:
        assert getattr(async_utils, name) is not None


def _imported_modules(path: pathlib.Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_only_flask_bridge_imports_flask() -> None:
    importers = {p.name for p in PACKAGE.glob("*.py") if "flask" in _imported_modules(p)}
    assert importers <= {"flask_bridge.py"}


def test_modules_stay_small() -> None:
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) < 300, path.name
