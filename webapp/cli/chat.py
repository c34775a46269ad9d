"""``flowbridge chat``: stream answers of the configured model to the terminal."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from .common import add_generation_options, llm_client, model_server

__all__ = ["add_chat_parser", "run_chat"]


def add_chat_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "chat", help="chat with the configured model, streaming the answer",
        description="Send MESSAGE and stream the answer as it is written. Without MESSAGE, read one message "
                    "per line from stdin and keep the conversation going until end of input (Ctrl-D); "
                    "Ctrl-C stops the answer being written. The model is the one of LLM_BASE_URL / LLM_MODEL "
                    "(without LLM_BASE_URL, the local model).")
    parser.add_argument("message", nargs="?", metavar="MESSAGE", help="the message (default: read stdin)")
    add_generation_options(parser, default_temperature=0.7)
    parser.set_defaults(handler=run_chat)


def run_chat(args: argparse.Namespace) -> int:
    if args.message is not None and not args.message.strip():
        raise ValueError("MESSAGE is empty")
    with model_server(), llm_client() as client:
        history: list[dict[str, str]] = [{"role": "system", "content": args.system}] if args.system else []
        if args.message is not None:
            history.append({"role": "user", "content": args.message})
            _stream(client, history, args, sys.stdout)
            return 0
        return _converse(client, history, args)


def _converse(client: Any, history: list[dict[str, str]], args: argparse.Namespace) -> int:
    """One turn per stdin line; a failed turn is reported and forgotten, and makes the exit status 1."""
    from llm_client import LLMError

    interactive = sys.stdin.isatty()
    failed = False
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            if interactive:
                print(file=sys.stderr)
            return 1 if failed else 0
        message = line.strip()
        if not message:
            continue
        history.append({"role": "user", "content": message})
        try:
            answer = _stream(client, history, args, sys.stdout)
        except LLMError as exc:
            history.pop()
            failed = True
            print(f"flowbridge chat: error: {str(exc).splitlines()[0] if str(exc) else exc!r}", file=sys.stderr)
            continue
        except KeyboardInterrupt:
            if not interactive:
                raise
            print("\n(stopped)", file=sys.stderr)
            history.pop()
            continue
        history.append({"role": "assistant", "content": answer})


def _stream(client: Any, messages: list[dict[str, str]], args: argparse.Namespace, out: TextIO) -> str:
    """Write the answer's deltas to ``out`` as they arrive; returns the whole answer."""
    parts: list[str] = []
    with client.chat_stream(messages, args.temperature, args.max_tokens) as deltas:
        try:
            for delta in deltas:
                parts.append(delta)
                out.write(delta)
                out.flush()
        finally:
            if parts:
                out.write("\n")
                out.flush()
    return "".join(parts)
