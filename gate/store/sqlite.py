"""The audit log in one SQLite file (the default: ``<data_dir>/audit.sqlite3``).

WAL mode, synchronous writes. It is append-only — rows are only ever inserted, and
triggers in the schema refuse any UPDATE or DELETE, whoever issues it — so a recorded
verdict can be trusted later. Two tables:

* ``evaluations``: one row when an evaluation is accepted (which model, dataset, policy,
  labels, requested provider, and the replica that accepted it);
* ``results``: one row when it ends, with the decision and the whole verdict JSON
  document, written in a single transaction.

The schema version is ``PRAGMA user_version``; an older file is migrated when it is
opened, a newer one is refused. Replica claims (see :mod:`gate.store.base`) are ``flock``
locks on files in ``<database>.replicas/``, released by the kernel when their process
ends. SQLite suits one server, or several processes on one host; replicas on several
hosts share a PostgreSQL store instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from gate.errors import InternalError
from gate.store import base
from gate.store.base import CLAIM_TIMEOUT_S, SCHEMA_VERSION, SQLAuditStore
from gate.store.lifecycle import LIFECYCLE_TABLE_NAMES, lifecycle_tables

log = logging.getLogger(__name__)

# How long a writer waits for another connection's lock before giving up (milliseconds).
# Evaluations are written a few rows at a time, so waits are short; a long timeout only
# matters when another process (a backup, an inspection) holds the file.
BUSY_TIMEOUT_MS = 10_000

_V1_TABLES = (
    """
    CREATE TABLE evaluations (
        evaluation_id      TEXT PRIMARY KEY,
        created_at         TEXT NOT NULL,
        model_sha256       TEXT NOT NULL,
        model_name         TEXT,
        dataset            TEXT NOT NULL,
        policy             TEXT NOT NULL,
        labels_json        TEXT NOT NULL,
        requested_provider TEXT NOT NULL
    )
    """,
    f"""
    CREATE TABLE results (
        evaluation_id  TEXT PRIMARY KEY REFERENCES evaluations (evaluation_id),
        finished_at    TEXT NOT NULL,
        {base.RESULT_DECISION_COLUMN},
        interrupted    INTEGER NOT NULL CHECK (interrupted IN (0, 1)),
        {base.RESULT_RUNTIME_COLUMNS},
        duration_s     REAL,
        {base.RESULT_DOCUMENT_COLUMNS},
        -- Fail closed even against a writer that bypasses the store: a PASS has metrics,
        -- no error, and was not cut short; an interrupted evaluation is an ERROR.
        CHECK (decision <> 'PASS' OR (metrics_json IS NOT NULL AND error_json IS NULL AND interrupted = 0)),
        CHECK (interrupted = 0 OR decision = 'ERROR')
    )
    """,
    "CREATE INDEX results_decision ON results (decision)",
    "CREATE INDEX evaluations_model_sha256 ON evaluations (model_sha256)",
    "CREATE INDEX evaluations_dataset ON evaluations (dataset)",
    "CREATE INDEX evaluations_policy ON evaluations (policy)",
    "CREATE INDEX evaluations_created_at ON evaluations (created_at)",
)


def _append_only(tables: tuple[str, ...]) -> tuple[str, ...]:
    """Triggers refusing UPDATE and DELETE on ``tables``: append-only, enforced by the
    database itself so that no other client can edit history."""
    return tuple(
        f"""
        CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table}
        BEGIN
            SELECT RAISE(ABORT, 'the audit log is append-only: {table} rows cannot be {done}');
        END
        """
        for table in tables
        for op, done in (("UPDATE", "updated"), ("DELETE", "deleted"))
    )


_V1_TRIGGERS = _append_only(("evaluations", "results"))

#: The statements that take a schema from version N - 1 to N.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (*_V1_TABLES, *_V1_TRIGGERS),
    # Adding a column rewrites no row, so the append-only triggers are not involved;
    # evaluations recorded before have no replica id (NULL).
    2: (
        "ALTER TABLE evaluations ADD COLUMN replica_id TEXT",
        "CREATE INDEX evaluations_replica_id ON evaluations (replica_id)",
    ),
    3: (*lifecycle_tables("TEXT"), *_append_only(LIFECYCLE_TABLE_NAMES)),
}
assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))


def apply_migrations(conn: sqlite3.Connection, current: int, target: int = SCHEMA_VERSION) -> None:
    """Run the migrations from ``current`` to ``target`` (inside the caller's transaction)."""
    for version in base.iter_versions(current):
        if version > target:
            break
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")


class _Session:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[base.Row]:
        return [dict(r) for r in self._conn.execute(sql, tuple(params)).fetchall()]

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._conn.execute(sql, tuple(params))


@contextlib.contextmanager
def _write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A transaction committed when the block ends, rolled back when it raises. IMMEDIATE
    takes the write lock up front, so checks made inside it still hold when its inserts run."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _lock_path(directory: pathlib.Path, replica_id: str) -> pathlib.Path:
    return directory / f"{hashlib.sha256(replica_id.encode()).hexdigest()[:32]}.lock"


def _try_lock(path: pathlib.Path, replica_id: str) -> int | None:
    """An exclusive flock on ``path`` (created if need be), or None if another holds it.

    A holder may unlink the file while it holds it (to clean up), so a lock taken on a
    file that is no longer at ``path`` is dropped and taken again on the one that is.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            mine, there = os.fstat(fd), os.stat(path)
            current = (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)
        except FileNotFoundError:
            current = False
        if current:
            os.ftruncate(fd, 0)
            os.write(fd, f"{replica_id}\n".encode())  # for whoever looks: the holder's id
            return fd
        os.close(fd)


def _unlock(path: pathlib.Path, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # still holding it: a concurrent locker notices (see _try_lock)
    os.close(fd)


class SQLiteAuditStore(SQLAuditStore):
    """The append-only audit log in one SQLite file, safe to share between threads.

    With ``replica_id`` (a server's store) the store claims that id for as long as it is
    open, and records it with every evaluation it accepts; without (a reader, such as
    ``gate history``) it claims nothing.
    """

    _TIEBREAK = "rowid"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        replica_id: str | None = None,
        claim_timeout_s: float = CLAIM_TIMEOUT_S,
    ) -> None:
        self.path = pathlib.Path(path)
        self.location = str(self.path)
        self.replica_id = replica_id
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._claims_dir = self.path.parent / f"{self.path.name}.replicas"
        self._claim: int | None = None
        self._held: dict[str, int] = {}
        if replica_id is not None:
            try:
                base.check_replica_id(replica_id)
            except ValueError as e:
                raise InternalError(f"audit log {self.path}: {e}") from e
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InternalError(f"audit log {self.path}: cannot create its directory: {e}") from e
        try:
            # One connection for all threads, serialised by self._lock; isolation_level=None
            # leaves transactions to explicit BEGIN IMMEDIATE / COMMIT.
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as e:
            raise InternalError(f"audit log {self.path}: cannot open the database: {e}") from e
        try:
            self._setup(conn)
            if replica_id is not None:
                self._claim = self._take_claim(replica_id, claim_timeout_s)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _setup(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # Refuse a newer schema before changing anything in the file.
            self._check_version(conn)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise InternalError(
                    f"audit log {self.path}: cannot switch to WAL mode (journal mode is {mode}); "
                    "put the database on a local file system"
                )
            # FULL: a committed verdict survives a power loss, not only a process crash.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            with _write_transaction(conn):
                # Checked again under the write lock: another process may have migrated it meanwhile.
                version = self._check_version(conn)
                if version < SCHEMA_VERSION:
                    apply_migrations(conn, version)
                    if version:
                        log.info(
                            "audit log %s: schema migrated from version %d to %d", self.path, version, SCHEMA_VERSION
                        )
        except sqlite3.Error as e:
            raise InternalError(f"audit log {self.path}: cannot open the database: {e}") from e

    def _check_version(self, conn: sqlite3.Connection) -> int:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise InternalError(
                f"audit log {self.path}: schema version {version} is newer than this gate supports "
                f"(version {SCHEMA_VERSION}); upgrade gate to read it"
            )
        return version

    # -- replica claims ------------------------------------------------------------------------

    def _take_claim(self, replica_id: str, timeout_s: float) -> int:
        path = _lock_path(self._claims_dir, replica_id)
        deadline = time.monotonic() + timeout_s
        try:
            self._claims_dir.mkdir(exist_ok=True)
            while (fd := _try_lock(path, replica_id)) is None:
                if time.monotonic() >= deadline:
                    raise InternalError(
                        f"audit log {self.path}: replica id {replica_id!r} is in use by another running gate server"
                        " (its claim is held); give each server sharing the audit log its own replica_id"
                    )
                time.sleep(0.05)
        except OSError as e:
            raise InternalError(f"audit log {self.path}: cannot claim replica id {replica_id!r}: {e}") from e
        return fd

    def _hold_claim(self, session: base.Session, replica_id: str) -> bool:
        path = _lock_path(self._claims_dir, replica_id)
        try:
            self._claims_dir.mkdir(exist_ok=True)
            fd = _try_lock(path, replica_id)
        except OSError as e:
            raise InternalError(f"audit log {self.path}: cannot check replica {replica_id!r}: {e}") from e
        if fd is None:
            return False
        self._held[replica_id] = fd
        return True

    def _release_claims(self, replica_ids: Sequence[str]) -> None:
        for replica_id in replica_ids:
            fd = self._held.pop(replica_id, None)
            if fd is not None:
                # the replica is gone and its evaluations are closed: its lock file goes too
                _unlock(_lock_path(self._claims_dir, replica_id), fd)

    # -- plumbing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self, doing: str, *, write: bool = False) -> Iterator[base.Session]:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise InternalError(f"audit log {self.path}: cannot {doing}: the store is closed")
            try:
                with _write_transaction(conn) if write else contextlib.nullcontext():
                    yield _Session(conn)
            except sqlite3.Error as e:
                raise self._fail(doing, str(e)) from e

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database and give back the replica claim (closing twice is harmless);
        later calls raise InternalError."""
        with self._lock:
            if self._conn is None:
                return
            conn, self._conn = self._conn, None
            if self._claim is not None and self.replica_id is not None:
                fd, self._claim = self._claim, None
                _unlock(_lock_path(self._claims_dir, self.replica_id), fd)
            try:
                conn.close()
            except sqlite3.Error as e:
                raise InternalError(f"audit log {self.path}: cannot close the database: {e}") from e

    def __repr__(self) -> str:
        return f"AuditStore({self.location!r})"
