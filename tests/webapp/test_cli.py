"""``flowbridge chat``, ``run-op`` and ``run-workflow``, run as real subprocesses against the fake upstream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.servers import ROOT, free_port
from webapp.cli import main

COMMANDS = ["serve", "chat", "run-op", "run-workflow", "batch"]


def cli_env(upstream: FakeUpstream | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "OPENAI_", "FLOWBRIDGE_"))}
    if upstream is not None:  # never let a test start the local model
        env["LLM_BASE_URL"] = upstream.base_url
    env.update(LLM_MAX_RETRIES="0", **extra)
    return env


def flowbridge(*args: str, upstream: FakeUpstream | None = None, stdin: str | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "webapp.cli", *args], cwd=ROOT, input=stdin, text=True,
                          capture_output=True, timeout=60, env=env or cli_env(upstream))


def assert_one_line_error(done: subprocess.CompletedProcess[str], status: int = 1, *words: str) -> None:
    assert done.returncode == status, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def llm_schema() -> dict[str, Any]:
    """start → llm → end: the answer is the model's reply to ``q``."""
    position = {"position": {"x": 0, "y": 0}}
    return {
        "nodes": [
            {"id": "start_0", "type": "start", "meta": position, "data": {"title": "Start", "outputs": {
                "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}},
            {"id": "llm_0", "type": "llm", "meta": position, "data": {
                "title": "Ask the model",
                "inputs": {"type": "object", "properties": {"prompt": {"type": "string"},
                                                            "temperature": {"type": "number"}}},
                "inputsValues": {"prompt": {"type": "ref", "content": ["start_0", "q"]},
                                 "temperature": {"type": "constant", "content": 0}},
                "outputs": {"type": "object", "properties": {"result": {"type": "string"}}}}},
            {"id": "end_0", "type": "end", "meta": position, "data": {"title": "End", "inputs": {
                "type": "object", "properties": {"answer": {"type": "string"}}},
                "inputsValues": {"answer": {"type": "ref", "content": ["llm_0", "result"]}}}},
        ],
        "edges": [{"sourceNodeID": "start_0", "targetNodeID": "llm_0"},
                  {"sourceNodeID": "llm_0", "targetNodeID": "end_0"}],
    }


@pytest.fixture
def schema_file(tmp_path: Path) -> Path:
    path = tmp_path / "ask.json"
    path.write_text(json.dumps(llm_schema()))
    return path


# -- help and usage -----------------------------------------------------------------------------


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for args in ([], *([name] for name in COMMANDS)):
        with pytest.raises(SystemExit) as exit_info:
            main([*args, "--help"])
        out = capsys.readouterr().out
        assert exit_info.value.code == 0 and f"usage: flowbridge {' '.join(args)}".strip() in out
        if not args:
            assert all(name in out for name in COMMANDS)


@pytest.mark.parametrize("args, words", [
    (["batch", "prompts.txt"], ["--out"]),
    (["batch", "prompts.txt", "--out", "r.jsonl", "--concurrency", "0"], ["--concurrency", "'0'"]),
    (["chat", "hi", "--temperature", "5"], ["--temperature"]),
    (["chat", "hi", "--max-tokens", "x"], ["--max-tokens"]),
    (["run-workflow"], ["SCHEMA.json"]),
    (["run-op", "echo_tool", "--bogus"], ["--bogus"]),
    (["fly"], ["invalid choice"]),
])
def test_bad_usage_is_one_line_and_status_2(args: list[str], words: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert_one_line_error(subprocess.CompletedProcess(args, exit_info.value.code, "", err), 2, *words)


def test_errors_in_process_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["run-workflow", str(tmp_path / "missing.json")]) == 1
    assert main(["batch", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "r.jsonl")]) == 1
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert main(["batch", str(empty), "--out", str(tmp_path / "r.jsonl")]) == 1
    assert main(["chat", "  "]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and "missing.json" in lines[0] and "missing.txt" in lines[1]
    assert "no prompts" in lines[2] and "MESSAGE is empty" in lines[3]


def test_bad_llm_setting_is_named(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("LLM_TIMEOUT", "soon")
    assert main(["chat", "hi"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowbridge chat: error: ") and "LLM_TIMEOUT" in lines[0]


# -- chat ---------------------------------------------------------------------------------------


def test_chat_streams_the_answer(upstream: FakeUpstream) -> None:
    upstream.configure(reply="Hello from the fake model")
    done = flowbridge("chat", "Say hi", "--temperature", "0.2", "--max-tokens", "12", "--system", "Be brief",
                      upstream=upstream)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Hello from the fake model\n"
    assert upstream.wait_for(lambda s: s["streams_completed"] == 1)  # counted just after the last byte
    stats = upstream.stats()
    body = stats["last_request"]["json"]
    assert body["stream"] is True and body["temperature"] == 0.2 and body["max_tokens"] == 12
    assert body["messages"] == [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Say hi"}]


def test_chat_reads_a_conversation_from_stdin(upstream: FakeUpstream) -> None:
    done = flowbridge("chat", upstream=upstream, stdin="first question\n\nsecond question\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "echo: first question\necho: second question\n"
    messages = upstream.stats()["last_request"]["json"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]  # the history goes with each turn
    assert messages[1]["content"] == "echo: first question"


def test_chat_upstream_error_is_one_line(upstream: FakeUpstream) -> None:
    upstream.push_faults({"status": 401, "body": {"error": {"message": "bad key", "type": "auth"}}})
    assert_one_line_error(flowbridge("chat", "hi", upstream=upstream), 1, "401")


def test_chat_unreachable_model_server() -> None:
    env = cli_env(None, LLM_BASE_URL="http://127.0.0.1:9/v1", LLM_CONNECT_TIMEOUT="1")
    assert_one_line_error(flowbridge("chat", "hi", env=env), 1)


# -- serve ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dev", [False, True], ids=["gunicorn", "dev-server"])
def test_serve_answers_and_logs_each_request_once(upstream: FakeUpstream, tmp_path: Path, dev: bool) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = cli_env(upstream, FLOWBRIDGE_TASK_DB=str(tmp_path / "tasks.db"), WEB_CONCURRENCY="1", GUNICORN_THREADS="2")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "webapp.cli", "serve", "--bind", url[7:],
                                   *(["--dev"] if dev else [])], cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        for _ in range(600):  # bounded: 60 s to start
            assert server.poll() is None, log.read_text()
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or the worker still booting
                time.sleep(0.1)
        with requests.get(url + "/api/ops", headers={"X-Request-ID": "serve-check"}, timeout=10) as r:
            assert r.status_code == 200 and r.headers["X-Request-ID"] == "serve-check"
        for _ in range(100):  # the access line is written just after the response: bounded, 5 s
            if "serve-check" in log.read_text():
                break
            time.sleep(0.05)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    lines = [line for line in log.read_text().splitlines() if "GET /api/ops" in line]
    assert len(lines) == 1 and "[serve-check]" in lines[0], lines


# -- run-op ---------------------------------------------------------------------------------------


def test_run_op_prints_the_answer(upstream: FakeUpstream) -> None:
    done = flowbridge("run-op", "echo_tool", "text=42", upstream=upstream)  # a declared string stays text
    assert done.returncode == 0 and done.stdout == "Echo: 42\n", done.stderr
    done = flowbridge("run-op", "echo_tool", "--json", "text=hi", upstream=upstream)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"answer": "Echo: hi", "outputs": {"echo_tool_result": "Echo: hi"},
                                       "success": True, "metadata": {}}
    assert upstream.stats()["requests"] == 0


def test_run_op_calls_the_model_and_runs_flows(upstream: FakeUpstream) -> None:
    done = flowbridge("run-op", "chat", "query=What is 2+2?", upstream=upstream)
    assert done.returncode == 0 and done.stdout == "echo: What is 2+2?\n", done.stderr
    done = flowbridge("run-op", "--flow", "echo", "text=via a flow", upstream=upstream)
    assert done.returncode == 0 and done.stdout == "Echo: via a flow\n", done.stderr
    done = flowbridge("run-op", "stream_chat", "query=streamed", upstream=upstream)  # streamed to stdout
    assert done.returncode == 0 and done.stdout == "echo: streamed\n", done.stderr
    assert upstream.stats()["by_path"] == {"/v1/chat/completions": 2}


def test_run_op_lists_ops_and_flows() -> None:
    done = flowbridge("run-op")
    assert done.returncode == 0 and "echo_tool" in done.stdout and "chat_summary" in done.stdout


def test_run_op_errors(upstream: FakeUpstream) -> None:
    assert_one_line_error(flowbridge("run-op", "echo_tool", upstream=upstream), 1, "'text' is required")
    assert_one_line_error(flowbridge("run-op", "echo_tool", "text", upstream=upstream), 1, "KEY=VALUE")
    assert_one_line_error(flowbridge("run-op", "no_such_op", upstream=upstream), 1, "no_such_op", "echo_tool")
    upstream.push_faults({"status": 500})
    assert_one_line_error(flowbridge("run-op", "chat", "query=x", upstream=upstream), 1, "500")


# -- run-workflow ---------------------------------------------------------------------------------


def test_run_workflow_shows_node_statuses_and_outputs(upstream: FakeUpstream, schema_file: Path) -> None:
    done = flowbridge("run-workflow", str(schema_file), "--inputs", '{"q": "hello"}', upstream=upstream)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"answer": "echo: hello"}  # stdout: only the outputs
    for line in ("Start: succeeded", "Ask the model: succeeded", "End: succeeded", ": succeeded"):
        assert line in done.stderr
    assert upstream.stats()["by_path"] == {"/v1/chat/completions": 1}


def test_run_workflow_failures_exit_1(upstream: FakeUpstream, schema_file: Path) -> None:
    done = flowbridge("run-workflow", str(schema_file), "--inputs", "{}", upstream=upstream)
    assert done.returncode == 1 and done.stdout == ""
    assert 'task failed: JSON Schema validation failed: Missing required property "q"' in done.stderr
    upstream.push_faults({"status": 400, "body": {"error": {"message": "no such model", "type": "x"}}})
    done = flowbridge("run-workflow", str(schema_file), "--inputs", '{"q": "x"}', upstream=upstream)
    assert done.returncode == 1 and done.stdout == ""
    assert "Ask the model: failed" in done.stderr and "error: task failed:" in done.stderr
    assert "Traceback" not in done.stderr
    assert_one_line_error(flowbridge("run-workflow", str(schema_file), "--inputs", "[1]"), 1, "JSON object")
    assert_one_line_error(flowbridge("run-workflow", str(schema_file), "--inputs", "{oops"), 1, "not JSON")
    assert_one_line_error(flowbridge("run-workflow", "no/such.json"), 1, "no/such.json")


# ``python -m webapp.cli`` as a terminal starts it: with Ctrl-C raising KeyboardInterrupt. When pytest itself
# runs in the background (``pytest &`` in a non-interactive shell), its children inherit SIGINT *ignored*,
# and Python keeps it ignored: the shell's explicit choice, which the CLI rightly honours, so the test
# restores the default for the command under test instead. (No preexec_fn: not safe with threads.)
WITH_CTRL_C = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
               "runpy.run_module('webapp.cli', run_name='__main__', alter_sys=True)")


def test_ctrl_c_cancels_the_workflow(upstream: FakeUpstream, schema_file: Path, tmp_path: Path) -> None:
    upstream.configure(delay=3.0)  # SIGINT and the cancel must land while the llm node runs
    err_path = tmp_path / "stderr"
    with err_path.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-c", WITH_CTRL_C, "run-workflow", str(schema_file),
                                 "--inputs", '{"q": "slow"}'], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                                stderr=err, env=cli_env(upstream))
        try:
            assert upstream.wait_for(lambda s: s["in_flight"] == 1, timeout=30)  # the llm node is waiting
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr = err_path.read_text()
    assert proc.returncode == 1 and out == "", stderr
    assert "canceling task" in stderr and "error: task canceled" in stderr and "Traceback" not in stderr


def test_run_workflow_reads_stdin(upstream: FakeUpstream) -> None:
    schema = json.loads((ROOT / "examples/workflows/code.json").read_text())
    done = flowbridge("run-workflow", "-", "--inputs", '{"text": "a b a"}', upstream=upstream,
                      stdin=json.dumps(schema))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["words"] == 3
