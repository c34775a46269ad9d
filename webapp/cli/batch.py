"""``flowbridge batch``: answer a file of prompts, concurrently and resumably, with a progress bar.

The output is JSON Lines, one object per prompt, appended (and flushed) as each answer
arrives, in completion order::

    {"index": 0, "prompt": "...", "response": "..."}
    {"index": 1, "prompt": "...", "error": "LLMStatusError: ..."}

``index`` counts the non-empty lines of the prompts file from 0. Rerunning the same command
skips every prompt that already has a line whose ``index`` and ``prompt`` both match (so a
changed prompt is answered again), which makes a killed run resumable: at most the prompts in
flight are lost. Failed prompts are kept as they are unless ``--retry-failed``; a retried
prompt then has its error line followed by a newer line, and the last line of an index wins.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import IO, Any

from .common import CLIError, add_generation_options, describe_error, llm_client, model_server, positive_int

__all__ = ["add_batch_parser", "read_prompts", "run_batch", "scan_results"]


def add_batch_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "batch", help="answer one prompt per line into a JSONL file, resumably",
        description="Send each non-empty line of PROMPTS.txt to the model (LLM_BASE_URL / LLM_MODEL), at most "
                    "--concurrency at a time, with a progress bar on stderr. Each answer is appended to --out as "
                    "soon as it arrives, as {\"index\", \"prompt\", \"response\"} or {\"index\", \"prompt\", "
                    "\"error\"}. Rerunning skips the prompts already answered in --out, so an interrupted run "
                    "can simply be started again. Exit status 0 when every prompt has an answer, 1 otherwise.",
        epilog="example: flowbridge batch prompts.txt --out results.jsonl --concurrency 8")
    parser.add_argument("prompts", metavar="PROMPTS.txt", help="one prompt per line (empty lines are skipped)")
    parser.add_argument("--out", required=True, metavar="RESULTS.jsonl", help="the JSON Lines file to append to")
    parser.add_argument("--concurrency", type=positive_int, default=4, metavar="N",
                        help="prompts in flight at once (default %(default)s)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="answer again the prompts whose line in --out is an error")
    add_generation_options(parser, default_temperature=0.0)
    parser.set_defaults(handler=run_batch)


def read_prompts(path: Path) -> list[str]:
    """The non-empty lines of ``path``, stripped."""
    with path.open(encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def scan_results(path: Path, prompts: list[str]) -> tuple[set[int], set[int], int]:
    """``(answered, failed, ignored)`` of an existing output file.

    ``answered`` and ``failed`` are indexes whose line matches ``prompts`` (an answered index is
    never in ``failed``); ``ignored`` counts lines that are not JSON (a line cut by a kill) or
    belong to another prompts file.
    """
    answered: set[int] = set()
    failed: set[int] = set()
    ignored = 0
    if not path.exists():
        return answered, failed, ignored
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                ignored += 1
                continue
            index = row.get("index") if isinstance(row, dict) else None
            if (not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(prompts)
                    or row.get("prompt") != prompts[index]):
                ignored += 1
            elif isinstance(row.get("response"), str) and "error" not in row:
                answered.add(index)
            else:
                failed.add(index)
    return answered, failed - answered, ignored


class _Writer:
    """Appends one JSON line per result and flushes it, so a kill loses nothing already answered."""

    def __init__(self, path: Path) -> None:
        torn = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        self._file: IO[str] = path.open("a", encoding="utf-8")
        if torn:  # the last line was cut short by a kill: start a fresh one
            self._file.write("\n")

    def write(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def run_batch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    source, out = Path(args.prompts), Path(args.out)
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise CLIError("--out must not be the prompts file")
    prompts = read_prompts(source)
    if not prompts:
        raise CLIError(f"{source} has no prompts (no non-empty lines)")
    answered, failed, ignored = scan_results(out, prompts)
    if ignored:
        print(f"flowbridge batch: ignoring {ignored} line(s) of {out} that are cut short or do not match "
              f"{source}", file=sys.stderr)
    kept = set() if args.retry_failed else failed
    todo = [i for i in range(len(prompts)) if i not in answered and i not in kept]
    if answered or kept:
        print(f"flowbridge batch: {len(answered)} answered and {len(failed)} failed already in {out}; "
              f"{len(todo)} to do", file=sys.stderr)

    writer = _Writer(out)
    outcome = {"ok": 0, "failed": 0}
    bar = tqdm(total=len(prompts), initial=len(prompts) - len(todo), desc="batch", unit="prompt",
               file=sys.stderr, dynamic_ncols=True, mininterval=0.1 if sys.stderr.isatty() else 1.0)
    try:
        with model_server(), llm_client(max_workers=args.concurrency) as client:
            asyncio.run(_answer_all(client, prompts, todo, args, writer, bar, outcome))
    except KeyboardInterrupt:
        bar.close()
        writer.close()
        print(f"flowbridge batch: interrupted; {outcome['ok'] + len(answered)}/{len(prompts)} answered in {out}; "
              "run the same command again to finish", file=sys.stderr)
        return 130
    bar.close()
    writer.close()
    total_ok = len(answered) + outcome["ok"]
    total_failed = outcome["failed"] + len(kept)
    summary = (f"flowbridge batch: {total_ok}/{len(prompts)} answered ({outcome['ok']} now), "
               f"{total_failed} failed; results in {out}")
    if total_failed:
        summary += "; rerun with --retry-failed to try the failed ones again"
    print(summary, file=sys.stderr)
    return 1 if total_failed else 0


async def _answer_all(client: Any, prompts: list[str], todo: list[int], args: argparse.Namespace,
                      writer: _Writer, bar: Any, outcome: dict[str, int]) -> None:
    from async_utils import AsyncBatchProcessor

    async def answer(index: int) -> None:
        prompt = prompts[index]
        try:
            text = await client.chat_async(prompt, args.temperature, args.max_tokens, args.system)
        except Exception as exc:  # recorded per prompt (a line in the file), never dropped
            writer.write({"index": index, "prompt": prompt, "error": f"{type(exc).__name__}: {describe_error(exc)}"})
            outcome["failed"] += 1
        else:
            writer.write({"index": index, "prompt": prompt, "response": text})
            outcome["ok"] += 1

    def progress(done: int, total: int) -> None:
        bar.update(1)
        if outcome["failed"]:
            bar.set_postfix(failed=outcome["failed"], refresh=False)

    processor = AsyncBatchProcessor(answer, batch_size=max(10, 2 * args.concurrency),
                                    max_workers=args.concurrency, progress=progress)
    await processor.process_batch(todo)
