"""The audit log: one record for every evaluation the gate server accepts, and its verdict.

Two back ends behind one interface (:class:`AuditLog`), chosen by the ``store`` setting:

* SQLite (:class:`AuditStore`, the default): one file, ``<data_dir>/audit.sqlite3``, or
  the path given as ``store: /path/audit.sqlite3`` or ``store: sqlite:///path``;
* PostgreSQL (:class:`PostgresAuditStore`): ``store: postgresql://USER:PASSWORD@HOST:PORT/DB``,
  shared by several gate servers (replicas). Needs the ``gate[postgres]`` extra.

Both are append-only and fail closed in the same way, version their schema and migrate
an older one when they open it, and record which replica accepted each evaluation (see
:mod:`gate.store.base` for how replicas close each other's interrupted evaluations, and
when they must not).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from gate.errors import InternalError
from gate.store.base import (
    CLAIM_TIMEOUT_S,
    MAX_LIST_LIMIT,
    SCHEMA_VERSION,
    AuditLog,
    EvaluationRecord,
    check_replica_id,
    parse_target,
    redact_url,
)
from gate.store.sqlite import SQLiteAuditStore

if TYPE_CHECKING:
    from gate.store.postgres import PostgresAuditStore

#: The SQLite store, by its historical name: ``AuditStore(path)``.
AuditStore = SQLiteAuditStore

__all__ = [
    "CLAIM_TIMEOUT_S",
    "MAX_LIST_LIMIT",
    "SCHEMA_VERSION",
    "AuditLog",
    "AuditStore",
    "EvaluationRecord",
    "PostgresAuditStore",
    "SQLiteAuditStore",
    "check_replica_id",
    "open_store",
    "parse_target",
    "redact_url",
    "sqlite_path",
]


def sqlite_path(target: str | os.PathLike[str]) -> Path | None:
    """The file of a SQLite store target; None for a PostgreSQL one. ValueError when the
    target is not a store at all."""
    kind, where = parse_target(target)
    return Path(where) if kind == "sqlite" else None


def open_store(
    target: str | os.PathLike[str],
    *,
    replica_id: str | None = None,
    claim_timeout_s: float = CLAIM_TIMEOUT_S,
) -> AuditLog:
    """Open the audit log at ``target``: a file path, ``sqlite:///PATH`` or
    ``postgresql://USER:PASSWORD@HOST:PORT/DB``.

    A server passes its ``replica_id``: the store claims it while open (another server
    with the same id is refused once ``claim_timeout_s`` has passed) and records it with
    every evaluation accepted. Readers pass none.
    """
    try:
        kind, where = parse_target(target)
    except ValueError as e:
        raise InternalError(f"audit log: {e}") from None
    if kind == "sqlite":
        return SQLiteAuditStore(where, replica_id=replica_id, claim_timeout_s=claim_timeout_s)
    try:
        from gate.store.postgres import PostgresAuditStore
    except ImportError as e:
        raise InternalError(
            f"audit log {redact_url(where)}: PostgreSQL needs the psycopg package: pip install 'gate[postgres]' ({e})"
        ) from None
    return PostgresAuditStore(where, replica_id=replica_id, claim_timeout_s=claim_timeout_s)


def __getattr__(name: str) -> object:
    # PostgresAuditStore without importing psycopg until someone asks for it
    if name == "PostgresAuditStore":
        from gate.store.postgres import PostgresAuditStore

        return PostgresAuditStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
