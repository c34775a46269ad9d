"""A live gunicorn of the app for the ``/v1`` tests (tests/webapp/test_openai_*.py), and its models.

The server runs the example flows (``examples/flows.yaml``) and a workflows folder made here: the
example workflows, plus ``answer``, the branch example reduced to one string output (so its answer is
text, not JSON). API keys are on, so the SDK's ``api_key`` is what authenticates it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.servers import ROOT, GunicornServer

KEY = "sk-flowbridge-test-" + "k" * 16
UPSTREAM_MODEL = "test-model"


def workflows_folder(folder: Path) -> Path:
    """A copy of examples/workflows/*.json plus ``answer.json`` (branch.json whose end node keeps only
    its ``answer``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in (ROOT / "examples" / "workflows").glob("*.json"):
        shutil.copy(path, folder / path.name)
    schema: dict[str, Any] = json.loads((ROOT / "examples" / "workflows" / "branch.json").read_text())
    for node in schema["nodes"]:
        if node["type"] == "end":
            node["data"]["inputs"]["properties"] = {"answer": {"type": "string"}}
            node["data"]["inputsValues"] = {"answer": node["data"]["inputsValues"]["answer"]}
    (folder / "answer.json").write_text(json.dumps(schema))
    return folder


def serve(upstream_url: str, folder: Path, extra: Mapping[str, str] | None = None, *, workers: int = 2,
          threads: int = 8) -> GunicornServer:
    """The app under gunicorn (not started): the fake upstream, the flows, the workflows, API keys."""
    env = {"LLM_BASE_URL": upstream_url, "LLM_MODEL": UPSTREAM_MODEL, "LLM_MAX_RETRIES": "0",
           "FLOWBRIDGE_FLOWS": str(ROOT / "examples" / "flows.yaml"),
           "FLOWBRIDGE_WORKFLOWS_DIR": str(workflows_folder(folder / "workflows")),
           "FLOWBRIDGE_TASK_DB": str(folder / "tasks.db"), "FLOWBRIDGE_SECRET_KEY": "test-secret-key",
           "FLOWBRIDGE_API_KEYS": KEY, **(extra or {})}
    return GunicornServer(env, workers=workers, threads=threads, log_path=folder / "gunicorn.log")
