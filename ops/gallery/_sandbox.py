"""Run model-written Python in a child process with limits: never in ours.

:func:`run_python` starts ``sys.executable -I -X utf8 -u`` (isolated mode: no
``PYTHON*`` variables, no user site-packages, no script directory on the path)
with an **empty environment** (no API keys, no ``LLM_*``), in a fresh temporary
working directory that is deleted afterwards, in its own session (process
group). A small fixed runner (our code, :data:`_RUNNER`) reads the code from
stdin, sets the resource limits, drops root privileges, then ``exec``\\ s the
code *in the child*. The parent waits with a wall-clock timeout and then kills
the whole process group, so nothing the code started outlives the run.

Limits (see :class:`SandboxLimits`): CPU seconds (``RLIMIT_CPU``), address space
(``RLIMIT_AS``), size of any file written (``RLIMIT_FSIZE``, stdout and stderr
included: they go to files, so a print loop can neither fill our memory nor block
on a pipe), no new processes (``RLIMIT_NPROC`` = 0), open files, no core dumps.
When the parent runs as root, the child switches to the ``nobody`` user (65534)
before running the code: root ignores ``RLIMIT_NPROC`` and could raise its limits
back. Output read back is bounded (``max_output`` characters each).

What this does NOT isolate (it is a resource sandbox, not a security boundary):

* the **network**: the code can open sockets and reach any host the server can
  (there is no network namespace or firewall here);
* the **file system**: the code can read every file the child's user can read
  (world-readable files, or all of them when root could not be dropped) and write
  where that user may write (limited in size per file, not in count);
* **time of other tenants**: one run holds a thread of ``C.thread_pool`` and one
  CPU for up to its timeout;
* kernel-level attacks (no seccomp, no namespaces, no container).

Run it only where that is acceptable, or put the server in a container without
network access.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["SandboxLimits", "SandboxResult", "run_python"]

#: uid/gid the child switches to when the parent is root (``nobody`` on Linux).
NOBODY = 65534

#: Standard modules imported before the child drops root privileges: the interpreter's own files may
#: sit where ``nobody`` cannot read them (e.g. under /root/.pyenv); these stay importable then.
PRELOAD = (
    "base64", "bisect", "calendar", "collections", "copy", "csv", "dataclasses", "datetime", "decimal",
    "enum", "fractions", "functools", "hashlib", "heapq", "io", "itertools", "json", "math", "operator",
    "pprint", "random", "re", "statistics", "string", "textwrap", "time", "typing", "unicodedata", "uuid",
)

#: The child's own code: limits first, then privileges, then the model's code. Reads the code from stdin.
_RUNNER = r"""
import json, os, resource, signal, sys
settings = json.loads(sys.argv[1])
code = sys.stdin.read()
sys.stdin.close()
for name, value in settings["rlimits"].items():
    resource.setrlimit(getattr(resource, name), tuple(value))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write raises OSError (EFBIG) instead
if settings["uid"] is not None:
    for module in settings["preload"]:  # the interpreter's files may not be readable by the new user
        try:
            __import__(module)
        except ImportError:
            pass
    try:
        os.setgroups([])
        os.setgid(settings["uid"])
        os.setuid(settings["uid"])
    except OSError as exc:
        sys.stderr.write(f"[sandbox] could not drop root privileges: {exc}\n")
os.chdir(settings["cwd"])
sys.path[:] = [p for p in sys.path if p and os.path.isabs(p)]
namespace = {"__name__": "__main__", "__builtins__": __builtins__}
try:
    exec(compile(code, "<code>", "exec"), namespace)
except SystemExit:
    raise
except BaseException as exc:
    sys.stdout.flush()
    sys.stderr.write("\n__SANDBOX_ERROR__" + json.dumps({"type": type(exc).__name__, "message": str(exc)}))
    sys.stderr.flush()
    os._exit(1)
"""

_ERROR_MARK = "\n__SANDBOX_ERROR__"


@dataclass(frozen=True)
class SandboxLimits:
    """The bounds of one run; every field must be > 0."""

    #: wall-clock seconds before the process group is killed
    timeout: float = 10.0
    #: CPU seconds (the child gets SIGXCPU, then SIGKILL one second later)
    cpu_seconds: int = 5
    #: address space, in MiB (allocations beyond raise MemoryError)
    memory_mb: int = 512
    #: the largest file the code may write (stdout and stderr too), in MiB
    file_size_mb: int = 8
    #: characters of stdout (and of stderr) read back
    max_output: int = 20_000
    #: open file descriptors
    max_open_files: int = 64

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"sandbox limit {name} must be a number > 0, got {value!r}")


@dataclass(frozen=True)
class SandboxResult:
    """What one run gave: its output, and why it stopped when it did not end normally."""

    stdout: str
    stderr: str
    #: the process's exit code (negative: killed by that signal)
    exit_code: int
    #: "" when the code ran to its end, else e.g. "timed out after 10s", "ZeroDivisionError: division by zero"
    error: str
    #: stdout or stderr was longer than ``max_output`` (or hit the file size limit)
    truncated: bool

    @property
    def ok(self) -> bool:
        return not self.error


def run_python(code: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run ``code`` in a limited child process (blocking: call it on a thread); see the module doc.

    :raises TypeError: when ``code`` is not a string.
    """
    if not isinstance(code, str):
        raise TypeError(f"code must be a string, got {type(code).__name__}")
    limits = limits or SandboxLimits()
    with tempfile.TemporaryDirectory(prefix="flowbridge-code-") as root:
        work = Path(root, "work")
        work.mkdir()
        as_root = os.geteuid() == 0
        if as_root:  # the child runs as nobody: it may pass through root, and owns work
            os.chmod(root, 0o711)
            os.chown(work, NOBODY, NOBODY)
        settings = {"rlimits": _rlimits(limits), "uid": NOBODY if as_root else None, "cwd": str(work),
                    "preload": PRELOAD}
        out_path, err_path = Path(root, "stdout"), Path(root, "stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-I", "-X", "utf8", "-u", "-c", _RUNNER, json.dumps(settings)],
                stdin=subprocess.PIPE, stdout=out, stderr=err, cwd=work, env={},
                start_new_session=True, close_fds=True,
            )
            timed_out = _wait(process, code, limits.timeout)
        stdout, out_cut = _read(out_path, limits.max_output)
        stderr, err_cut = _read(err_path, limits.max_output)
    stderr, raised = _split_error(stderr)
    error = _explain(process.returncode, timed_out, raised, stderr, limits)
    truncated = out_cut or err_cut or "File too large" in error
    return SandboxResult(stdout=stdout, stderr=stderr, exit_code=process.returncode, error=error, truncated=truncated)


def _rlimits(limits: SandboxLimits) -> dict[str, tuple[int, int]]:
    cpu = max(1, int(limits.cpu_seconds))
    return {
        "RLIMIT_CPU": (cpu, cpu + 1),
        "RLIMIT_AS": (limits.memory_mb * 2**20,) * 2,
        "RLIMIT_FSIZE": (limits.file_size_mb * 2**20,) * 2,
        "RLIMIT_NPROC": (0, 0),
        "RLIMIT_NOFILE": (limits.max_open_files,) * 2,
        "RLIMIT_CORE": (0, 0),
    }


def _wait(process: subprocess.Popen[bytes], code: str, timeout: float) -> bool:
    """Send the code, wait up to ``timeout`` seconds, then kill the process group; True on timeout."""
    timed_out = False
    try:
        process.communicate(code.encode("utf-8", "surrogatepass"), timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    except BrokenPipeError:  # the runner died before reading all the code
        pass
    finally:
        _kill_group(process.pid)  # also whatever the code left running in its session
        process.wait()
    return timed_out


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read(path: Path, limit: int) -> tuple[str, bool]:
    """The first ``limit`` characters of the file, and whether there was more."""
    with open(path, "rb") as file:
        data = file.read(limit * 4 + 4)  # UTF-8: at most 4 bytes a character
    text = data.decode("utf-8", "replace")
    return (text[:limit], True) if len(text) > limit or len(data) > limit * 4 else (text, False)


def _split_error(stderr: str) -> tuple[str, dict[str, str] | None]:
    """stderr without the runner's error record, and that record (the exception the code raised)."""
    head, mark, tail = stderr.rpartition(_ERROR_MARK)
    if not mark:
        return stderr, None
    try:
        return head, json.loads(tail)
    except ValueError:
        return head, {"type": "Error", "message": tail}


def _explain(code: int, timed_out: bool, raised: dict[str, str] | None, stderr: str,
             limits: SandboxLimits) -> str:
    """"" for a normal end, else one line saying why the run stopped."""
    if timed_out:
        return f"timed out after {limits.timeout:g}s (wall clock); the process was killed"
    if raised is not None:
        if raised["type"] == "MemoryError":
            return f"MemoryError: over the memory limit of {limits.memory_mb} MiB"
        return f"{raised['type']}: {raised['message']}"
    if code == 0:
        return ""
    if code < 0:
        number = -code
        if number == signal.SIGXCPU:
            return f"CPU time limit of {limits.cpu_seconds}s exceeded; the process was killed"
        if number == signal.SIGKILL:  # the CPU hard limit, or the kernel out of memory
            return f"killed (CPU limit {limits.cpu_seconds}s, memory limit {limits.memory_mb} MiB)"
        try:
            return f"killed by signal {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    last = stderr.strip().splitlines()[-1:] or [""]
    return f"exit code {code}" + (f": {last[0][:500]}" if last[0] else "")
