"""The JSON API, the task API and the pages under hostile and broken input, as an attacker or a broken legacy
client sends it: numbers past the float range and integers of thousands of digits in every numeric place,
odd workflow schemas, ``Last-Event-ID``/``wait``/``limit``/``offset``/``status`` of every wrong kind, task ids
that are path tricks, http node URLs that try to get past the allow-list...

The rules: bad input is a 4xx whose JSON body names the problem (never a 500 or a traceback in the log); a
task always ends (nothing left ``processing``); an llm node's ``apiKey`` never shows in a response, a page
or the log.

"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.fake_upstream import FakeUpstream

# app and client: tests/webapp/conftest.py (the fake upstream, an in-memory task store)

M = {"position": {"x": 0, "y": 0}}
TERMINAL = ("succeeded", "failed", "canceled")
HUGE_INT = "9" * 5000  # past Python's 4,300-digit int() limit
BIG_INT = "9" * 4000  # parses, but is far past 2**1024
SECRET = "sk-HOSTILE-SECRET-0123456789"


# -- helpers -------------------------------------------------------------------------------------------------

def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, "logged: " + "; ".join(f"{r.name}: {r.getMessage()}" for r in bad)


def api_error(response: TestResponse, status: int, *needles: str) -> str:
    """The message of a JSON error ``{"error": {"type", "message"}}`` with ``status``, holding each needle."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, f"{response.status_code}: {text[:600]}"
    body = response.get_json()
    assert isinstance(body, dict) and set(body["error"]) == {"type", "message"}, text[:300]
    message = body["error"]["message"]
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def node(node_id: str, node_type: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, "meta": M, "data": data}


def edge(source: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"sourceNodeID": source, "targetNodeID": target, **extra}


def start(**properties: Any) -> dict[str, Any]:
    return node("start_0", "start", outputs={"type": "object", "properties": properties or {"q": {"type": "string"}}})


def end(ref: tuple[str, str] = ("start_0", "q"), value_type: str = "string") -> dict[str, Any]:
    return node("end_0", "end", inputs={"type": "object", "properties": {"r": {"type": value_type}}},
                inputsValues={"r": {"type": "ref", "content": list(ref)}})


def chain(*middle: dict[str, Any], end_node: dict[str, Any] | None = None,
          start_node: dict[str, Any] | None = None) -> dict[str, Any]:
    nodes = [start_node or start(), *middle, end_node or end()]
    return {"nodes": nodes, "edges": [edge(a["id"], b["id"]) for a, b in zip(nodes, nodes[1:])]}


def simple() -> dict[str, Any]:
    return chain()


def wait_for_end(client: FlaskClient, task_id: str, timeout: float = 15.0) -> dict[str, Any]:
    """The task's report once it ended (bounded: fails if it is still running after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        report = client.get(f"/api/task/report?taskID={task_id}").get_json()
        status = report["workflowStatus"]["status"]
        if status in TERMINAL:
            return report
        assert time.monotonic() < deadline, f"task {task_id} still {status} after {timeout}s"
        client.get(f"/api/task/result?taskID={task_id}&wait=0.5")


def run_task(client: FlaskClient, schema: Any, inputs: Any = None, *, raw: str | None = None) -> dict[str, Any]:
    """Run a task that must be accepted (200) and end; its report."""
    body = raw if raw is not None else json.dumps({"schema": schema, "inputs": {} if inputs is None else inputs})
    response = client.post("/api/task/run?wait=10", data=body, content_type="application/json")
    assert response.status_code == 200, response.get_data(as_text=True)[:600]
    return wait_for_end(client, response.json["taskID"])


def errors_of(report: dict[str, Any]) -> str:
    return "; ".join(m["message"] for m in report["messages"]["error"])


def nothing_left_running(client: FlaskClient) -> None:
    """No task is stuck: every task listed ends within a few seconds."""
    for task in client.get("/api/tasks?limit=500").json["tasks"]:
        if task["status"] not in TERMINAL:
            wait_for_end(client, task["taskID"], timeout=5)


@pytest.fixture
def task_id(client: FlaskClient) -> str:
    """A task that succeeded."""
    response = client.post("/api/task/run?wait=10", json={"schema": simple(), "inputs": {"q": "x"}})
    assert response.json["status"] == "succeeded", response.json
    return response.json["taskID"]


@pytest.fixture
def csrf(client: FlaskClient) -> str:
    page = client.get("/workflows").get_data(as_text=True)
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found, "the Workflows page has no CSRF token"
    return found.group(1)


# -- query parameters: Last-Event-ID, wait, limit, offset, status ------------------------------------------------

@pytest.mark.parametrize("value", ["-1", "99999999999999999999", HUGE_INT, "abc", "1.5", "+3", "0x1", "1e3", "done",
                                   "%", "\u00c2\u00b2"])
def test_a_bad_last_event_id_is_a_400_naming_it(client: FlaskClient, caplog: pytest.LogCaptureFixture, task_id: str,
                                                value: str) -> None:
    api_error(client.get(f"/api/task/events?taskID={task_id}", headers={"Last-Event-ID": value}), 400,
              "Last-Event-ID")
    api_error(client.get("/api/task/events", query_string={"taskID": task_id, "lastEventId": value}), 400,
              "lastEventId")
    no_traceback(caplog)


def test_good_last_event_ids_resume_or_end_the_stream(client: FlaskClient, task_id: str) -> None:
    assert client.get(f"/api/task/events?taskID={task_id}", headers={"Last-Event-ID": "end"}).status_code == 204
    for value in ("0", " 3 ", "999999999999"):  # past the last event: only the final one
        response = client.get(f"/api/task/events?taskID={task_id}", headers={"Last-Event-ID": value})
        assert response.status_code == 200 and '"type":"done"' in response.get_data(as_text=True)


def test_a_last_event_id_of_another_task_never_crosses_streams(client: FlaskClient, task_id: str) -> None:
    other = client.post("/api/task/run?wait=10", json={"schema": simple(), "inputs": {"q": "other"}}).json["taskID"]
    text = client.get(f"/api/task/events?taskID={other}", headers={"Last-Event-ID": "1"}).get_data(as_text=True)
    assert other in text and task_id not in text


@pytest.mark.parametrize("value", ["\u00b2", "\u00b9", "1\u00b3"])
def test_a_superscript_digit_last_event_id_is_a_400(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                                    task_id: str, value: str) -> None:
    # a raw Latin-1 byte 0xB2 in the header, or ?lastEventId=%C2%B2
    api_error(client.get("/api/task/events", query_string={"taskID": task_id, "lastEventId": value}), 400,
              "lastEventId")
    api_error(client.get(f"/api/task/events?taskID={task_id}", headers={"Last-Event-ID": value}), 400,
              "Last-Event-ID")
    no_traceback(caplog)


@pytest.mark.parametrize("wait", ["-1", "nan", "NaN", "inf", "-inf", "1e400", HUGE_INT, "61", "", " ", "0x10", "true"])
def test_a_bad_wait_is_a_400_naming_it(client: FlaskClient, caplog: pytest.LogCaptureFixture, task_id: str,
                                       wait: str) -> None:
    api_error(client.get("/api/task/result", query_string={"taskID": task_id, "wait": wait}), 400, "wait")
    api_error(client.post("/api/task/run", query_string={"wait": wait}, json={"schema": simple(), "inputs": {"q": "x"}}),
              400, "wait")
    assert client.get("/api/tasks").json["total"] == 1  # the refused run left no task
    no_traceback(caplog)


@pytest.mark.parametrize("wait", ["-0", "0", "0.0001", "1e-400"])
def test_a_zero_or_tiny_wait_answers_at_once(client: FlaskClient, task_id: str, wait: str) -> None:
    assert client.get("/api/task/result", query_string={"taskID": task_id, "wait": wait}).json == {"r": "x"}


@pytest.mark.parametrize("bad", ["../../etc/passwd", "x" * 20000, "\u00e9\u20ac\U0001d11e", "\x00", "%00", "a/b", " ",
                                 "null", "' OR 1=1 --"])
def test_an_unknown_task_id_is_a_404_naming_it(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                               bad: str) -> None:
    for path in ("/api/task/report", "/api/task/result", "/api/task/events"):
        message = api_error(client.get(path, query_string={"taskID": bad}), 404, "no task")
        assert len(message) < 30000
    assert client.put("/api/task/cancel", json={"taskID": bad}).json == {"success": False}
    assert client.get("/tasks/" + bad.replace("/", "%2F")).status_code == 404
    no_traceback(caplog)


@pytest.mark.parametrize("body", [{}, {"taskID": ""}, {"taskID": 5}, {"taskID": ["x"]}, {"taskID": None},
                                  {"taskID": "x", "extra": 1}])
def test_a_bad_cancel_body_is_a_400_naming_task_id(client: FlaskClient, body: dict[str, Any]) -> None:
    api_error(client.put("/api/task/cancel", json=body), 400, "taskID" if "extra" not in body else "extra")


@pytest.mark.parametrize(("query", "named"), [
    ({"limit": "0"}, "limit"), ({"limit": "-0"}, "limit"), ({"limit": "501"}, "limit"), ({"limit": "1.0"}, "limit"),
    ({"limit": "1e3"}, "limit"), ({"limit": "nan"}, "limit"), ({"limit": "\u0663"}, "limit"),
    ({"limit": HUGE_INT}, "limit"), ({"offset": "-1"}, "offset"), ({"offset": HUGE_INT}, "offset"),
    ({"offset": "99999999999999999999"}, "offset"), ({"offset": "1_0"}, "offset"), ({"status": "bogus"}, "status"),
    ({"status": "x" * 10000}, "status"), ({"status": "\x00"}, "status"), ({"status": "SUCCEEDED"}, "status"),
])
def test_a_bad_task_list_query_is_a_400_naming_the_parameter(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                                             query: dict[str, str], named: str) -> None:
    api_error(client.get("/api/tasks", query_string=query), 400, named)
    no_traceback(caplog)


@pytest.mark.parametrize("query", [{"offset": "-1"}, {"offset": HUGE_INT}, {"status": "bogus"}, {"limit": HUGE_INT}])
def test_the_tasks_page_answers_bad_queries_without_a_500(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                                          task_id: str, query: dict[str, str]) -> None:
    assert client.get("/tasks", query_string=query).status_code in (200, 400)
    assert client.get(f"/tasks/{task_id}", query_string={**query, "page": HUGE_INT}).status_code in (200, 400)
    no_traceback(caplog)


# -- numbers in bodies --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("number", "needle"), [
    ("1e400", "too large"), ("-1e400", "too large"), (HUGE_INT, "4300 digits"), ("NaN", "NaN"),
    ("Infinity", "Infinity"), ("-Infinity", "Infinity"),
])
def test_a_number_json_cannot_hold_is_a_400_everywhere(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                                       number: str, needle: str) -> None:
    schema = json.dumps(chain(end_node=end(value_type="number"), start_node=start(q={"type": "number"})))
    for path in ("/api/task/run", "/api/task/validate"):
        api_error(client.post(path, data='{"schema": %s, "inputs": {"q": %s}}' % (schema, number),
                              content_type="application/json"), 400, needle)
        api_error(client.post(path, data='{"schema": %s, "inputs": {}}' % schema.replace('"x": 0', '"x": ' + number),
                              content_type="application/json"), 400, needle)
    api_error(client.post("/api/chat", data='{"message": "hi", "temperature": %s}' % number,
                          content_type="application/json"), 400, needle)
    api_error(client.post("/api/ops/echo_tool", data='{"inputs": {"text": %s}}' % number,
                          content_type="application/json"), 400, needle)
    api_error(client.post("/invoke/count_to", data='{"inputs": {"n": %s}}' % number,
                          content_type="application/json"), 400, needle)
    api_error(client.post("/invoke/count_to", data={"inputs": '{"n": %s}' % number}), 400, needle)
    assert client.get("/api/tasks").json["total"] == 0  # no ghost task
    no_traceback(caplog)


def test_an_integer_past_2_pow_1024_is_a_400_naming_where_it_is(client: FlaskClient) -> None:
    schema = json.dumps(chain(start_node=start(q={"type": "integer"}), end_node=end(value_type="integer")))
    for path in ("/api/task/run", "/api/task/validate"):
        api_error(client.post(path, data='{"schema": %s, "inputs": {"q": %s}}' % (schema, BIG_INT),
                              content_type="application/json"), 400, "inputs.q", "too large")
        # inside a schema sent as a JSON string (FlowGram's way), and in global variable defaults
        as_text = schema.replace('"x": 0', '"x": ' + BIG_INT, 1)
        api_error(client.post(path, json={"schema": as_text, "inputs": {"q": 1}}), 400, "meta.position.x")
        api_error(client.post(path, json={"schema": as_text.replace(BIG_INT, HUGE_INT), "inputs": {"q": 1}}), 400,
                  "schema is not valid JSON", "4300 digits")
    assert client.get("/api/tasks").json["total"] == 0


@pytest.mark.parametrize(("value", "expected"), [("-0", 0), ("1.0", 1), ("-1e-400", 0), ("1e308", 1e308)])
def test_odd_but_valid_numbers_run(client: FlaskClient, value: str, expected: float) -> None:
    schema = json.dumps(chain(start_node=start(q={"type": "number"}), end_node=end(value_type="number")))
    report = run_task(client, None, raw='{"schema": %s, "inputs": {"q": %s}}' % (schema, value))
    assert report["workflowStatus"]["status"] == "succeeded" and report["outputs"] == {"r": expected}


@pytest.mark.parametrize(("field", "value"), [("n", "1e400"), ("n", HUGE_INT), ("n", "3.0"), ("n", "nope"),
                                              ("delay", "inf"), ("delay", "-inf"), ("delay", "2")])
def test_a_bad_form_number_of_invoke_is_a_400_naming_the_input(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                                               field: str, value: str) -> None:
    form = {"n": "2", "delay": "0", field: value}
    for content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        api_error(client.post("/invoke/count_to", data=form, content_type=content_type), 400, f"inputs.{field}")
    no_traceback(caplog)


@pytest.mark.parametrize(("function", "form"), [("batch_process", {"items": "[1, 2]", "delay": "nan"}),
                                                ("count_to", {"n": "2", "delay": "nan"}),
                                                ("chat_stream", {"message": "hi", "temperature": "NaN"})])
def test_a_nan_form_number_of_invoke_is_a_400(client: FlaskClient, function: str, form: dict[str, str]) -> None:
    name = next(k for k, v in form.items() if v.lower() == "nan")
    api_error(client.post(f"/invoke/{function}", data=form), 400, f"inputs.{name}")


def test_an_event_stream_never_sends_a_frame_json_cannot_read(client: FlaskClient) -> None:
    response = client.post("/invoke/batch_process", json={"inputs": {"items": [1e200], "delay": 0}})
    assert response.status_code == 200
    for line in response.get_data(as_text=True).splitlines():
        if line.startswith("data: "):
            json.loads(line[6:], parse_constant=lambda name: pytest.fail(f"{name} in {line!r}"))
    big = client.post("/invoke/batch_process", json={"inputs": {"items": [int("9" * 2500)], "delay": 0}})
    frames = [json.loads(x[6:]) for x in big.get_data(as_text=True).splitlines() if x.startswith("data: ")]
    assert frames[-1]["type"] in ("done", "error")


@pytest.mark.parametrize("text", ['{"a": 1e400}', '{"a": NaN}', '[-Infinity]'])
def test_extract_json_never_answers_a_body_json_cannot_read(client: FlaskClient, text: str) -> None:
    response = client.post("/api/ops/extract_json", json={"inputs": {"text": text}})
    json.loads(response.get_data(as_text=True), parse_constant=lambda name: pytest.fail(f"{name} in the body"))


# -- odd workflow schemas -----------------------------------------------------------------------------------------

def _dup_end() -> dict[str, Any]:
    s = simple()
    s["nodes"].append(end())
    return s


def _same_id() -> dict[str, Any]:
    s = simple()
    s["nodes"][1]["id"] = "start_0"
    return s


def _with_edge(*extra: dict[str, Any]) -> dict[str, Any]:
    s = simple()
    s["edges"].extend(extra)
    return s


def _no_start() -> dict[str, Any]:
    return {"nodes": [end()], "edges": []}


def _two_starts() -> dict[str, Any]:
    s = simple()
    s["nodes"].append({**start(), "id": "start_1"})
    return s


def _set(path: str, value: Any) -> dict[str, Any]:
    s = simple()
    target: Any = s
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    return s


@pytest.mark.parametrize(("schema", "named"), [
    (_dup_end(), "only one end node"),
    (_same_id(), "not exist"),
    (_with_edge(edge("start_0", "nowhere")), 'target node "nowhere" not exist'),
    (_with_edge(edge("ghost", "end_0")), 'source node "ghost" not exist'),
    (_with_edge(edge("end_0", "end_0")), "cycle"),
    (_with_edge(edge("end_0", "start_0")), "cycle"),
    (_no_start(), "must have a start node"),
    (_two_starts(), "only one start node"),
    (_set("nodes.0.data", "text"), "nodes[0].data must be a valid object"),
    (_set("nodes.0.data.title", 5), "data.title must be a string"),
    (_set("nodes.0.id", 5), "nodes[0].id must be a non-empty string"),
    (_set("nodes.0.type", None), "nodes[0].type must be a non-empty string"),
    (_set("nodes.0.blocks", "abc"), "blocks must be an array"),
    (_set("edges.0.sourcePortID", 5), "sourcePortID must be a string"),
    (_set("nodes", {"a": 1}), "nodes array"),
    (_set("edges", "abc"), "edges array"),
])
def test_a_broken_schema_fails_validation_and_its_run_fails_naming_it(client: FlaskClient,
                                                                      caplog: pytest.LogCaptureFixture,
                                                                      schema: dict[str, Any], named: str) -> None:
    checked = client.post("/api/task/validate", json={"schema": schema, "inputs": {"q": "x"}})
    assert checked.status_code == 200 and checked.json["valid"] is False
    assert any(named in e for e in checked.json["errors"]), checked.json
    nodes = schema["nodes"]
    if isinstance(nodes, list) and nodes and isinstance(nodes[0].get("data"), str):
        return  # its run is a known 500: see test_a_run_of_a_schema_validation_refuses_never_500s
    report = run_task(client, schema, {"q": "x"})
    assert report["workflowStatus"]["status"] == "failed" and named in errors_of(report)
    no_traceback(caplog)


def test_an_unknown_node_type_is_a_warning_then_a_failed_run(client: FlaskClient) -> None:
    schema = chain(node("u", "mystery"))
    checked = client.post("/api/task/validate", json={"schema": schema, "inputs": {"q": "x"}}).json
    assert checked["valid"] is True and "mystery" in " ".join(checked["warnings"])
    report = run_task(client, schema, {"q": "x"})
    assert report["workflowStatus"]["status"] == "failed" and "mystery" in errors_of(report)


def test_a_huge_title_and_template_are_stored_and_run(client: FlaskClient) -> None:
    schema = simple()
    schema["nodes"][0]["data"]["title"] = "T" * 200_000
    schema["nodes"][1]["data"]["inputsValues"]["r"] = {"type": "template", "content": "{{start_0.q}}" * 5000}
    report = run_task(client, schema, {"q": "x"})
    assert report["workflowStatus"]["status"] == "succeeded" and report["outputs"] == {"r": "x" * 5000}
    assert client.get("/api/tasks").json["tasks"][0]["title"].startswith("TTT")


@pytest.mark.parametrize("schema", [
    _set("nodes.1.data", [1]),
    _set("nodes.1.data", [[1, 2, 3]]),
    {**simple(), "globalVariable": "x"},
    {**simple(), "globalVariable": [1]},
    {**simple(), "globalVariable": {"type": "object", "properties": "abc"}},
    _set("nodes.0.data", "text"),
    _set("nodes.0.data", [1]),
], ids=["data-[1]", "data-[[1,2,3]]", "global-str", "global-list", "global-properties-str", "start-data-str",
        "start-data-[1]"])
def test_a_run_of_a_schema_validation_refuses_never_500s(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                                         schema: dict[str, Any]) -> None:
    response = client.post("/api/task/run?wait=5", json={"schema": schema, "inputs": {"q": "x"}})
    assert response.status_code in (200, 400), response.get_data(as_text=True)[:300]
    if response.status_code == 200:  # JS reads no fields of an array or a string: as FlowGram, the run goes on
        assert response.json["status"] in ("succeeded", "failed"), response.json
    nothing_left_running(client)
    no_traceback(caplog)


# -- code, loop, condition and http nodes ---------------------------------------------------------------------------

def code_node(source: str, result_type: str = "string") -> dict[str, Any]:
    return node("x", "code", script={"language": "javascript", "content": source},
                inputs={"type": "object", "properties": {"q": {"type": "string"}}},
                inputsValues={"q": {"type": "ref", "content": ["start_0", "q"]}},
                outputs={"type": "object", "properties": {"result": {"type": result_type}}})


@pytest.mark.parametrize(("source", "status", "named"), [
    ("function main() { return Infinity }", "succeeded", ""),  # JSON.stringify: null
    ("function main() { return NaN }", "succeeded", ""),
    ("function main() { return {result: -0} }", "succeeded", ""),
    ("function main() { const a = {}; a.a = a; return a }", "failed", "circular"),
    ("function main() { let v = 1; for (let i = 0; i < 2000; i++) v = [v]; return v }", "failed", "nested too deeply"),
    ("function main() { return 'x'.repeat(40 * 1024 * 1024) }", "failed", "Code execution failed"),
    ("function main() { return {result: 2n} }", "failed", "BigInt"),
    ("function main() { return {result: '\\ud800'} }", "failed", "surrogate"),
    ("function main() { const a = []; a[2 ** 32 - 2] = 1; return a }", "failed", "out of memory"),
    ("async function main() { await new Promise(() => {}) }", "failed", "never settled"),
    ("function main() { return {toJSON() { throw new Error('boom') }} }", "failed", "boom"),
])
def test_a_code_node_returning_odd_values_ends_naming_the_problem(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                                                  source: str, status: str, named: str) -> None:
    report = run_task(client, chain(code_node(source), end_node=end(("x", "result"))), {"q": "x"})
    assert report["workflowStatus"]["status"] == status, errors_of(report)
    assert named in errors_of(report)
    no_traceback(caplog)


def loop_schema(loop_for: Any, **data: Any) -> dict[str, Any]:
    blocks = [node("bs", "block-start"), node("be", "block-end")]
    fields = {"loopFor": loop_for, "loopOutputs": {"out": {"type": "ref", "content": ["loop_0_locals", "item"]}}, **data}
    loop = {**node("loop_0", "loop", **fields),
            "blocks": blocks, "edges": [edge("bs", "be")]}
    return chain(loop, start_node=start(items={"type": "array", "items": {"type": "number"}}),
                 end_node=end(("loop_0", "out"), "array"))


ITEMS = {"type": "ref", "content": ["start_0", "items"]}


def test_a_loop_over_a_million_items_fails_at_once_naming_the_limit(client: FlaskClient) -> None:
    make = code_node("function main() { return {result: new Array(1000000).fill(0)} }", "array")
    make["data"]["outputs"]["properties"]["result"]["items"] = {"type": "number"}
    schema = loop_schema({"type": "ref", "content": ["x", "result"]})
    schema["nodes"].insert(1, make)
    schema["edges"] = [edge("start_0", "x"), edge("x", "loop_0"), edge("loop_0", "end_0")]
    began = time.monotonic()
    report = run_task(client, schema, {"items": []})
    assert report["workflowStatus"]["status"] == "failed"
    assert "1000000 iterations; the limit is 10000" in errors_of(report)
    assert time.monotonic() - began < 10


@pytest.mark.parametrize(("loop_for", "inputs", "named"), [
    (ITEMS, {"items": [0] * 10001}, "the limit is 10000"),
    ({"type": "constant", "content": 1e308}, {}, "must be an array or object"),
    ({"type": "constant", "content": int("9" * 300)}, {}, "must be an array or object"),
    ({"type": "constant", "content": "abc"}, {}, "must be an array or object"),
    ("abc", {}, '"loopFor" is required'),
])
def test_a_bad_loop_fails_naming_the_problem(client: FlaskClient, loop_for: Any, inputs: dict[str, Any],
                                             named: str) -> None:
    report = run_task(client, loop_schema(loop_for), inputs)
    assert report["workflowStatus"]["status"] == "failed" and named in errors_of(report)


def test_a_loop_body_too_big_for_the_request_is_a_413(client: FlaskClient) -> None:
    response = client.post("/api/task/run", json={"schema": loop_schema(ITEMS), "inputs": {"items": [0] * 10**6}})
    api_error(response, 413, "")
    assert client.get("/api/tasks").json["total"] == 0


@pytest.mark.parametrize("case", ["loopOutputs-list", "loopOutputs-str", "condition-key-list", "condition-key-dict"])
def test_a_mistyped_loop_or_condition_field_is_named(client: FlaskClient, case: str) -> None:
    if case.startswith("loopOutputs"):
        schema = loop_schema(ITEMS, loopOutputs=[1, 2] if case.endswith("list") else "abc")
        inputs: dict[str, Any] = {"items": [1]}
        named = "loopOutputs"
    else:
        key: Any = ["if_a"] if case.endswith("list") else {"k": 1}
        left = {"type": "ref", "content": ["start_0", "q"]}
        cond = node("c", "condition", conditions=[{"key": key, "value": {
            "left": left, "operator": "eq", "right": {"type": "constant", "content": "x"}}}])
        schema = chain(cond, end_node=node("end_0", "end"))
        schema["edges"] = [edge("start_0", "c"), edge("c", "end_0", sourcePortID="if_a"),
                           edge("c", "end_0", sourcePortID="else")]
        inputs, named = {"q": "x"}, "key"
    report = run_task(client, schema, inputs)
    assert report["workflowStatus"]["status"] == "failed"
    assert named in errors_of(report), errors_of(report)


@pytest.mark.parametrize(("operator", "named"), [("bogus", 'no operator "bogus"'), (None, 'no operator "null"'),
                                                 (["eq"], 'no operator "eq"'), ({"x": 1}, "[object Object]")])
def test_an_unknown_condition_operator_fails_naming_it(client: FlaskClient, operator: Any, named: str) -> None:
    cond = node("c", "condition", conditions=[{"key": "if_a", "value": {
        "left": {"type": "ref", "content": ["start_0", "q"]}, "operator": operator,
        "right": {"type": "constant", "content": "x"}}}])
    schema = chain(cond, end_node=node("end_0", "end"))
    schema["edges"] = [edge("start_0", "c"), edge("c", "end_0", sourcePortID="if_a"),
                       edge("c", "end_0", sourcePortID="else")]
    report = run_task(client, schema, {"q": "x"})
    assert report["workflowStatus"]["status"] == "failed" and named in errors_of(report)


def http_node(url: str, timeout: Any = None) -> dict[str, Any]:
    data: dict[str, Any] = {"api": {"method": "GET", "url": {"type": "template", "content": url}},
                            "outputs": {"type": "object", "properties": {"statusCode": {"type": "number"}}}}
    data["timeout"] = {"timeout": 2000, "retryTimes": 0} if timeout is None else timeout
    return node("x", "http", **data)


def http_status(client: FlaskClient, url: str, timeout: Any = None) -> tuple[str, str]:
    report = run_task(client, chain(http_node(url, timeout), end_node=end(("x", "statusCode"), "number")))
    return report["workflowStatus"]["status"], errors_of(report)


@pytest.mark.parametrize(("url", "named"), [
    ("http://127.0.0.1:1/", 'host "127.0.0.1:1" is not allowed'),
    ("http://127.0.0.1:22/", 'host "127.0.0.1:22" is not allowed'),
    ("http://localhost:{port}/", "is not allowed"),
    ("http://[::1]:{port}/", "is not allowed"),
    ("http://[0:0:0:0:0:0:0:1]:{port}/", "is not allowed"),
    ("http://0.0.0.0:{port}/", "is not allowed"),
    ("http://169.254.169.254/latest/meta-data/", "is not allowed"),
    ("http://127.1:{port}/", "non-canonical"),
    ("http://2130706433:{port}/", "non-canonical"),
    ("http://0x7f.0.0.1:{port}/", "non-canonical"),
    ("http://[::ffff:127.0.0.1]:{port}/", "embedding an IPv4"),
    ("http://127.0.0.1:{port}@evil.example/", "user info"),
    ("http://evil.example#@127.0.0.1:{port}/", 'host "evil.example:80" is not allowed'),
    ("http://127.0.0.1:{port}\\@evil.example/", "backslash"),
    ("http://127.0.0.1:0{port}/", "port is not a plain number"),
    ("http://127.0.0.1.:{port}/", "ends with a dot"),
    ("http://127.0.0.1:{port}:80/", "a ':' in the host"),
    ("http://127.0.0.1:{port}/v1/models\n", "whitespace"),
    ("http://%31%32%37.0.0.1:{port}/", "percent-encoded"),
    ("http://\u2460\u2461\u2466.0.0.1:{port}/", "non-ASCII"),
    ("http://127.0.0.1:99999/", "not from 1 to 65535"),
    ("file:///etc/passwd", "only http and https"),
    ("gopher://127.0.0.1:{port}/", "only http and https"),
    ("//127.0.0.1:{port}/", "only http and https"),
    ("http:/127.0.0.1:{port}/", 'must be followed by "//"'),
])
def test_an_http_node_is_held_to_the_allow_list(client: FlaskClient, upstream: FakeUpstream, url: str,
                                                named: str) -> None:
    port = upstream.base_url.rsplit(":", 1)[1].split("/")[0]
    status, errors = http_status(client, url.replace("{port}", port))
    assert status == "failed" and named in errors, errors


def test_an_http_node_reaches_the_allowed_llm_server(client: FlaskClient, upstream: FakeUpstream) -> None:
    status, errors = http_status(client, upstream.base_url + "/models")
    assert status == "succeeded", errors


@pytest.mark.parametrize("url", ["http://127.0.0.1:" + HUGE_INT + "/", "http://1" + HUGE_INT + ".0.0.1/"])
def test_an_http_url_with_a_5000_digit_port_or_host_is_refused_naming_it(client: FlaskClient, url: str) -> None:
    status, errors = http_status(client, url)
    assert status == "failed" and "URL refused" in errors, errors


@pytest.mark.parametrize("timeout", [
    {"timeout": 1e308, "retryTimes": 0}, {"timeout": -0.0, "retryTimes": 0}, {"timeout": int("9" * 300), "retryTimes": 0},
    {"timeout": "1000"}, {"timeout": True}, {"timeout": None}, {"timeout": 1000, "retryTimes": 0.5},
    {"timeout": 1000, "retryTimes": 10**100}, {"timeout": 1000, "retryTimes": -1},
])
def test_a_bad_http_timeout_fails_naming_it(client: FlaskClient, upstream: FakeUpstream, timeout: Any) -> None:
    status, errors = http_status(client, upstream.base_url + "/models", timeout)
    assert status == "failed" and ("HTTP timeout" in errors or "HTTP retryTimes" in errors), errors


# -- llm node secrets ------------------------------------------------------------------------------------------

def llm_schema(api_key: str, api_host: str | None) -> dict[str, Any]:
    values = {"modelName": {"type": "constant", "content": "fake-model"},
              "temperature": {"type": "constant", "content": 0},
              "apiKey": {"type": "constant", "content": api_key}, "prompt": {"type": "constant", "content": "hi"}}
    if api_host is not None:
        values["apiHost"] = {"type": "constant", "content": api_host}
    llm = node("llm_0", "llm", inputsValues=values,
               inputs={"type": "object", "properties": {k: {"type": "number" if k == "temperature" else "string"}
                                                        for k in values}},
               outputs={"type": "object", "properties": {"result": {"type": "string"}}})
    return chain(llm, start_node=start(q={"type": "string"}), end_node=end(("llm_0", "result")))


@pytest.mark.parametrize(("api_key", "api_host", "status"), [
    (SECRET, None, "succeeded"),
    (SECRET + "\n", None, "succeeded"),
    (SECRET + "\r\nX-Evil: 1", "{base}", "succeeded"),
    ("\u2028" + SECRET, "{base}", "succeeded"),
    (SECRET, "http://127.0.0.1:1/v1", "failed"),
    (SECRET, "http://localhost:1/v1", "failed"),
    (SECRET, "ftp://x", "failed"),
])
def test_an_llm_nodes_api_key_shows_nowhere(client: FlaskClient, upstream: FakeUpstream,
                                            caplog: pytest.LogCaptureFixture, api_key: str, api_host: str | None,
                                            status: str) -> None:
    caplog.set_level(logging.DEBUG)
    host = api_host.replace("{base}", upstream.base_url) if api_host else None
    response = client.post("/api/task/run?wait=10", json={"schema": llm_schema(api_key, host), "inputs": {}})
    task = response.json["taskID"]
    report = wait_for_end(client, task)
    assert report["workflowStatus"]["status"] == status, errors_of(report)
    seen = [response.get_data(as_text=True)]
    for path in (f"/api/task/report?taskID={task}", f"/api/task/result?taskID={task}",
                 f"/api/task/events?taskID={task}", f"/tasks/{task}", "/tasks", "/api/tasks"):
        seen.append(client.get(path).get_data(as_text=True))
    seen += [r.getMessage() + str(r.exc_info or "") for r in caplog.records]
    assert not [s[:200] for s in seen if "HOSTILE-SECRET" in s]


# -- the pages' forms -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["form", "header"])
@pytest.mark.parametrize("token", ["\u00e9", "\u2603", "{real}\u00e9"])
def test_a_non_ascii_csrf_token_is_refused_with_a_400(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                                      csrf: str, token: str, where: str) -> None:
    sent = token.replace("{real}", csrf)
    data = {"action": "load", "workflow_schema": "{}"}
    if where == "form":
        response = client.post("/workflows", data={**data, "csrf_token": sent})
    else:  # a header value is Latin-1 on the wire
        response = client.post("/workflows", data=data, headers={"X-CSRF-Token": sent.encode().decode("latin-1")})
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    no_traceback(caplog)


@pytest.mark.parametrize("token", ["", "x", "A" * 5000])
def test_a_wrong_ascii_csrf_token_is_refused_with_a_400(client: FlaskClient, csrf: str, token: str) -> None:
    response = client.post("/workflows", data={"action": "load", "workflow_schema": "{}", "csrf_token": token})
    assert response.status_code == 400


def _page_schema() -> dict[str, Any]:
    return chain(start_node=start(q={"type": "string"}, n={"type": "number"}, i={"type": "integer"},
                                  a={"type": "array"}), end_node=node("end_0", "end"))


@pytest.mark.parametrize(("field", "value"), [
    ("n", "nan"), ("n", "inf"), ("n", "1e400"), ("n", HUGE_INT), ("i", HUGE_INT), ("i", BIG_INT), ("i", "1.0"),
    ("a", "[" + HUGE_INT + "]"), ("a", "[1e400]"), ("a", "[NaN]"), ("a", '["\\ud800"]'), ("a", "[" * 500),
])
@pytest.mark.parametrize("action", ["validate", "run"])
def test_the_workflows_page_refuses_bad_field_values_without_a_500(client: FlaskClient,
                                                                   caplog: pytest.LogCaptureFixture, csrf: str,
                                                                   field: str, value: str, action: str) -> None:
    form = {"csrf_token": csrf, "action": action, "workflow_schema": json.dumps(_page_schema()), "q": "x", "n": "1",
            "i": "1", "a": "[]", field: value}
    response = client.post("/workflows", data=form)
    assert response.status_code in (200, 400), response.get_data(as_text=True)[:300]
    assert client.get("/api/tasks").json["total"] == 0
    no_traceback(caplog)


@pytest.mark.parametrize(("field", "value"), [("n", "-0"), ("i", "-0"), ("n", "1e300"), ("q", "\x00")])
def test_the_workflows_page_runs_odd_but_valid_values(client: FlaskClient, csrf: str, field: str, value: str) -> None:
    form = {"csrf_token": csrf, "action": "run", "workflow_schema": json.dumps(_page_schema()), "q": "x", "n": "1",
            "i": "1", "a": "[]", field: value}
    response = client.post("/workflows", data=form)
    assert response.status_code == 303, response.get_data(as_text=True)[:300]
    report = wait_for_end(client, response.headers["Location"].rsplit("/", 1)[1])
    assert report["workflowStatus"]["status"] == "succeeded"


@pytest.mark.parametrize("action", ["load", "validate", "run"])
@pytest.mark.parametrize("text", [
    json.dumps(_page_schema()).replace('"x": 0', '"x": 1e400', 1),
    json.dumps(_page_schema()).replace('"x": 0', '"x": NaN', 1),
    json.dumps(_page_schema()).replace('"x": 0', '"x": ' + BIG_INT, 1),
    '{"a":' * 900 + "1" + "}" * 900,
    "[1, 2]",
    "{",
], ids=["1e400", "NaN", "4000-digits", "deep", "array", "broken"])
def test_the_workflows_page_refuses_odd_schema_text_without_a_500(client: FlaskClient,
                                                                  caplog: pytest.LogCaptureFixture, csrf: str,
                                                                  text: str, action: str) -> None:
    response = client.post("/workflows", data={"csrf_token": csrf, "action": action, "workflow_schema": text, "q": "x"})
    assert response.status_code in (200, 400)
    assert client.get("/api/tasks").json["total"] == 0
    no_traceback(caplog)


@pytest.mark.parametrize("action", ["load", "validate", "run"])
@pytest.mark.parametrize("text", [
    json.dumps(_page_schema()).replace('"x": 0', '"x": ' + HUGE_INT, 1),
    json.dumps(_page_schema()).replace('"q"', '"\\ud800"', 1),
], ids=["5000-digits", "surrogate-key"])
def test_the_workflows_page_refuses_unparseable_schema_text_with_a_400(client: FlaskClient,
                                                                       caplog: pytest.LogCaptureFixture, csrf: str,
                                                                       text: str, action: str) -> None:
    try:
        response = client.post("/workflows", data={"csrf_token": csrf, "action": action, "workflow_schema": text})
    except Exception as exc:  # the error handler itself could not answer
        pytest.fail(f"raised {exc!r}")
    assert response.status_code == 400, response.get_data(as_text=True)[:300]
    no_traceback(caplog)


# -- ops and flows ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("expression", "named"), [
    ("EchoToolOp(x=" + HUGE_INT + ")", "4300 digits"),
    ("EchoToolOp(x=10**10**10)", "must be a literal value"),
    ("EchoToolOp()" + " >> EchoToolOp()" * 2000, "longer than 10000 characters"),
    ("(" * 500 + "EchoToolOp()" + ")" * 500, "too many nested parentheses"),
    ("__import__('os')", "not a registered op"),
    ("EchoToolOp(**{'a': 1})", "** arguments are not allowed"),
])
def test_a_bad_flow_expression_is_a_400_quoting_it(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                                   expression: str, named: str) -> None:
    api_error(client.post("/api/flows", json={"flow_content": expression, "inputs": {"text": "x"}}), 400,
              "invalid flow_content", named)
    no_traceback(caplog)


@pytest.mark.parametrize("expression", ["RetrieveOp(top_k=-1)", "RetrieveOp(top_k=1e308)", "SummarizeOp(max_words=1e400)",
                                        "SummarizeOp(max_words=-0.0)"])
def test_op_arguments_an_op_refuses_are_a_400(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                              expression: str) -> None:
    api_error(client.post("/api/flows", json={"flow_content": expression, "inputs": {"query": "x", "text": "x"}}),
              400, "invalid flow_content", "rejected its arguments")
    no_traceback(caplog)


@pytest.mark.parametrize(("path", "body", "status", "named"), [
    ("/api/ops/echo_tool", {"inputs": {"text": -0.0}}, 400, "'text' must be string"),
    ("/api/ops/echo_tool", {"inputs": {"text": 10**300}}, 400, "'text' must be string"),
    ("/api/ops/retrieve", {"inputs": {"query": "x", "top_k": 1e308}}, 400, "'top_k' must be integer"),
    ("/api/ops/retrieve", {"inputs": {"query": "x", "top_k": 2.0}}, 400, "'top_k' must be integer"),
    ("/api/ops/retrieve", {"inputs": {"query": "x", "top_k": -1}}, 422, "top_k"),
    ("/api/ops/echo_tool", {"inputs": {"text": "x", "stream": True}}, 400, "'stream' cannot be used"),
    ("/api/ops/nope", {"inputs": {}}, 404, "no op named 'nope'"),
    ("/api/flows/echo", {"inputs": "x"}, 400, "inputs"),
    ("/api/flows/ask_documents", {"query": "x", "top_k": 1e308}, 400, "'top_k' must be integer"),
    ("/api/flows/nope", {}, 404, "no flow named"),
    ("/api/chat", {"message": "hi", "max_tokens": 1.5}, 400, "max_tokens"),
    ("/api/chat", {"message": "hi", "max_tokens": 10**300}, 400, "max_tokens"),
    ("/api/chat", {"message": 5}, 400, "message"),
    ("/invoke/count_to", {"inputs": {"n": 10**300}}, 400, "inputs.n"),
    ("/invoke/count_to", {"inputs": {"n": 3.5}}, 400, "inputs.n"),
    ("/invoke/word_count", {"inputs": []}, 400, "inputs"),
    ("/invoke/chat_stream", {"inputs": {"messages": [[1, 2]]}}, 400, "inputs.messages[0]"),
])
def test_bad_api_inputs_are_4xx_naming_the_field(client: FlaskClient, caplog: pytest.LogCaptureFixture, path: str,
                                                 body: Any, status: int, named: str) -> None:
    api_error(client.post(path, json=body), status, named)
    no_traceback(caplog)


@pytest.mark.parametrize("body", [{"message": "hi", "temperature": -0.0}, {"message": "hi", "max_tokens": 1.0}])
def test_minus_zero_and_whole_floats_are_valid_chat_numbers(client: FlaskClient, body: dict[str, Any]) -> None:
    assert client.post("/api/chat", json=body).json["response"] == "echo: hi"


# -- content types, charsets and health endpoints ---------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["application/json; charset=utf-16", "application/json; charset=x-bogus",
                                          "application/vnd.api+json"])
def test_odd_json_charsets_are_read_or_named(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                             content_type: str) -> None:
    for data in (json.dumps({"message": "hi"}).encode(), json.dumps({"message": "hi"}).encode("utf-16")):
        response = client.post("/api/chat", data=data, content_type=content_type)
        assert response.status_code == 200 and response.json["response"] == "echo: hi"
    api_error(client.post("/api/chat", data=b'{"message": "h\xe9"}', content_type=content_type), 400, "UTF-8")
    no_traceback(caplog)


@pytest.mark.parametrize("content_type", ["text/plain", "application/json-seq", "application/octet-stream", ""])
def test_a_body_not_declared_json_is_a_415(client: FlaskClient, content_type: str) -> None:
    api_error(client.post("/api/chat", data='{"message": "hi"}', content_type=content_type), 415, "application/json")
    api_error(client.post("/api/task/run", data='{"schema": {}}', content_type=content_type), 400, "JSON object")


@pytest.mark.parametrize("path", ["/metrics", "/readyz", "/info", "/healthz", "/readyz?timeout=1e400",
                                  "/metrics?x=" + HUGE_INT, "/info?" + "a=1&" * 1000])
def test_health_endpoints_ignore_hostile_queries(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                                 path: str) -> None:
    assert client.get(path).status_code == 200
    api_error(client.post("/info"), 405, "not allowed")
    no_traceback(caplog)


@pytest.mark.parametrize("wait", ["1_0", "\u0663", "nan", "inf", "0x10", " 1"])
def test_wait_is_a_plain_decimal_number(client: FlaskClient, wait: str) -> None:
    """float() reads "1_0", Arabic-Indic digits, "nan" and "inf"; ?wait= takes plain decimal numbers only."""
    response = client.get("/api/task/result", query_string={"taskID": "x", "wait": wait})
    assert response.status_code == 400 and "wait must be a number of seconds" in response.json["error"]["message"]


def test_a_bad_status_filter_is_not_echoed_in_full(client: FlaskClient) -> None:
    response = client.get("/api/tasks", query_string={"status": "x" * 10_000})
    assert response.status_code == 400 and len(response.json["error"]["message"]) < 200


@pytest.mark.parametrize(("query", "named"), [
    ("offset=1&offset=2", "'offset' is given 2 times"),
    ("status=failed&status=succeeded", "'status' is given 2 times"),
    ("limit=5&limit=5&limit=5", "'limit' is given 3 times"),
    ("status=", "status is empty"),
    ("offset=", "offset is empty"),
    ("limit=&status=failed", "limit is empty"),
])
def test_the_task_list_takes_each_parameter_once_and_never_empty(client: FlaskClient, query: str,
                                                                 named: str) -> None:
    """A repeated or empty query parameter was read as its first value or as absent: a 200 for a request
    the spec calls invalid (schemathesis found ``status=&offset=&offset=...``)."""
    api_error(client.get("/api/tasks?" + query), 400, named)
    api_error(client.get("/api/task/result?taskID=a&taskID=b"), 400, "'taskID' is given 2 times")
