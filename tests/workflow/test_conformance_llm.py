"""FlowGram's LLM cases (tests/workflow/flowgram) through the REAL llm node.

``test_conformance.py`` swaps the llm executor for FlowGram's mock; here the built-in node runs, with
its client, against a fake OpenAI-compatible upstream that answers as that mock does: it reads the
model, the temperature (printed as JavaScript prints a number) and the system and user messages
from each request (``tests.fake_upstream.flowgram_mock_reply``). So the outputs match FlowGram's
expected results only if the node sends the case's own ``modelName``, temperature and prompts.

The schemas name ``https://mock-ai-url/api/v3``; it is rewritten to the fake upstream's URL in the
schemas, and in the expected snapshots, as the http cases rewrite theirs. Each case runs twice: with
that URL an allowed host of its own (a client per host and key), and with it the configured LLM
server (the app's own client, whose configured model must not replace the node's).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from llm_client import LLMClient
from tests.fake_upstream import FakeUpstream, flowgram_mock_reply
from tests.workflow.test_conformance import CASES, CONFORMANCE, RecordingStore, by_creation, observed, run_case
from workflow import RuntimeSettings, WorkflowRuntime
from workflow.report import mask_secrets

MOCK_HOST = "https://mock-ai-url/api/v3"
CHAT = "/v1/chat/completions"


def _has_llm_node(nodes: list[dict[str, Any]]) -> bool:
    return any(node.get("type") == "llm" or _has_llm_node(node.get("blocks") or []) for node in nodes)


#: every case of expected-results.json whose schema has an llm node (loop bodies included)
LLM_CASES = [case_id for case_id, case in CASES.items()
             if _has_llm_node(json.loads((CONFORMANCE / case["fixture"]).read_text())["nodes"])]


@pytest.fixture(scope="module")
def mock_upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(replier=flowgram_mock_reply) as server:
        yield server


@pytest.fixture(params=["allowed-host", "configured-server"])
def runtime(request: pytest.FixtureRequest, mock_upstream: FakeUpstream) -> Iterator[WorkflowRuntime]:
    """The real llm node; only the fake upstream may be reached: as an allowed host, or as the configured
    LLM server with the app's own client (configured model ``configured-model``)."""
    mock_upstream.reset()
    if request.param == "allowed-host":
        runtime = WorkflowRuntime(RecordingStore(),
                                  RuntimeSettings(allowed_hosts=frozenset({f"127.0.0.1:{mock_upstream.port}"})))
        yield runtime
        runtime.shutdown()
        return
    with LLMClient(mock_upstream.base_url, api_key="sk-app-key-0000000000", model="configured-model",
                   env={}) as app_client:
        settings = RuntimeSettings(llm_base_url=mock_upstream.base_url, llm_model="configured-model")
        runtime = WorkflowRuntime(RecordingStore(), settings, llm_provider=lambda: app_client)
        yield runtime
        runtime.shutdown()


def test_the_llm_cases_are_found() -> None:
    assert {"basic", "branch_1", "branch_2", "branch_else", "branch_two_layers_1", "branch_two_layers_2", "loop",
            "loop_break_continue", "two_llm_observed"} <= set(LLM_CASES)


@pytest.mark.parametrize("case_id", LLM_CASES)
def test_llm_case_through_the_real_node(runtime: WorkflowRuntime, mock_upstream: FakeUpstream, case_id: str) -> None:
    case = CASES[case_id]
    text = (CONFORMANCE / case["fixture"]).read_text()
    assert MOCK_HOST in text  # else the node would go elsewhere: the rewrite below must find it
    schema = json.loads(text.replace(MOCK_HOST, mock_upstream.base_url))
    expect = json.loads(json.dumps(case["expect"]).replace(MOCK_HOST, mock_upstream.base_url))
    after, record = run_case(runtime, schema, case["inputs"])
    got = observed(record)
    assert after == expect["statusAfterInvoke"]
    assert got["workflowStatus"] == expect["workflowStatus"], got["errorMessages"]
    assert got["outputs"] == expect["outputs"]
    assert got["nodeStatuses"] == expect["nodeStatuses"]
    assert got["snapshotCounts"] == expect["snapshotCounts"]
    if "snapshots" in expect:
        wanted = mask_secrets(expect["snapshots"])
        assert by_creation(got["snapshots"], wanted) == wanted
    if "errorMessages" in expect:
        assert got["errorMessages"] == expect["errorMessages"]
    # every llm snapshot is one request to the upstream, with the node's own model
    sent = [r["json"] for r in mock_upstream.stats()["requests_log"] if r["path"] == CHAT]
    llm_runs = [s for s in got["snapshots"] if s["nodeID"].startswith("llm_")]
    assert len(sent) == len(llm_runs)
    assert sorted(body["model"] for body in sent) == sorted(s["inputs"]["modelName"] for s in llm_runs)


def test_llm_real_runs_against_the_host_in_its_inputs(runtime: WorkflowRuntime, mock_upstream: FakeUpstream) -> None:
    """``llm-real.json`` (upstream's test with a real model; no expected result) takes host, key and model
    from its inputs: the answer is the mock's, for exactly those."""
    schema = json.loads((CONFORMANCE / "llm-real.json").read_text())
    inputs = {"model_name": "gpt-4o", "api_key": "sk-real-case-key-123456", "api_host": mock_upstream.base_url,
              "formula": "1+1"}
    _, record = run_case(runtime, schema, inputs)
    assert record.status == "succeeded", observed(record)["errorMessages"]
    assert record.outputs == {"answer": 'Hi, I am an AI model, my name is gpt-4o, temperature is 0, system prompt is '
                                        '"You are a "math formula" calculator.", prompt is "Just give me the answer '
                                        'of "1+1=?", just one number, no other words"'}
    request = mock_upstream.stats()["last_request"]
    # the configured server is always called with the app's client, and so with the app's key
    key = "sk-app-key-0000000000" if runtime.settings.llm_base_url else "sk-real-case-key-123456"
    assert request["headers"]["Authorization"] == f"Bearer {key}"
    assert request["json"]["model"] == "gpt-4o"
