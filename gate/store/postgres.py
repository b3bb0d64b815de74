"""The audit log on PostgreSQL (``store: postgresql://USER:PASSWORD@HOST:PORT/DB``), which
several gate servers — replicas — share.

The same tables, checks and semantics as the SQLite store: append-only (triggers refuse
UPDATE, DELETE and TRUNCATE, whoever issues them), a PASS is refused by the schema unless
its result is complete, one transaction per write. Differences that matter:

* the schema version is the highest row of ``gate_schema_migrations`` (version,
  applied_at, description). Migrations run in one transaction under a transaction-level
  advisory lock, so replicas that start together migrate once; a newer version is
  refused before anything changes;
* the tie-break between evaluations accepted within the same second is ``seq``, an
  identity column (SQLite's ``rowid``);
* a replica's claim is a session-level advisory lock on its id, held by the store's
  connection (see :mod:`gate.store.base`). PostgreSQL releases it when that session
  ends: when the server process dies, or when its connection is lost. If the connection
  drops, the next call reconnects and claims the id again; a sibling that started in
  between may have closed this replica's running evaluations as interrupted, and their
  results are then refused (the client gets ERROR): the audit log fails closed.

The role in the URL needs to create tables, functions and triggers in its schema the
first time (and at each migration): make it the owner of the database or of a schema
(PostgreSQL 15 and later no longer let every role create in ``public``). The claims are
session-level advisory locks, so a connection pooler between gate and PostgreSQL must
keep one server session per client connection (PgBouncer: ``pool_mode = session``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.rows import dict_row

from gate.errors import InternalError
from gate.store.base import (
    CLAIM_TIMEOUT_S,
    RESULT_DECISION_COLUMN,
    RESULT_DOCUMENT_COLUMNS,
    RESULT_RUNTIME_COLUMNS,
    SCHEMA_VERSION,
    Row,
    Session,
    SQLAuditStore,
    check_replica_id,
    claim_key,
    iter_versions,
    redact_url,
)
from gate.store.lifecycle import LIFECYCLE_TABLE_NAMES, lifecycle_tables

log = logging.getLogger(__name__)

#: Seconds to wait for the server when connecting.
CONNECT_TIMEOUT_S = 10

# One key for "migrating the schema", distinct from every replica's key.
_MIGRATION_KEY = claim_key("\x00schema-migration")

_APPEND_ONLY = """
CREATE FUNCTION gate_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % rows cannot be %', TG_TABLE_NAME,
        CASE TG_OP WHEN 'UPDATE' THEN 'updated' WHEN 'DELETE' THEN 'deleted' ELSE 'truncated' END;
END
$$
"""


def _append_only_triggers(tables: tuple[str, ...]) -> tuple[str, ...]:
    """The triggers that make ``tables`` append-only; TRUNCATE fires no row trigger, so
    it has its own."""
    return tuple(
        statement
        for table in tables
        for statement in (
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION gate_audit_append_only()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION gate_audit_append_only()",
        )
    )


#: The statements that take a schema from version N - 1 to N. Timestamps are ISO 8601
#: text, as on SQLite, compared byte by byte (COLLATE "C") so that they sort by time.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE evaluations (
            evaluation_id      TEXT PRIMARY KEY,
            created_at         TEXT COLLATE "C" NOT NULL,
            model_sha256       TEXT NOT NULL,
            model_name         TEXT,
            dataset            TEXT NOT NULL,
            policy             TEXT NOT NULL,
            labels_json        TEXT NOT NULL,
            requested_provider TEXT NOT NULL,
            seq                BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
        )
        """,
        f"""
        CREATE TABLE results (
            evaluation_id  TEXT PRIMARY KEY REFERENCES evaluations (evaluation_id),
            finished_at    TEXT COLLATE "C" NOT NULL,
            {RESULT_DECISION_COLUMN},
            interrupted    SMALLINT NOT NULL CHECK (interrupted IN (0, 1)),
            {RESULT_RUNTIME_COLUMNS},
            duration_s     DOUBLE PRECISION,
            {RESULT_DOCUMENT_COLUMNS},
            -- Fail closed even against a writer that bypasses the store: a PASS has metrics,
            -- no error, and was not cut short; an interrupted evaluation is an ERROR.
            CONSTRAINT results_pass_is_complete
                CHECK (decision <> 'PASS' OR (metrics_json IS NOT NULL AND error_json IS NULL AND interrupted = 0)),
            CONSTRAINT results_interrupted_is_error CHECK (interrupted = 0 OR decision = 'ERROR')
        )
        """,
        "CREATE INDEX results_decision ON results (decision)",
        "CREATE INDEX evaluations_model_sha256 ON evaluations (model_sha256)",
        "CREATE INDEX evaluations_dataset ON evaluations (dataset)",
        "CREATE INDEX evaluations_policy ON evaluations (policy)",
        "CREATE INDEX evaluations_created_at ON evaluations (created_at)",
        # Append-only, enforced by the database itself so that no other client can edit
        # history; TRUNCATE fires no row trigger, so it has its own.
        _APPEND_ONLY,
        *_append_only_triggers(("evaluations", "results")),
    ),
    # A nullable column without a default rewrites no row: the append-only triggers are
    # not involved, and evaluations recorded before have no replica id (NULL).
    2: (
        "ALTER TABLE evaluations ADD COLUMN replica_id TEXT",
        "CREATE INDEX evaluations_replica_id ON evaluations (replica_id)",
    ),
    # waivers, their revocations and the attestations: append-only like the rest
    3: (*lifecycle_tables('TEXT COLLATE "C"'), *_append_only_triggers(LIFECYCLE_TABLE_NAMES)),
}
assert sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))

_DESCRIPTIONS = {
    1: "evaluations and results, append-only",
    2: "the replica id of each evaluation",
    3: "waivers, their revocations and signed attestations, append-only",
}

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS gate_schema_migrations (
    version     INTEGER PRIMARY KEY,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    description TEXT NOT NULL
)
"""


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The schema version of the database ``conn`` is connected to (0: none yet)."""
    found = conn.execute("SELECT to_regclass('gate_schema_migrations') IS NOT NULL AS present").fetchone()
    if not found or not _first(found):
        return 0
    row = conn.execute("SELECT coalesce(max(version), 0) AS v FROM gate_schema_migrations").fetchone()
    return int(_first(row)) if row else 0


def _first(row: Any) -> Any:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def apply_migrations(conn: psycopg.Connection[Any], current: int, target: int = SCHEMA_VERSION) -> None:
    """Run the migrations from ``current`` to ``target`` (inside the caller's transaction)."""
    conn.execute(_MIGRATIONS_TABLE)
    for version in iter_versions(current):
        if version > target:
            break
        for statement in MIGRATIONS[version]:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO gate_schema_migrations (version, description) VALUES (%s, %s)",
            (version, _DESCRIPTIONS[version]),
        )


class _Session:
    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._conn.execute(sql.replace("?", "%s"), tuple(params)).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._conn.execute(sql.replace("?", "%s"), tuple(params))


class PostgresAuditStore(SQLAuditStore):
    """The append-only audit log in a PostgreSQL database, safe to share between threads
    and between servers. One connection, serialised between this server's threads."""

    _TIEBREAK = "seq"

    def __init__(
        self,
        url: str,
        *,
        replica_id: str | None = None,
        claim_timeout_s: float = CLAIM_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.location = redact_url(url)
        self.replica_id = replica_id
        self._claim_timeout_s = claim_timeout_s
        self._connect_timeout_s = connect_timeout_s
        try:
            password = urlsplit(url).password or ""
        except ValueError:
            password = ""
        # as written in the URL and as decoded: either may turn up in a driver's message
        self._secrets = sorted({password, unquote(password)} - {""}, key=len, reverse=True)
        if replica_id is not None:
            try:
                check_replica_id(replica_id)
            except ValueError as e:
                raise InternalError(f"audit log {self.location}: {e}") from e
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Row] | None = None
        self._closed = False
        with self._lock:
            self._conn = self._connect("open the database")

    # -- connection ----------------------------------------------------------------------------

    def _scrub(self, error: BaseException) -> str:
        """An error's message, without the password (a driver may quote the URL)."""
        text = str(error).strip() or type(error).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _connect(self, doing: str) -> psycopg.Connection[Row]:
        """A new connection, with the schema at this gate's version and the replica's claim."""
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=max(1, round(self._connect_timeout_s)),
                application_name=f"gate {self.replica_id or ''}".strip(),
            )
        except psycopg.Error as e:
            # not chained: a malformed URL may be quoted, password and all, in the driver's error
            raise InternalError(f"audit log {self.location}: cannot {doing}: {self._scrub(e)}") from None
        try:
            self._migrate(conn)
            if self.replica_id is not None:
                self._take_claim(conn, self.replica_id)
        except psycopg.Error as e:
            conn.close()
            raise InternalError(f"audit log {self.location}: cannot {doing}: {self._scrub(e)}") from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: psycopg.Connection[Row]) -> None:
        with conn.transaction():
            # Refuse a newer schema before changing anything.
            self._check_version(schema_version(conn))
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_KEY,))
            # Checked again under the lock: another replica may have migrated it meanwhile.
            version = self._check_version(schema_version(conn))
            if version < SCHEMA_VERSION:
                apply_migrations(conn, version)
                if version:
                    log.info(
                        "audit log %s: schema migrated from version %d to %d", self.location, version, SCHEMA_VERSION
                    )

    def _check_version(self, version: int) -> int:
        if version > SCHEMA_VERSION:
            raise InternalError(
                f"audit log {self.location}: schema version {version} is newer than this gate supports "
                f"(version {SCHEMA_VERSION}); upgrade gate to read it"
            )
        return version

    def _take_claim(self, conn: psycopg.Connection[Row], replica_id: str) -> None:
        deadline = time.monotonic() + self._claim_timeout_s
        while True:
            row = conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (claim_key(replica_id),)).fetchone()
            if row is not None and row["got"]:
                return
            if time.monotonic() >= deadline:
                raise InternalError(
                    f"audit log {self.location}: replica id {replica_id!r} is in use by another running gate server"
                    " (its claim is held); give each server sharing the audit log its own replica_id"
                )
            time.sleep(0.05)

    def _hold_claim(self, session: Session, replica_id: str) -> bool:
        (row,) = session.rows("SELECT pg_try_advisory_lock(?) AS got", (claim_key(replica_id),))
        return bool(row["got"])

    def _release_claims(self, replica_ids: Sequence[str]) -> None:
        with self._lock:
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                return  # the session, and with it every lock it held, is gone
            try:
                for replica_id in replica_ids:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (claim_key(replica_id),))
            except psycopg.Error as e:
                log.warning("audit log %s: cannot release replica claims: %s", self.location, self._scrub(e))

    @contextlib.contextmanager
    def _session(self, doing: str, *, write: bool = False) -> Iterator[Session]:
        with self._lock:
            if self._closed:
                raise InternalError(f"audit log {self.location}: cannot {doing}: the store is closed")
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                # the connection was lost: a new one, which claims the replica id again
                self._conn = None
                if conn is not None:
                    conn.close()
                self._conn = conn = self._connect(doing)
            try:
                if write:
                    with conn.transaction():
                        yield _Session(conn)
                else:
                    yield _Session(conn)
            except psycopg.Error as e:
                raise InternalError(f"audit log {self.location}: cannot {doing}: {self._scrub(e)}") from e

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (which gives back the replica claim); later calls raise
        InternalError. Closing twice is harmless."""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                if not conn.closed and not conn.broken:
                    # give the claim back now: the server ends a closed session's locks
                    # only once its backend has exited, a moment after the close
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("SELECT pg_advisory_unlock_all()")
                try:
                    conn.close()
                except psycopg.Error as e:
                    raise InternalError(
                        f"audit log {self.location}: cannot close the database: {self._scrub(e)}"
                    ) from e
