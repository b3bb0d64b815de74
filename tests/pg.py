"""A private PostgreSQL server for the tests: found (or installed), started on a free
loopback port with its socket in a temporary directory, and removed at the end.

Where the server comes from, in order:

1. Debian's server binaries, ``/usr/lib/postgresql/<version>/bin`` (the newest), else
   ``initdb`` and ``pg_ctl`` on the PATH;
2. when there are none and the tests run as root on Debian (as CI does), the
   ``postgresql`` package, installed with ``apt-get install --no-install-recommends``
   (after ``apt-get update`` when the package lists do not know it yet);
3. otherwise the tests that need PostgreSQL are skipped, saying why.

PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres``
system user (created by the package; created here when the binaries came without it)
and every server command runs as that user. The cluster trusts connections on its
socket (the fixture's own administration) and asks a password on TCP. The tests' stores
connect as an ordinary role that owns one database, through a
``postgresql://gate:PASSWORD@127.0.0.1:PORT/gate_tests`` URL as a gate server would;
each test gets an empty schema of its own in it (the URL sets its ``search_path``:
creating a schema takes milliseconds, a database a large part of a second), dropped
afterwards with every session still connected as that role.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

import contextlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DEBIAN_BINARIES = "/usr/lib/postgresql"
APT_PACKAGE = "postgresql"
SERVICE_USER = "postgres"
ADMIN = "gate_admin"  # the cluster's superuser, over the socket only
ROLE = "gate"  # what the tests' stores connect as: owns its database, nothing more
DATABASE = "gate_tests"


def _version(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)


def find_binaries() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None."""
    debian = sorted(Path(DEBIAN_BINARIES).glob("*/bin"), key=_version, reverse=True)
    for directory in debian:
        if all((directory / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return directory
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        directory = Path(initdb).resolve().parent
        if Path(pg_ctl).resolve().parent == directory and (directory / "postgres").is_file():
            return directory
    return None


def install_command(*, simulate: bool = False) -> list[str]:
    command = ["apt-get", "install", "--yes", "--no-install-recommends", "--quiet"]
    if simulate:
        command.append("--simulate")
    return [*command, APT_PACKAGE]


def install(*, simulate: bool = False) -> str:
    """Install Debian's PostgreSQL server; its output. RuntimeError when that fails."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log: list[str] = []

    def run(command: list[str]) -> bool:
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=900)
        log.append(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}")
        return done.returncode == 0

    # a fresh machine's package lists may be empty or stale: update them once, then retry
    if not run(install_command(simulate=simulate)) and not (
        run(["apt-get", "update", "--quiet"]) and run(install_command(simulate=simulate))
    ):
        raise RuntimeError("installing PostgreSQL failed:\n" + "\n".join(log)[-4000:])
    return "\n".join(log)


def binaries_or_skip() -> Path:
    """The server binaries, installed first when that is possible (root on Debian)."""
    found = find_binaries()
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql or on the PATH, and "
            "they can only be installed here as root with apt-get; install Debian's 'postgresql' package"
        )
    install()  # a failure fails the tests: where the server can be installed, it must be
    found = find_binaries()
    if found is None:
        raise RuntimeError(f"the '{APT_PACKAGE}' package is installed, but no initdb or pg_ctl was found")
    return found


def _service_user() -> pwd.struct_passwd | None:
    """Who runs the server: nobody else when not root; as root the ``postgres`` user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVICE_USER)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """A running throw-away cluster."""

    binaries: Path
    root: Path
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    _user: pwd.struct_passwd | None = None
    _schemas: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, *command: str) -> subprocess.CompletedProcess[str]:
        user = self._user
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.root,
            timeout=120,
            **({"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user is not None else {}),
        )
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-3000:] if log.is_file() else ""
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}\n{tail}")
        return done

    def start(self) -> None:
        self._user = _service_user()
        if self._user is not None:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        secret = self.root / "pwfile"
        secret.write_text(self.password + "\n")
        if self._user is not None:
            os.chown(secret, self._user.pw_uid, self._user.pw_gid)
        self._run(
            str(self.binaries / "initdb"),
            "--pgdata",
            str(self.data),
            "--username",
            ADMIN,
            "--pwfile",
            str(secret),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        secret.unlink()
        for attempt in range(3):  # another process may take the free port first
            self.port = _free_port()
            options = " ".join(
                [
                    f"-p {self.port}",
                    f"-k {self.root}",
                    "-c listen_addresses=127.0.0.1",
                    # a throw-away cluster: durability is not what these tests are about
                    "-c fsync=off",
                    "-c full_page_writes=off",
                    "-c synchronous_commit=off",
                    "-c max_connections=100",
                ]
            )
            try:
                self._run(
                    str(self.binaries / "pg_ctl"),
                    "--pgdata",
                    str(self.data),
                    "--log",
                    str(self.root / "server.log"),
                    "--wait",
                    "--timeout=60",
                    "--options",
                    options,
                    "start",
                )
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        with self.admin() as conn:
            conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}'")
            conn.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run(str(self.binaries / "pg_ctl"), "--pgdata", str(self.data), "--mode=immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def admin(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """A superuser connection over the socket."""
        import psycopg  # imported here: the rest of the suite runs where the driver is absent

        return psycopg.connect(host=str(self.root), port=self.port, user=ADMIN, dbname=dbname, autocommit=True)

    def url(self, schema: str, *, password: str | None = None) -> str:
        """The URL of ``schema`` in the tests' database (``options`` sets the search path)."""
        return (
            f"postgresql://{ROLE}:{password or self.password}@127.0.0.1:{self.port}/{DATABASE}"
            f"?options=-csearch_path%3D{schema}"
        )

    def create_schema(self) -> str:
        self._schemas += 1
        name = f"test_{self._schemas}"
        with self.admin(DATABASE) as conn:
            conn.execute(f"CREATE SCHEMA {name} AUTHORIZATION {ROLE}")
        return name

    def drop_schema(self, name: str) -> None:
        """Drop ``name`` after ending every session of the tests' role, and with them
        every advisory lock a store left behind."""
        with self.admin(DATABASE) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
                (ROLE,),
            )
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    binaries = binaries_or_skip()
    # not under pytest's temporary directory, which only root may enter; a short path,
    # for the socket's name
    root = Path(tempfile.mkdtemp(prefix="gate-pg-"))
    server = PostgresServer(binaries, root)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the whole test session."""
    with running_server() as server:
        yield server


@dataclass(frozen=True)
class PostgresDatabase:
    """An empty place for one test's audit log: a schema of its own."""

    server: PostgresServer
    name: str  # the schema

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        import psycopg

        """A plain connection as the store's role, bypassing gate."""
        return psycopg.connect(self.url, autocommit=True)


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[PostgresDatabase]:
    """An empty schema of its own for one test, dropped afterwards."""
    name = postgres_server.create_schema()
    yield PostgresDatabase(postgres_server, name)
    postgres_server.drop_schema(name)
