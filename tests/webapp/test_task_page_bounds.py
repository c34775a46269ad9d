"""The task page of a huge workflow stays bounded (:data:`webapp.pages.tasks.PAGE_BOUND`): a 10,000-node
chain runs for real (memory store, Flask's test client) and its page, any page of its node list, is
small, complete where it matters (status, outputs, errors) and links to the rest.

The chain's links are ``test-relay`` nodes (a registered executor that does nothing), not condition
nodes: the engine works out which nodes a condition's branch skips by walking the graph from both
sides, the whole rest of a chain for every condition, so a 10,000-condition chain costs O(n²) (~27 s
of CPU when idle, minutes on a loaded machine), which is the engine's business, not the page's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.workflow.builders import edge, node, obj, ref
from webapp import create_app
from webapp.extensions import close_workflow_runtime, get_workflow_runtime
from webapp.pages.tasks import MAX_GRAPH_NODES, MAX_TIMELINE_ROWS, NODES_PER_PAGE, PAGE_BOUND
from workflow import NodeResult, register_node_executor

NODES = 10_000
#: The whole task: a few seconds when idle; generous for a loaded 2-core machine.
RUN_TIMEOUT = 300
pytestmark = pytest.mark.timeout(2 * RUN_TIMEOUT)


async def _relay(ctx: Any) -> NodeResult:
    return NodeResult({})


register_node_executor("test-relay", _relay)


def chain(length: int) -> dict[str, Any]:
    """start → ``length - 2`` relay nodes → end, which returns ``q``."""
    links = [f"c{i}" for i in range(length - 2)]
    nodes = [node("start_0", "start", title="Huge chain", outputs={**obj(q={"type": "string"}), "required": ["q"]})]
    nodes += [node(c, "test-relay", title=f"Step {c}") for c in links]
    nodes.append(node("end_0", "end", inputs=obj(answer={"type": "string"}), inputsValues={"answer": ref("start_0", "q")}))
    ids = ["start_0", *links, "end_0"]
    return {"nodes": nodes, "edges": [edge(a, b) for a, b in zip(ids, ids[1:])]}


@pytest.fixture(scope="module")
def app() -> Iterator[Flask]:
    app = create_app({"FLOWBRIDGE_TASK_DB": "memory", "TESTING": True})
    yield app
    close_workflow_runtime(app)


@pytest.fixture(scope="module")
def task_id(app: Flask) -> str:
    """The 10,000-node task, run once for the module, through the runtime: its schema (~1.5 MB) is
    over the API's body limit."""
    runtime = get_workflow_runtime(app)
    task = runtime.run(json.dumps(chain(NODES)), {"q": "the answer"})
    record = runtime.wait(task, RUN_TIMEOUT)
    assert record is not None and record.status == "succeeded", record and (record.status, record.error)
    return task


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# first: before the module's big task runs
def test_a_small_workflow_is_still_drawn_on_one_page(client: FlaskClient) -> None:
    response = client.post("/api/task/run?wait=30", json={"schema": json.dumps(chain(12)), "inputs": {"q": "x"}})
    text = client.get(f"/tasks/{response.json['taskID']}").get_data(as_text=True)
    assert '<svg id="graph"' in text and text.count('class="node-detail"') == 12 and "pager" not in text
    assert text.count('class="tl-row"') == 12 and 'id="timeline-more"' not in text


def test_a_10000_node_task_page_is_bounded_and_shows_status_and_outputs(client: FlaskClient, task_id: str) -> None:
    response = client.get(f"/tasks/{task_id}", headers={"Accept": "text/html"})
    assert response.status_code == 200
    body = response.get_data()
    assert len(body) < PAGE_BOUND, f"{len(body)} bytes"
    text = body.decode()
    assert 'data-status="succeeded"' in text and "the answer" in text[text.index('id="task-outputs"'):]
    # no drawing; a bounded timeline that says how many more ran; the first page of the node list
    assert 'id="graph-too-large"' in text and f"at most {MAX_GRAPH_NODES}" in text and "<svg id=\"graph\"" not in text
    assert text.count('class="tl-row"') == MAX_TIMELINE_ROWS and f"{NODES - MAX_TIMELINE_ROWS} more ran" in text
    assert text.count('class="node-detail"') == NODES_PER_PAGE
    pages = -(-NODES // NODES_PER_PAGE)
    assert f"page 1 of {pages}" in text and f'href="/tasks/{task_id}?page=2#nodes"' in text
    # a timeline row of a node listed on another page links to that page
    assert re.search(rf'class="tl-name" href="\?page=\d+#node-c\d+"', text)


def test_a_later_page_of_the_node_list(client: FlaskClient, task_id: str) -> None:
    pages = -(-NODES // NODES_PER_PAGE)
    last = client.get(f"/tasks/{task_id}?page={pages}")
    assert last.status_code == 200 and len(last.get_data()) < PAGE_BOUND
    text = last.get_data(as_text=True)
    assert 'id="node-end_0"' in text and text.count('class="node-detail"') == NODES - (pages - 1) * NODES_PER_PAGE
    assert 'rel="prev"' in text and 'rel="next"' not in text
    assert client.get(f"/tasks/{task_id}?page={pages + 1}").status_code == 400
