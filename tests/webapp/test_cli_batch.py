"""``flowbridge batch``: a real subprocess against the fake upstream, killed midway and resumed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.fake_upstream import FakeUpstream
from tests.servers import ROOT
from tests.webapp.test_cli import cli_env, flowbridge
from webapp.cli.batch import read_prompts, scan_results

CHAT = "/v1/chat/completions"


def rows(path: Path) -> list[dict[str, Any]]:
    """Every line of the output file, each of which must be a JSON object."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_prompts(path: Path, count: int) -> list[str]:
    prompts = [f"prompt number {i}" for i in range(count)]
    # empty and blank lines are not prompts and do not count as indexes
    path.write_text("\n".join(p if i % 50 else f"\n  \n{p}" for i, p in enumerate(prompts)) + "\n", encoding="utf-8")
    return prompts


def line_count(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_killed_batch_resumes_with_only_the_missing_prompts(upstream: FakeUpstream, tmp_path: Path) -> None:
    prompts_path, out = tmp_path / "prompts.txt", tmp_path / "results.jsonl"
    prompts = write_prompts(prompts_path, 200)
    assert read_prompts(prompts_path) == prompts
    upstream.configure(delay=0.05)
    err_path = tmp_path / "first.stderr"
    command = [sys.executable, "-m", "webapp.cli", "batch", str(prompts_path), "--out", str(out), "--concurrency", "2"]

    # 1. start it, and kill it (SIGKILL: no chance to tidy up) once 40 answers are in the file
    with err_path.open("w") as err:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env=cli_env(upstream))
        try:
            deadline = time.monotonic() + 60
            while line_count(out) < 40 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert proc.poll() is None, "the batch ended before it could be killed"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "%|" in err_path.read_text()  # tqdm's bar was drawing
    first = rows(out)  # every line is whole JSON: each is written and flushed at once
    indexes = [row["index"] for row in first]
    assert 40 <= len(first) < 200 and len(set(indexes)) == len(indexes)
    assert all(row == {"index": row["index"], "prompt": prompts[row["index"]],
                       "response": f"echo: {prompts[row['index']]}"} for row in first)

    # 2. rerun: only the missing prompts go upstream. A fresh upstream counts them: a request the
    # killed process sent just before it died may still reach the first one at any moment.
    with FakeUpstream() as rerun_upstream:
        rerun_upstream.configure(delay=0.01)
        done = flowbridge("batch", str(prompts_path), "--out", str(out), "--concurrency", "4",
                          upstream=rerun_upstream)
        stats = rerun_upstream.stats()
    assert done.returncode == 0, done.stderr
    final = rows(out)
    assert len(final) == 200 and sorted(row["index"] for row in final) == list(range(200))
    assert final[: len(first)] == first  # appended, nothing rewritten
    missing = set(range(200)) - set(indexes)
    assert stats["by_path"] == {CHAT: len(missing)}
    sent = [r["json"]["messages"][-1]["content"] for r in stats["requests_log"]]
    assert sorted(sent) == sorted(prompts[i] for i in missing)
    assert stats["max_concurrency"] <= 4
    assert "200/200" in done.stderr and "%|" in done.stderr
    assert f"{len(first)} answered and 0 failed already" in done.stderr
    assert "200/200 answered" in done.stderr.strip().splitlines()[-1]

    # 3. a third run has nothing to do
    upstream.reset()
    again = flowbridge("batch", str(prompts_path), "--out", str(out), upstream=upstream)
    assert again.returncode == 0 and upstream.stats()["requests"] == 0 and len(rows(out)) == 200


def test_failures_are_kept_then_retried(upstream: FakeUpstream, tmp_path: Path) -> None:
    prompts_path, out = tmp_path / "prompts.txt", tmp_path / "results.jsonl"
    prompts = write_prompts(prompts_path, 10)
    upstream.push_faults(*[{"status": 400, "body": {"error": {"message": "rejected", "type": "x"}}}] * 3)
    args = ["batch", str(prompts_path), "--out", str(out), "--concurrency", "1", "--system", "Be brief",
            "--temperature", "0.3", "--max-tokens", "20"]
    done = flowbridge(*args, upstream=upstream)
    assert done.returncode == 1
    assert "7/10 answered (7 now), 3 failed" in done.stderr and "--retry-failed" in done.stderr
    failed = [row for row in rows(out) if "error" in row]
    assert [row["index"] for row in failed] == [0, 1, 2]  # concurrency 1: the first three met the faults
    assert "rejected" in failed[0]["error"] and "response" not in failed[0]
    body = upstream.stats()["last_request"]["json"]
    assert body["messages"][0] == {"role": "system", "content": "Be brief"}
    assert body["temperature"] == 0.3 and body["max_tokens"] == 20

    # without --retry-failed, failures stay failures: nothing is sent, and the status stays 1
    upstream.reset()
    done = flowbridge(*args, upstream=upstream)
    assert done.returncode == 1 and upstream.stats()["requests"] == 0

    # a line cut short by a kill is ignored, and the next line starts on its own
    with out.open("a", encoding="utf-8") as f:
        f.write('{"index": 5, "prompt": "prompt num')
    done = flowbridge(*args, "--retry-failed", upstream=upstream)
    assert done.returncode == 0, done.stderr
    assert "ignoring 1 line(s)" in done.stderr and "10/10 answered (3 now), 0 failed" in done.stderr
    assert upstream.stats()["by_path"] == {CHAT: 3}
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[-4].startswith('{"index": 5, "prompt": "prompt num') and len(lines) == 14
    answered, still_failed, ignored = scan_results(out, prompts)
    assert answered == set(range(10)) and still_failed == set() and ignored == 1


def test_a_changed_prompt_is_answered_again(upstream: FakeUpstream, tmp_path: Path) -> None:
    prompts_path, out = tmp_path / "prompts.txt", tmp_path / "results.jsonl"
    prompts_path.write_text("alpha\nbeta\n", encoding="utf-8")
    assert flowbridge("batch", str(prompts_path), "--out", str(out), upstream=upstream).returncode == 0
    prompts_path.write_text("alpha\ngamma\n", encoding="utf-8")
    upstream.reset()
    done = flowbridge("batch", str(prompts_path), "--out", str(out), upstream=upstream)
    assert done.returncode == 0 and upstream.stats()["requests"] == 1
    assert rows(out)[-1] == {"index": 1, "prompt": "gamma", "response": "echo: gamma"}
