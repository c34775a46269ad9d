"""The ``flowbridge`` command.

``flowbridge serve`` runs the app under gunicorn (or the Flask development
server with ``--dev``), starting the embedded local model server when no
``LLM_BASE_URL`` is set.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowbridge", description="Run LLM workflows behind Flask + gunicorn.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the web app")
    serve.add_argument("--bind", default=os.environ.get("FLOWBRIDGE_BIND", "127.0.0.1:8000"),
                       help="HOST:PORT to listen on (default %(default)s)")
    serve.add_argument("--dev", action="store_true", help="use the Flask development server")
    args = parser.parse_args(argv)

    if args.command == "serve":
        return _serve(args.bind, args.dev)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2


def _serve(bind: str, dev: bool) -> int:
    if not dev:
        os.environ["FLOWBRIDGE_BIND"] = bind
        os.chdir(_ROOT)
        gunicorn_args = [sys.executable, "-m", "gunicorn", "-c", str(_ROOT / "gunicorn.conf.py"), "wsgi:app"]
        os.execv(sys.executable, gunicorn_args)
    from llm_client.local_server import ensure_local_server

    from . import create_app

    host, _, port = bind.rpartition(":")
    server = ensure_local_server(os.environ)
    try:
        create_app().run(host=host or "127.0.0.1", port=int(port), threaded=True)
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
