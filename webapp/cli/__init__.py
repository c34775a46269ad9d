"""The ``flowbridge`` command.

``flowbridge serve`` runs the app under gunicorn (or the Flask development
server with ``--dev``), starting the embedded local model server when no
``LLM_BASE_URL`` is set. The other commands work in this process, with the
settings of the environment (``LLM_*``, ``FLOWBRIDGE_*``), and no server:

* ``chat [MESSAGE]`` streams an answer (without MESSAGE: a conversation read from stdin);
* ``run-op NAME key=value ...`` runs a registered op or a flow of ``FLOWBRIDGE_FLOWS``;
* ``run-workflow schema.json --inputs '{...}'`` runs a FlowGram workflow, showing node statuses;
* ``batch prompts.txt --out results.jsonl`` answers one prompt per line, resumably.
* ``mcp`` serves the tool ops and flows as an MCP server on stdin/stdout.
* ``worker --concurrency N`` runs the workflow tasks app servers queue on ``FLOWBRIDGE_BROKER_URL``.

Every command has ``--help``. Errors are one line on stderr and a non-zero
exit status: 2 for bad usage, 1 for anything else, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

_ROOT = Path(__file__).resolve().parents[2]

#: Exit status of a command interrupted with Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and the hint to ``--help``), not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .batch import add_batch_parser
    from .chat import add_chat_parser
    from .mcp import add_mcp_parser
    from .ops import add_run_op_parser
    from .worker import add_worker_parser
    from .workflow import add_run_workflow_parser

    parser = _Parser(prog="flowbridge", description="Run LLM workflows behind Flask + gunicorn.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve the web app",
                                description="Serve the web app under gunicorn (or Flask's dev server), with "
                                            "the local model server when LLM_BASE_URL is not set.")
    serve.add_argument("--bind", default=os.environ.get("FLOWBRIDGE_BIND", "127.0.0.1:8000"),
                       help="HOST:PORT to listen on (default %(default)s)")
    serve.add_argument("--dev", action="store_true", help="use the Flask development server")
    serve.set_defaults(handler=lambda args: _serve(args.bind, args.dev))
    add_chat_parser(commands)
    add_run_op_parser(commands)
    add_run_workflow_parser(commands)
    add_batch_parser(commands)
    add_mcp_parser(commands)
    add_worker_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "takes_inputs", False) and not any(a.startswith("-") for a in extra):
        args.inputs += extra  # `run-op NAME --json k=v`: inputs after an option
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    handler: Callable[[argparse.Namespace], int] = args.handler
    prog = f"flowbridge {args.command}"
    try:
        return handler(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (`flowbridge ... | head`): not an error; keep Python from complaining at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # the command line's one error boundary: one line, no traceback
        from .common import describe_error

        print(f"{prog}: error: {describe_error(exc)}", file=sys.stderr)
        return 1


def _serve(bind: str, dev: bool) -> int:
    os.environ["FLOWBRIDGE_BIND"] = bind  # the app's Host check depends on it (webapp.guards.origin)
    if not dev:
        os.chdir(_ROOT)
        gunicorn_args = [sys.executable, "-m", "gunicorn", "-c", str(_ROOT / "gunicorn.conf.py"), "wsgi:app"]
        os.execv(sys.executable, gunicorn_args)
    from werkzeug.serving import WSGIRequestHandler

    from llm_client.local_server import ensure_local_server

    from .. import create_app

    class _DevRequestHandler(WSGIRequestHandler):
        """Without werkzeug's own line per request: the app's access log has one."""

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    host, _, port = bind.rpartition(":")
    server = ensure_local_server(os.environ)
    try:
        create_app().run(host=host or "127.0.0.1", port=int(port), threaded=True,
                         request_handler=_DevRequestHandler)
    finally:
        if server is not None:
            server.stop()
    return 0

