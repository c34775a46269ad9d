"""The package layout rules of DESIGN.md: explicit public APIs, imports pointing one way."""

from __future__ import annotations

import ast
import re
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


#: DESIGN.md's import direction: each package may import only the packages after it here.
LAYERS = ("webapp", "workflow", "ops", "llm_client", "async_utils")


def test_only_webapp_and_the_route_bridge_import_flask() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for package in LAYERS[1:]
        for path in (ROOT / package).rglob("*.py")
        if "flask" in _imports(path) and path.name != "flask_bridge.py"
    ]
    assert offenders == []


@pytest.mark.parametrize("package", LAYERS[1:])
def test_imports_point_one_way(package: str) -> None:
    """No package imports one above it (``workflow`` never imports ``webapp``, ``ops`` never ``workflow``...)."""
    above = set(LAYERS[: LAYERS.index(package)])
    if package == "async_utils":  # the LLM client uses the async helpers, not the other way round
        above.add("llm_client")
    offenders = sorted(f"{path.relative_to(ROOT)}: {sorted(_imports(path) & above)}"
                       for path in (ROOT / package).rglob("*.py") if _imports(path) & above)
    assert offenders == []


def test_cli_help() -> None:
    for args in ([], ["serve"]):
        done = subprocess.run([sys.executable, "-m", "webapp.cli", *args, "--help"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "usage: flowbridge" in done.stdout
    done = subprocess.run([sys.executable, "-m", "webapp.cli", "fly"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "invalid choice" in done.stderr


def _relative_targets(path: Path) -> set[str]:
    """The ``webapp`` subpackages a module of ``webapp`` imports (relative or absolute), as dotted names."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_nothing_below_the_views_imports_routes_or_pages() -> None:
    """routes/ and pages/ import the rest of webapp, never the other way (app.py registers them)."""
    offenders = []
    for path in (ROOT / "webapp").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("webapp/routes/", "webapp/pages/")) or rel == "webapp/app.py":
            continue
        bad = {name for name in _relative_targets(path)
               if name.startswith(("webapp.routes", "webapp.pages"))}
        if bad:
            offenders.append(f"{rel}: {sorted(bad)}")
    assert offenders == []


def test_webapp_top_level_stays_small() -> None:
    """webapp/ is grouped by purpose (cli/, guards/, routes/, pages/, functions/), not a heap of modules."""
    loose = sorted(p.name for p in (ROOT / "webapp").glob("*.py"))
    assert len(loose) <= 12, loose


# A path built from ``__file__`` that climbs out of the repository: ``parents[N]`` or ``.parent`` repeated.
_PARENTS = re.compile(r"__file__\)?(?:\.resolve\(\))?((?:\.parent\b)+)?(?:\.parents\[(\d+)\])?")
# The project folder beside the checkout (its name is put together here, so this file never spells out
# a path into it): ``../<name>``, ``/work/<name>``, ``<name>/conformance`` and the like.
_FOLDER = "sha" + "red"
_SHARED = re.compile(rf"\.\./{_FOLDER}\b|/work/{_FOLDER}\b|[\"']{_FOLDER}[\"']\s*/\s*[\"'](?:conformance|seeds|specs)"
                     rf"|\b{_FOLDER}/(?:conformance|seeds|specs)\b")


def test_tests_carry_their_own_data() -> None:
    """No test reads the project folder beside the checkout, or anything else outside it: `make test` must
    pass on a bare clone."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path == Path(__file__).resolve():  # this test names the patterns it looks for
            continue
        rel = path.relative_to(ROOT)
        depth = len(rel.parts) - 1  # path.parents[depth] is ROOT
        for number, line in enumerate(path.read_text().splitlines(), 1):
            # ``.parent`` n times is parents[n - 1]; n times then ``.parents[i]`` is parents[n + i]
            climbs = [len(dots) // len(".parent") + int(index) if index else len(dots) // len(".parent") - 1
                      for dots, index in _PARENTS.findall(line) if dots or index]
            if _SHARED.search(line) or any(climb > depth for climb in climbs):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert offenders == []
    cases = ROOT / "tests" / "workflow" / "flowgram"
    assert (cases / "expected-results.json").is_file() and (cases / "LICENSE").is_file()
    assert "github.com/bytedance/flowgram.ai" in (cases / "README.md").read_text()
