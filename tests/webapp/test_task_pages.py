"""The Tasks list and the task page, server side: the graph layout, and pages read without JavaScript.

The layout tests check :func:`webapp.pages.graph.layout` alone (columns by longest path, left to
right, no overlapping boxes, loop bodies nested). The page tests run real workflows against the
fake upstream with Flask's test client and read the HTML as a browser without JavaScript would.
"""

from __future__ import annotations

import html
import itertools
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.fake_upstream import FakeUpstream
from tests.workflow.builders import edge, node, obj, ref
from webapp.extensions import get_workflow_runtime
from webapp.pages.graph import COL_GAP, Box, Layout, layout
from webapp.pages.tasks import duration, pretty

# -- schemas (also used by tests/browser/test_task_page.py) ------------------------------------------

STRING = {"type": "string"}


def llm(node_id: str, prompt: dict[str, Any], title: str = "Ask the model") -> dict[str, Any]:
    """An llm node asking the configured (fake) upstream."""
    return node(node_id, "llm", title=title, inputs=obj(prompt=STRING, temperature={"type": "number"}),
                inputsValues={"prompt": prompt, "temperature": {"type": "constant", "content": 0}},
                outputs=obj(result=STRING))


def llm_schema() -> dict[str, Any]:
    """start → llm → end: the answer is the upstream's reply to ``q``."""
    return {"nodes": [node("start_0", "start", title="Ask once", outputs={**obj(q=STRING), "required": ["q"]}),
                      llm("llm_0", ref("start_0", "q")),
                      node("end_0", "end", title="Answer", inputs=obj(answer=STRING),
                           inputsValues={"answer": ref("llm_0", "result")})],
            "edges": [edge("start_0", "llm_0"), edge("llm_0", "end_0")]}


def branch_schema() -> dict[str, Any]:
    """start → condition (n == 1 → llm_a, else → llm_b) → end."""
    condition = node("condition_0", "condition", title="Which way", conditions=[
        {"key": "if_1", "value": {"left": ref("start_0", "n"), "operator": "eq",
                                  "right": {"type": "constant", "content": 1}}}])
    end = node("end_0", "end", inputs=obj(a=STRING, b=STRING),
               inputsValues={"a": ref("llm_a", "result"), "b": ref("llm_b", "result")})
    return {"nodes": [node("start_0", "start", title="Branch", outputs=obj(q=STRING, n={"type": "integer"})),
                      condition, llm("llm_a", ref("start_0", "q"), "Way A"), llm("llm_b", ref("start_0", "q"), "Way B"),
                      end],
            "edges": [edge("start_0", "condition_0"), edge("condition_0", "llm_a", "if_1"),
                      edge("condition_0", "llm_b", "else"), edge("llm_a", "end_0"), edge("llm_b", "end_0")]}


def loop_schema() -> dict[str, Any]:
    """start → loop over ``items`` (block-start → llm → block-end) → end with the answers."""
    loop = node("loop_0", "loop", title="Each item", loopFor=ref("start_0", "items"),
                loopOutputs={"answers": ref("llm_0", "result")})
    loop["blocks"] = [node("block_start_0", "block-start"), llm("llm_0", ref("loop_0_locals", "item")),
                      node("block_end_0", "block-end")]
    loop["edges"] = [edge("block_start_0", "llm_0"), edge("llm_0", "block_end_0")]
    return {"nodes": [node("start_0", "start", title="Loop", outputs=obj(items={"type": "array", "items": STRING})),
                      loop, node("end_0", "end", inputs=obj(answers={"type": "array"}),
                                 inputsValues={"answers": ref("loop_0", "answers")})],
            "edges": [edge("start_0", "loop_0"), edge("loop_0", "end_0")]}


# -- layout ------------------------------------------------------------------------------------------

def overlap(a: Box, b: Box) -> bool:
    return a.x < b.right and b.x < a.right and a.y < b.bottom and b.y < a.bottom


def check_geometry(graph: Layout) -> None:
    """No two boxes of one level overlap; children sit inside their container; all inside the drawing."""
    boxes = {b.id: b for b in graph.boxes}
    for a, b in itertools.combinations(graph.boxes, 2):
        if a.parent == b.parent:
            assert not overlap(a, b), (a, b)
    for box in graph.boxes:
        assert 0 <= box.x and box.right <= graph.width and 0 <= box.y and box.bottom <= graph.height, box
        if box.parent is not None:
            outer = boxes[box.parent]
            assert outer.container
            assert outer.x < box.x and box.right < outer.right and outer.y < box.y and box.bottom < outer.bottom


def test_columns_are_longest_paths_from_the_start_left_to_right() -> None:
    graph = layout(branch_schema())
    assert {b.id: b.depth for b in graph.boxes} == {"start_0": 0, "condition_0": 1, "llm_a": 2, "llm_b": 2, "end_0": 3}
    for link in graph.links:
        source, target = graph.box(link.source), graph.box(link.target)
        assert source.right + COL_GAP <= target.x
        assert (link.x1, link.x2) == (source.right, target.x)
        assert source.y <= link.y1 <= source.bottom and target.y <= link.y2 <= target.bottom
    assert graph.box("llm_a").x == graph.box("llm_b").x  # one column
    assert {(link.source, link.port) for link in graph.links if link.port} == {("condition_0", "if_1"),
                                                                               ("condition_0", "else")}
    check_geometry(graph)


def test_a_shortcut_does_not_pull_a_node_left() -> None:
    schema = {"nodes": [node("s", "start"), node("a", "x"), node("b", "x"), node("e", "end")],
              "edges": [edge("s", "a"), edge("a", "b"), edge("b", "e"), edge("s", "e")]}
    graph = layout(schema)
    assert [graph.box(i).depth for i in "sabe"] == [0, 1, 2, 3]
    assert graph.box("s").x < graph.box("a").x < graph.box("b").x < graph.box("e").x
    check_geometry(graph)


def test_loop_bodies_are_nested_boxes_laid_out_the_same_way() -> None:
    graph = layout(loop_schema())
    loop = graph.box("loop_0")
    assert loop.container and loop.depth == 1
    body = [b for b in graph.boxes if b.parent == "loop_0"]
    assert [b.id for b in body] == ["block_start_0", "llm_0", "block_end_0"]
    assert [b.depth for b in body] == [0, 1, 2]
    assert body[0].x < body[1].x < body[2].x
    assert graph.boxes.index(loop) < min(graph.boxes.index(b) for b in body)  # drawn under its body
    assert loop.w > 3 * body[0].w and loop.h > body[0].h
    assert graph.box("end_0").x > loop.right
    assert {link.parent for link in graph.links if link.source == "block_start_0"} == {"loop_0"}
    check_geometry(graph)


def test_loops_nest_at_any_depth() -> None:
    inner = node("inner", "loop")
    inner["blocks"] = [node("ibs", "block-start"), node("ibe", "block-end")]
    inner["edges"] = [edge("ibs", "ibe")]
    outer = node("outer", "loop")
    outer["blocks"] = [node("obs", "block-start"), inner, node("obe", "block-end")]
    outer["edges"] = [edge("obs", "inner"), edge("inner", "obe")]
    graph = layout({"nodes": [node("start_0", "start"), outer, node("end_0", "end")],
                    "edges": [edge("start_0", "outer"), edge("outer", "end_0")]})
    assert graph.box("ibs").parent == "inner" and graph.box("inner").parent == "outer"
    assert graph.box("inner").container and graph.box("inner").depth == 1
    check_geometry(graph)


def test_a_crowded_column_and_odd_schemas_still_lay_out() -> None:
    fan = {"nodes": [node("s", "start")] + [node(f"n{i}", "x") for i in range(7)] + [node("e", "end")],
           "edges": [edge("s", f"n{i}") for i in range(7)] + [edge(f"n{i}", "e") for i in range(7)]}
    check_geometry(layout(fan))
    odd = {"nodes": [node("s", "start"), node("a", "x"), node("a", "dupe"), {"type": "no id"}, "junk",
                     node("c", "comment"), node("b", "x")],
           "edges": [edge("s", "a"), edge("a", "b"), edge("b", "a"), edge("a", "ghost"), edge("b", "b"), "junk"]}
    graph = layout(odd)  # a cycle, a duplicate id, edges to nowhere: drawn, not refused
    assert [b.id for b in graph.boxes] == ["s", "a", "b"] and graph.box("a").type == "x"
    assert [b.depth for b in graph.boxes] == [0, 1, 2]
    check_geometry(graph)
    assert layout(None).boxes == [] and layout({"nodes": "x"}).links == []


def test_a_long_chain_needs_no_recursion() -> None:
    n = 3000
    graph = layout({"nodes": [node(f"n{i}", "start" if i == 0 else "x") for i in range(n)],
                    "edges": [edge(f"n{i}", f"n{i + 1}") for i in range(n - 1)]})
    assert graph.box(f"n{n - 1}").depth == n - 1


def test_titles_are_shortened_to_fit_their_box() -> None:
    graph = layout({"nodes": [node("s", "start", title="A rather long title for one small node box")]})
    box = graph.box("s")
    assert box.title.startswith("A rather long") and box.label.endswith("…") and len(box.label) < len(box.title)


def test_formatting_helpers() -> None:
    assert [duration(s) for s in (0.012, 4.25, 192, 3900)] == ["12 ms", "4.2 s", "3 min 12 s", "1 h 5 min"]
    assert pretty({"a": [1]}) == '{\n  "a": [\n    1\n  ]\n}' and pretty("<b>") == "<b>"
    assert pretty("x" * 50, limit=10).startswith("x" * 10 + "\n… (40 more characters")


# -- pages -------------------------------------------------------------------------------------------

class Page(HTMLParser):
    """Every element's tag and attributes, and the text inside elements with an id."""

    VOID = {"meta", "link", "input", "br", "img", "hr", "path", "rect"}

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: dict[str, str] = {}
        self._open: list[str | None] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.elements.append((tag, found))
        if tag not in self.VOID:
            self._open.append(found.get("id"))
            if found.get("id"):
                self.texts[found["id"]] = ""

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element_id in self._open:
            if element_id:
                self.texts[element_id] += data

    def all(self, tag: str | None = None, **attrs: str) -> list[dict[str, str]]:
        """Elements (of ``tag``) having each attribute (``data_x`` for ``data-x``); ``""`` matches any value."""
        wanted = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
        return [a for t, a in self.elements if (tag is None or t == tag)
                and all(k in a and (v == "" or a[k] == v) for k, v in wanted.items())]


# app and client: tests/webapp/conftest.py


def run(client: FlaskClient, schema: dict[str, Any], inputs: dict[str, Any], wait: float = 20) -> str:
    body = {"schema": json.dumps(schema), "inputs": inputs}
    response = client.post(f"/api/task/run?wait={wait}" if wait else "/api/task/run", json=body)
    assert response.status_code == 200, response.json
    return response.json["taskID"]


def get_page(client: FlaskClient, url: str, status: int = 200) -> Page:
    response = client.get(url, headers={"Accept": "text/html"})
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/html"
    return Page(response.get_data(as_text=True))


def csrf(page: Page) -> str:
    return page.all("meta", name="csrf-token")[0]["content"]


def test_a_finished_task_page_is_complete_without_javascript(client: FlaskClient, upstream: FakeUpstream) -> None:
    upstream.configure(reply="Paris, of course")
    task_id = run(client, llm_schema(), {"q": "capital of France?"})
    page = get_page(client, f"/tasks/{task_id}")
    assert page.all("article", id="task")[0]["data-status"] == "succeeded"
    graph_nodes = {a["data-node-id"]: a["data-status"] for a in page.all("g", data_node_id="")}
    assert graph_nodes == {"start_0": "succeeded", "llm_0": "succeeded", "end_0": "succeeded"}
    assert all("status-succeeded" in a["class"] for a in page.all("g", data_node_id=""))
    assert len(page.all("svg", id="graph")) == 1 and len(page.all("path", class_="edge")) == 2
    # every node: a link from the graph, a timeline row, a details with its snapshot
    assert [a["data-node"] for a in page.all("li", class_="tl-row")] == ["start_0", "llm_0", "end_0"]
    for node_id in graph_nodes:
        assert page.all("a", href=f"#node-{node_id}")
        assert page.all("details", id=f"node-{node_id}", data_node=node_id)
        assert "outputs" in page.texts[f"node-{node_id}"]
    assert "capital of France?" in page.texts["node-llm_0"] and "Paris, of course" in page.texts["node-llm_0"]
    assert "Paris, of course" in page.texts["task-outputs"] and "answer" in page.texts["task-outputs"]
    assert "capital of France?" in page.texts["task-inputs"]
    assert "Ask once" in page.texts["task"]  # the start node's title is the task's
    assert page.all("a", href="/tasks", aria_current="page")  # the navigation marks Tasks
    # finished: no cancel, no live stream, no refresh; the report link is there
    assert not page.all("form", id="cancel-form") and not page.all("meta", http_equiv="refresh")
    assert not [s for s in page.all("script", src="") if "events.js" in s["src"]]
    assert page.all("a", href=f"/api/task/report?taskID={task_id}")
    # data-node-id only on graph nodes (the live script and other pages' tests select them)
    assert {t for t, a in page.elements if "data-node-id" in a} == {"g"}


def test_a_branch_not_taken_stays_pending_and_ports_are_labelled(client: FlaskClient) -> None:
    task_id = run(client, branch_schema(), {"q": "hi", "n": 2})
    page = get_page(client, f"/tasks/{task_id}")
    statuses = {a["data-node-id"]: a["data-status"] for a in page.all("g", data_node_id="")}
    assert statuses == {"start_0": "succeeded", "condition_0": "succeeded", "llm_a": "pending",
                        "llm_b": "succeeded", "end_0": "succeeded"}
    assert "llm_a" not in [a["data-node"] for a in page.all("li", class_="tl-row")]
    assert "Not run." in page.texts["node-llm_a"] and "else" in page.texts["node-condition_0"]
    assert {"if_1", "else"} <= set(page.texts["graph"].split())


def test_a_loop_task_nests_its_body_and_lists_each_run(client: FlaskClient) -> None:
    task_id = run(client, loop_schema(), {"items": ["one", "two", "three"]})
    page = get_page(client, f"/tasks/{task_id}")
    loop = page.all("g", data_node_id="loop_0")[0]
    assert "container" in loop["class"] and loop["data-status"] == "succeeded"
    assert page.all("g", data_node_id="llm_0", data_status="succeeded")
    body = page.texts["node-llm_0"]
    assert "Run 3" in body and "echo: three" in body and "3 runs" in body and "Inside" in body
    assert "echo: two" in page.texts["task-outputs"]
    # bars are SVG rects placed by attributes (no style="": the CSP forbids inline styles)
    bars = [(float(a["x"]), float(a["width"])) for a in page.all("rect", class_="") if "tl-bar" in a["class"]]
    assert len(bars) == 6 and all(x >= 0 and w > 0 and x + w <= 100.01 for x, w in bars)
    assert not [a for _, a in page.elements if "style" in a]


def test_llm_output_is_text_never_markup(client: FlaskClient, upstream: FakeUpstream) -> None:
    upstream.configure(reply="<script>alert(1)</script>")
    task_id = run(client, llm_schema(), {"q": '"><img src=x onerror=alert(2)>'})
    text = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert "<script>alert(1)" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script>alert(1)</script>" in html.unescape(Page(text).texts["task-outputs"])


def test_a_failed_task_shows_its_errors(client: FlaskClient) -> None:
    task_id = run(client, llm_schema(), {}, wait=0)  # q is required: fails validation at once
    page = get_page(client, f"/tasks/{task_id}")
    assert page.all("article", id="task")[0]["data-status"] == "failed"
    assert 'Missing required property "q"' in page.texts["task-errors"]
    assert "task-outputs" not in page.texts
    assert {a["data-status"] for a in page.all("g", data_node_id="")} == {"pending"}


def test_a_running_task_page_is_live_and_cancel_needs_the_csrf_token(client: FlaskClient,
                                                                     upstream: FakeUpstream) -> None:
    upstream.configure(delay=3.0)
    task_id = run(client, llm_schema(), {"q": "slow"}, wait=0)
    page = get_page(client, f"/tasks/{task_id}")
    assert page.all("article", id="task")[0]["data-status"] == "processing"
    form = page.all("form", id="cancel-form")[0]
    assert form["method"] == "post" and form["action"] == f"/tasks/{task_id}/cancel"
    assert page.all("button", id="cancel-button") and page.all("input", name="csrf_token", value=csrf(page))
    scripts = [s["src"] for s in page.all("script", src="")]
    assert scripts == ["/static/js/events.js", "/static/js/task.js"]
    assert page.all("article", data_events_url=f"/api/task/events?taskID={task_id}")

    refused = client.post(f"/tasks/{task_id}/cancel", headers={"Accept": "text/html"})
    assert refused.status_code == 400 and "out of date" in refused.get_data(as_text=True)
    assert client.get(f"/api/task/result?taskID={task_id}").status_code == 202  # still running

    response = client.post(f"/tasks/{task_id}/cancel", data={"csrf_token": csrf(page)})
    assert response.status_code == 303 and response.headers["Location"] == f"/tasks/{task_id}"
    page = get_page(client, f"/tasks/{task_id}")  # the cancel waited for the task to stop
    assert page.all("article", id="task")[0]["data-status"] == "canceled"
    assert "canceled" in page.texts["task-errors"] and not page.all("form", id="cancel-form")
    result = client.get(f"/api/task/result?taskID={task_id}")
    assert result.status_code == 409 and result.json["error"]["type"] == "task_canceled"


def test_unknown_tasks_are_404_pages(client: FlaskClient) -> None:
    get_page(client, "/tasks/no-such-task", status=404)  # HTML, whatever the Accept header
    text = client.get("/tasks/no-such-task").get_data(as_text=True)
    assert "There is no task &#39;no-such-task&#39;" in text
    app_page = client.get("/tasks/%3Cscript%3E").get_data(as_text=True)
    assert "<script>" not in app_page.split("<main", 1)[1]
    token = csrf(get_page(client, "/tasks"))
    assert client.post("/tasks/no-such-task/cancel", data={"csrf_token": token}).status_code == 404


def test_the_task_list_filters_and_pages(client: FlaskClient, app: Flask) -> None:
    done = run(client, llm_schema(), {"q": "a"})
    failed = run(client, llm_schema(), {}, wait=0)
    page = get_page(client, "/tasks")
    rows = {a["data-task-id"]: a["data-status"] for a in page.all("tr", data_task_id="")}
    assert rows == {done: "succeeded", failed: "failed"}
    assert page.all("a", href=f"/tasks/{done}") and "Ask once" in page.texts["tasks"]
    assert 'Missing required property' in page.texts["tasks"]
    for status in ("pending", "processing", "succeeded", "failed", "canceled"):
        assert page.all("a", href=f"/tasks?status={status}")

    only_failed = get_page(client, "/tasks?status=failed")
    assert [a["data-task-id"] for a in only_failed.all("tr", data_task_id="")] == [failed]
    assert only_failed.all("a", href="/tasks?status=failed", aria_current="true")
    assert "No canceled tasks" in " ".join(get_page(client, "/tasks?status=canceled").texts.values())
    bogus = client.get("/tasks?status=bogus").get_data(as_text=True)
    assert "There is no status &#39;bogus&#39;" in bogus and done in bogus
    assert client.get("/tasks?status=bogus&offset=x").status_code == 400  # tests/webapp/test_task_limits.py

    runtime = get_workflow_runtime(app)
    for _ in range(26):  # the list shows 25 per page
        runtime.run(json.dumps(llm_schema()), {})
    first = get_page(client, "/tasks")
    assert len(first.all("tr", data_task_id="")) == 25 and first.all("a", href="/tasks?offset=25", rel="next")
    second = get_page(client, "/tasks?offset=25")
    assert len(second.all("tr", data_task_id="")) == 3 and second.all("a", href="/tasks", rel="prev")
    assert done in {a["data-task-id"] for a in second.all("tr", data_task_id="")}


def test_a_long_loop_page_stays_under_100_kb_with_its_assets(client: FlaskClient) -> None:
    task_id = run(client, loop_schema(), {"items": [f"item number {i}" for i in range(300)]})
    page = client.get(f"/tasks/{task_id}").get_data(as_text=True)
    assert "290 more runs are in the" in page  # the rest of the snapshots are in the JSON report
    static = Path(__file__).resolve().parents[2] / "webapp" / "static"
    assets = [static / "js" / "task.js", static / "js" / "events.js", static / "css" / "task.css",
              static / "css" / "app.css"]
    assert len(page.encode()) + sum(p.stat().st_size for p in assets) < 100_000
    assert re.search(r"innerHTML|insertAdjacentHTML|document\.write", assets[0].read_text()) is None
