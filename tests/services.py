"""Real PostgreSQL and Redis servers for tests, started on 127.0.0.1 in temporary directories.

Import the fixtures where they are needed (``from tests.services import postgres_url, redis_server``) and mark
the tests ``@pytest.mark.services`` (``-m "not services"`` skips them in a quick local run). Each server is
started once per test session, whichever modules import its fixtures, and stopped at the end of the session.

When a server binary is missing the tests that need it are skipped, except when the environment variable ``CI``
is set: there they fail, since CI must run them.

PostgreSQL runs as a non-root user (``postgres``, created by the Debian package) when the suite runs as root, as
CI does: ``initdb`` and ``postgres`` refuse to run as root. Authentication is ``trust``, on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port, terminate

PG_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")
PG_USER = "flowbridge"  # the database superuser initdb creates (trust auth, no password)
PG_SYSTEM_USER = "postgres"  # the OS user the server runs as when the suite runs as root


def _missing(what: str) -> None:
    """Skip the test (fail under CI) because a server binary is not installed."""
    message = f"{what} is not installed (Debian packages postgresql and redis-server)"
    if os.environ.get("CI"):
        pytest.fail(message + "; CI must run the services tests")
    pytest.skip(message)


def _pg_bin(name: str) -> str | None:
    for folder in PG_BIN_DIRS:
        path = Path(folder) / name
        if path.exists():
            return str(path)
    return shutil.which(name)


def _wait(check, what: str, timeout: float) -> None:
    """Poll ``check()`` until it returns true, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} was not ready within {timeout}s")


class PostgresServer:
    """A PostgreSQL cluster in a temporary directory, served on 127.0.0.1:``port``.

    :attr:`url` names the database ``flowbridge``; :meth:`create_database` makes a fresh one for a test that
    needs its own. :meth:`stop` and :meth:`start` restart it on the same port and data (fault tests).
    """

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="flowbridge-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.url = self.database_url("flowbridge")

    def database_url(self, name: str) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{name}"

    def _as_server_user(self, command: list[str]) -> list[str]:
        return ["runuser", "-u", PG_SYSTEM_USER, "--", *command] if os.geteuid() == 0 else command

    def _run(self, command: list[str], timeout: float = 120) -> None:
        done = subprocess.run(self._as_server_user(command), capture_output=True, timeout=timeout, check=False)
        if done.returncode:
            raise RuntimeError(f"{command[0]} failed ({done.returncode}): {done.stderr.decode(errors='replace')}"
                               f"\nlog: {self.log.read_text(errors='replace') if self.log.exists() else ''}")

    def init(self) -> PostgresServer:
        if os.geteuid() == 0:
            shutil.chown(self.folder, user=PG_SYSTEM_USER)
        self._run([self.initdb, "-D", str(self.data), "-U", PG_USER, "--auth=trust", "-E", "UTF8",
                   "--no-sync", "--no-instructions"])
        self.start()
        self._sql("postgres", "CREATE DATABASE flowbridge")
        return self

    def start(self, timeout: float = 120) -> None:
        # -k: the Unix socket in our folder (not /var/run/postgresql); -F: no fsync (test data only).
        options = f"-p {self.port} -h 127.0.0.1 -k {self.folder} -F -c max_connections=200"
        self._run([self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.log), "-w",
                   "-t", str(int(timeout)), "start"], timeout=timeout + 10)
        _wait(self._accepts, "PostgreSQL", timeout)

    def stop(self) -> None:
        """Fast shutdown: open connections are closed at once (what a database restart does to the app)."""
        if self.data.exists():
            self._run([self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def restart(self) -> None:
        self.stop()
        self.start()

    def _accepts(self) -> bool:
        import psycopg
        try:
            with psycopg.connect(self.database_url("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _sql(self, database: str, statement: str) -> None:
        import psycopg
        with psycopg.connect(self.database_url(database), autocommit=True, connect_timeout=10) as connection:
            connection.execute(statement)  # type: ignore[arg-type]

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        self._sql("postgres", f"CREATE DATABASE {name}")
        return self.database_url(name)

    def drop_database(self, url: str) -> None:
        self._sql("postgres", f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port`` with no persistence; :meth:`restart` empties it (fault tests)."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.folder = Path(tempfile.mkdtemp(prefix="flowbridge-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> RedisServer:
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 (kept by the child)
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)], stdout=log, stderr=log)
        log.close()
        _wait(self.ping, "Redis", timeout)
        return self

    def ping(self) -> bool:
        """True when the server answers PING (raw RESP, so this module needs no Redis client)."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.process.returncode}; log: {self.folder}/redis.log")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process, wait=30)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


# One server of each kind per session, shared by every module that imports the fixtures (each import makes its
# own fixture definition, so the servers are counted here rather than cached by pytest).
_servers: dict[str, object] = {}
_users: dict[str, int] = {}


def _acquire(kind: str, make) -> object:
    if kind not in _servers:
        _servers[kind] = make()
    _users[kind] = _users.get(kind, 0) + 1
    return _servers[kind]


def _release(kind: str) -> None:
    _users[kind] -= 1
    if not _users[kind]:
        _servers.pop(kind).close()  # type: ignore[attr-defined]


def _make_postgres() -> PostgresServer:
    if not (_pg_bin("initdb") and _pg_bin("pg_ctl")):
        _missing("PostgreSQL (initdb, pg_ctl)")
    server = PostgresServer()
    try:
        return server.init()
    except BaseException:
        server.close()
        raise


def _make_redis() -> RedisServer:
    if not shutil.which("redis-server") and not Path("/usr/bin/redis-server").exists():
        _missing("redis-server")
    server = RedisServer()
    try:
        return server.start()
    except BaseException:
        server.close()
        raise


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (``.url``, ``.create_database()``, ``.restart()``)."""
    server = _acquire("postgres", _make_postgres)
    try:
        yield server  # type: ignore[misc]
    finally:
        _release("postgres")


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """``postgresql://flowbridge@127.0.0.1:PORT/flowbridge``: the session's shared database."""
    return postgres_server.url


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test (dropped afterwards); yields its URL."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's Redis server (``.url`` = ``redis://127.0.0.1:PORT/0``, ``.restart()``, ``.ping()``)."""
    server = _acquire("redis", _make_redis)
    try:
        yield server  # type: ignore[misc]
    finally:
        _release("redis")
