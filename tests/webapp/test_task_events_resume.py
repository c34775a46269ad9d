"""``GET /api/task/events`` resumes: every event has an SSE ``id``, and a client that comes back with
``Last-Event-ID`` (or ``?lastEventId=``) gets exactly the events it missed, from any worker.

Two gunicorn masters share one SQLite task database: ``runner`` (2 workers) runs the tasks, and
``other`` (1 worker, another process) serves the first part of a stream: a reconnection served by
the other master can only resume from the shared store. The last test kills the other's worker
in the middle of a stream, as a crash would. Unit tests at the end check
:class:`webapp.task_events.NodeWatch` on hand-made reports.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fake_upstream import FakeUpstream
from tests.servers import GunicornServer
from tests.webapp.test_task_events import llm_schema, other, runner, servers, submit  # noqa: F401 (fixtures)
from webapp.task_events import END_ID, START_ID, NodeWatch

Frame = tuple[str | None, dict[str, Any]]


# servers, runner and other (the second master): the fixtures of tests/webapp/test_task_events.py


def frames(lines: Iterator[str], retries: list[str] | None = None) -> Iterator[Frame]:
    """``(id, event)`` per SSE frame of ``lines``; ``retry:`` values go to ``retries``."""
    event_id, data = None, []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
        elif line.startswith("id:"):
            event_id = line[3:].lstrip(" ")
        elif line.startswith("retry:") and retries is not None:
            retries.append(line[6:].strip())
        elif line == "" and data:
            yield event_id, json.loads("\n".join(data))
            event_id, data = None, []


def read_all(client: httpx.Client, task_id: str, last_id: str | None = None, *, header: bool = True,
             retries: list[str] | None = None) -> list[Frame]:
    headers = {"Last-Event-ID": last_id} if last_id is not None and header else {}
    params = {"taskID": task_id, **({"lastEventId": last_id} if last_id is not None and not header else {})}
    with client.stream("GET", "/api/task/events", params=params, headers=headers) as response:
        assert response.status_code == 200, response.read()
        return list(frames(response.iter_lines(), retries))


def read_until_llm_runs(client: httpx.Client, task_id: str) -> list[Frame]:
    """The first frames of the stream, up to the slow llm node's ``processing``; then hangs up."""
    got: list[Frame] = []
    with client.stream("GET", "/api/task/events", params={"taskID": task_id}) as response:
        assert response.status_code == 200
        for frame in frames(response.iter_lines()):
            got.append(frame)
            data = frame[1].get("data") if frame[1]["type"] == "progress" else {}
            if (data.get("nodeID"), data.get("status")) == ("llm_0", "processing"):
                return got
    raise AssertionError(f"the stream ended before the llm node ran: {got}")


def key(event: dict[str, Any]) -> tuple[Any, ...]:
    data = event["data"]
    return (event["type"], data.get("nodeID"), data.get("status"), data.get("startTime"), data.get("endTime"))


def check_resumed(first: list[Frame], rest: list[Frame], whole: list[Frame], final_report: dict[str, Any]) -> None:
    """``first + rest`` is the story of ``whole``: nothing lost, nothing twice, ids in order."""
    assert first[0] == (START_ID, first[0][1]) and first[0][1]["type"] == "start"
    assert all(event["type"] == "progress" for _, event in rest[:-1]) and rest, "no second start"
    union = first + rest
    assert rest[-1][0] == END_ID and rest[-1][1] == whole[-1][1], "the same done event"
    progress_ids = [int(i) for i, e in union if e["type"] == "progress" if i is not None]
    assert len(progress_ids) == len(union) - 2, "every progress event has an id"
    assert progress_ids == sorted(set(progress_ids)), "ids grow, none repeats"
    keys = [key(e) for _, e in union]
    assert len(keys) == len(set(keys)), f"an event came twice: {keys}"
    # each node's last event, the same in both streams and in the report: nothing lost
    for stream in (union, whole):
        last = {e["data"]["nodeID"]: key(e) for _, e in stream if e["type"] == "progress"}
        assert last == {node_id: ("progress", node_id, info["status"], info.get("startTime"), info.get("endTime"))
                        for node_id, info in final_report["reports"].items()}
    # what the cut stream had already told is not told again, and the rest is
    told = {key(e) for _, e in first}
    assert not told & {key(e) for _, e in rest}
    assert ("progress", "llm_0", "processing") == key(first[-1][1])[:3]
    assert [key(e)[1:3] for _, e in rest if e["type"] == "progress"][0] == ("llm_0", "succeeded")


def test_a_reconnection_to_another_process_resumes_without_loss_or_duplicates(
        runner: httpx.Client, other: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.configure(delay=1.5)
    task_id = submit(runner, llm_schema(), {"q": "resume me"})
    whole: list[Frame] = []
    reader = threading.Thread(target=lambda: whole.extend(read_all(runner, task_id)), daemon=True)
    reader.start()
    first = read_until_llm_runs(other, task_id)  # then the client goes away
    retries: list[str] = []
    rest = read_all(runner, task_id, first[-1][0], retries=retries)  # Last-Event-ID, another master
    reader.join(30)
    assert not reader.is_alive() and whole
    assert retries == ["1000"], "retry: once"
    check_resumed(first, rest, whole, runner.get("/api/task/report", params={"taskID": task_id}).json())


def test_last_event_id_in_the_query_and_after_the_end(runner: httpx.Client, other: httpx.Client,
                                                      upstream: FakeUpstream) -> None:
    task_id = submit(runner, llm_schema(), {"q": "done already"}, wait=20)
    whole = read_all(other, task_id)
    assert [i for i, _ in whole] == [START_ID, *[i for i, _ in whole[1:-1]], END_ID]
    for position in range(len(whole) - 1):  # cut after any event: the rest, from either master
        for client in (runner, other):
            assert read_all(client, task_id, whole[position][0], header=position % 2 == 0) == whole[position + 1:]
    ended = runner.get("/api/task/events", params={"taskID": task_id}, headers={"Last-Event-ID": END_ID})
    assert ended.status_code == 204 and ended.content == b"", "EventSource: stop reconnecting"
    for bad in ("abc", "-1", "1.5", "9" * 40):
        response = runner.get("/api/task/events", params={"taskID": task_id, "lastEventId": bad})
        assert response.status_code == 400 and "Last-Event-ID" in response.json()["error"]["message"]


def test_a_stream_cut_by_a_dying_worker_resumes_elsewhere(servers: tuple[GunicornServer, GunicornServer],
                                                         runner: httpx.Client, other: httpx.Client,
                                                         upstream: FakeUpstream) -> None:
    upstream.configure(delay=1.5)
    task_id = submit(runner, llm_schema(), {"q": "crash"})
    whole: list[Frame] = []
    reader = threading.Thread(target=lambda: whole.extend(read_all(runner, task_id)), daemon=True)
    reader.start()
    first: list[Frame] = []
    (victim,) = servers[1].worker_pids  # the other's only worker (this test's own process tree)
    with pytest.raises(httpx.HTTPError):
        with other.stream("GET", "/api/task/events", params={"taskID": task_id}) as response:
            for frame in frames(response.iter_lines()):
                first.append(frame)
                data = frame[1].get("data") if frame[1]["type"] == "progress" else {}
                if (data.get("nodeID"), data.get("status")) == ("llm_0", "processing"):
                    os.kill(victim, signal.SIGKILL)  # the stream is cut: no error event, no done
    assert first and first[-1][1]["type"] == "progress", "cut without an end"
    rest = read_all(runner, task_id, first[-1][0])
    reader.join(30)
    assert not reader.is_alive() and whole
    check_resumed(first, rest, whole, runner.get("/api/task/report", params={"taskID": task_id}).json())


# -- NodeWatch on hand-made reports ------------------------------------------------------------------

def report(**nodes: tuple[str, int, int | None, int | None]) -> dict[str, Any]:
    """``node=(status, seq, startTime, endTime)`` each."""
    return {"reports": {node_id: {"id": node_id, "status": status, "seq": seq, "startTime": start, "endTime": end,
                                  "timeCost": 0, "snapshots": []}
                        for node_id, (status, seq, start, end) in nodes.items()}}


def ids(events: list[dict[str, Any]]) -> list[str]:
    return [getattr(e, "event_id", "") for e in events]


# a run as a reader of the store sees it: every report holds all changes up to its save
REPORTS = [
    report(a=("processing", 1, 10, None)),
    report(a=("succeeded", 2, 10, 20), b=("processing", 3, 20, None), c=("processing", 4, 20, None)),
    report(a=("succeeded", 2, 10, 20), b=("processing", 3, 20, None), c=("succeeded", 5, 20, 21)),
    report(a=("succeeded", 2, 10, 20), b=("succeeded", 6, 20, 30), c=("succeeded", 5, 20, 21),
           d=("succeeded", 8, 30, 31)),
]


def test_node_watch_numbers_events_by_seq_in_order() -> None:
    watch = NodeWatch()
    sent = [watch.changes(r) for r in REPORTS]
    assert [ids(batch) for batch in sent] == [["1"], ["2", "3", "4"], ["5"], ["6", "8"]]
    assert [e["data"]["current"] for batch in sent for e in batch] == [0, 1, 1, 1, 2, 3, 4]


@pytest.mark.parametrize("cut", range(1, 8))
def test_node_watch_resumes_after_any_event_from_any_later_report(cut: int) -> None:
    whole = NodeWatch()
    batches = [whole.changes(r) for r in REPORTS]
    events = [e for batch in batches for e in batch]
    last = int(ids(events)[cut - 1])
    seen = events[:cut]
    source = next(n for n, batch in enumerate(batches) if any(e in seen[-1:] for e in batch))
    # the client comes back when the store holds the report it was reading, or any later one
    for later in range(source, len(REPORTS)):
        resumed = NodeWatch(None, REPORTS[later], after=last)
        rest = [e for r in REPORTS[later:] for e in resumed.changes(r)]
        keys = [key(e) for e in seen + rest]
        assert len(keys) == len(set(keys)), "nothing twice"
        assert all(int(i) > last for i in ids(rest)), "only what came after"
        final = {key(e)[1]: key(e) for e in seen + rest}
        assert final == {key(e)[1]: key(e) for e in events}, "nothing lost: every node ends as it did"
        assert (rest or seen)[-1]["data"]["current"] == 4


def test_node_watch_without_seq_sends_everything_without_ids() -> None:
    old = {"reports": {"a": {"status": "succeeded", "startTime": 1, "endTime": 2}}}
    assert ids(NodeWatch(None, old, after=5).changes(old)) == [""]
