"""What the ``flowbridge`` commands share: errors, the model server, the LLM client, option types."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llm_client import LLMClient

__all__ = ["CLIError", "add_generation_options", "describe_error", "llm_client", "model_server", "positive_int", "temperature"]


class CLIError(Exception):
    """A command cannot go on; the message is shown as is, on one line."""


def describe_error(exc: BaseException) -> str:
    """``exc`` as one line: our own errors by their message, others with their type."""
    from llm_client import LLMError

    from ..config import ConfigError

    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    elif not isinstance(exc, (CLIError, LLMError, ConfigError, ValueError)):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    first, *rest = text.splitlines() or [""]
    return first + (" ..." if rest else "")


@contextmanager
def model_server() -> Iterator[None]:
    """Without ``LLM_BASE_URL``, start (or reuse) the local model server for the command's duration."""
    if os.environ.get("LLM_BASE_URL", "").strip() or os.environ.get("OPENAI_BASE_URL", "").strip():
        yield
        return
    from llm_client.local_server import ensure_local_server

    server = ensure_local_server(os.environ)
    try:
        yield
    finally:
        if server is not None:
            server.stop()


def llm_client(**options: Any) -> LLMClient:
    """A client with the environment's ``LLM_*`` settings (a bad one is an error naming it)."""
    from llm_client import LLMClient

    return LLMClient(**options)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def temperature(text: str) -> float:
    """argparse type: a number from 0 to 2."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 2, got {text!r}") from None
    if not 0 <= value <= 2:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 2, got {text!r}")
    return value


def add_generation_options(parser: argparse.ArgumentParser, default_temperature: float) -> None:
    """``--system``, ``--temperature``, ``--max-tokens``."""
    parser.add_argument("--system", metavar="TEXT", help="a system prompt")
    parser.add_argument("--temperature", type=temperature, default=default_temperature,
                        help="sampling temperature, 0 to 2 (default %(default)s)")
    parser.add_argument("--max-tokens", type=positive_int, default=256, metavar="N",
                        help="most tokens per answer (default %(default)s)")
