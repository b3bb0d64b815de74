"""What the audit log keeps beside the evaluations: waivers and signed attestations.

Schema version 3 adds three append-only tables, alike in both SQL dialects:

* ``waivers``: one row per waiver granted (who, when, why, for which model, dataset and
  rule, and until when);
* ``waiver_revocations``: one row when a waiver is revoked (who, when, why). A waiver is
  never edited: its revocation is a new fact beside it;
* ``attestations``: the signed ``gate.attestation/v1`` document the server returned with
  an evaluation's verdict, so that ``GetVerdict`` returns it later.

Timestamps are ISO 8601 UTC text with seconds (``2026-12-06T10:00:00+00:00``), which sort
by time as text.
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from gate.errors import InternalError, NotFoundError, RequestError
from gate.waivers import Waiver

if TYPE_CHECKING:
    from gate.store.base import Session

#: The tables of schema version 3; ``{ts}`` is the dialect's type for a timestamp column.
LIFECYCLE_TABLES = (
    """
    CREATE TABLE waivers (
        waiver_id     TEXT PRIMARY KEY,
        granted_at    {ts} NOT NULL,
        granted_by    TEXT NOT NULL,
        model_sha256  TEXT NOT NULL,
        dataset       TEXT NOT NULL,
        rule_id       TEXT NOT NULL,
        reason        TEXT NOT NULL CHECK (reason <> ''),
        expires_at    {ts} NOT NULL,
        CHECK (expires_at > granted_at)
    )
    """,
    """
    CREATE TABLE waiver_revocations (
        waiver_id   TEXT PRIMARY KEY REFERENCES waivers (waiver_id),
        revoked_at  {ts} NOT NULL,
        revoked_by  TEXT NOT NULL,
        reason      TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE attestations (
        evaluation_id     TEXT PRIMARY KEY REFERENCES evaluations (evaluation_id),
        attestation_json  TEXT NOT NULL
    )
    """,
    "CREATE INDEX waivers_scope ON waivers (model_sha256, dataset)",
)

#: The append-only tables this module adds (each back end puts its triggers on them).
LIFECYCLE_TABLE_NAMES = ("waivers", "waiver_revocations", "attestations")

_SELECT_WAIVERS = """
SELECT w.waiver_id, w.granted_at, w.granted_by, w.model_sha256, w.dataset, w.rule_id, w.reason, w.expires_at,
       v.revoked_at, v.revoked_by, v.reason AS revoke_reason
FROM waivers AS w LEFT JOIN waiver_revocations AS v ON v.waiver_id = w.waiver_id
"""


def lifecycle_tables(timestamp_type: str) -> tuple[str, ...]:
    """The statements creating the tables, with the dialect's timestamp column type."""
    return tuple(statement.replace("{ts}", timestamp_type) for statement in LIFECYCLE_TABLES)


def _waiver(row: dict[str, Any]) -> Waiver:
    return Waiver(
        id=row["waiver_id"],
        model_sha256=row["model_sha256"],
        dataset=row["dataset"],
        rule_id=row["rule_id"],
        reason=row["reason"],
        expires_at=row["expires_at"],
        granted_by=row["granted_by"],
        granted_at=row["granted_at"],
        revoked_at=row["revoked_at"],
        revoked_by=row["revoked_by"],
        revoke_reason=row["revoke_reason"],
    )


class LifecycleRecords:
    """Waivers and attestations in the audit log; mixed into the SQL audit store."""

    @abstractmethod
    def _session(self, doing: str, *, write: bool = False) -> AbstractContextManager[Session]: ...

    @abstractmethod
    def _fail(self, doing: str, why: str) -> InternalError: ...

    # -- waivers -------------------------------------------------------------------------------

    def record_waiver(self, waiver: Waiver) -> None:
        """Record a granted waiver (refused, nothing written, when its id exists)."""
        doing = f"record waiver {waiver.id!r}"
        with self._session(doing, write=True) as s:
            if s.rows("SELECT 1 AS found FROM waivers WHERE waiver_id = ?", (waiver.id,)):
                raise self._fail(doing, "it is already recorded")
            s.run(
                "INSERT INTO waivers (waiver_id, granted_at, granted_by, model_sha256, dataset, rule_id, reason,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    waiver.id,
                    waiver.granted_at,
                    waiver.granted_by,
                    waiver.model_sha256,
                    waiver.dataset,
                    waiver.rule_id,
                    waiver.reason,
                    waiver.expires_at,
                ),
            )

    def record_revocation(self, waiver_id: str, *, revoked_by: str, reason: str, revoked_at: str) -> Waiver:
        """Record that a waiver is revoked; return it as it now stands. NotFoundError for
        an unknown id, RequestError for one already revoked."""
        doing = f"revoke waiver {waiver_id!r}"
        with self._session(doing, write=True) as s:
            found = s.rows(_SELECT_WAIVERS + " WHERE w.waiver_id = ?", (waiver_id,))
            if not found:
                raise NotFoundError(f"no waiver with id {waiver_id!r}")
            if found[0]["revoked_at"] is not None:
                raise RequestError(f"waiver {waiver_id} was already revoked at {found[0]['revoked_at']}")
            s.run(
                "INSERT INTO waiver_revocations (waiver_id, revoked_at, revoked_by, reason) VALUES (?, ?, ?, ?)",
                (waiver_id, revoked_at, revoked_by, reason),
            )
            return _waiver(s.rows(_SELECT_WAIVERS + " WHERE w.waiver_id = ?", (waiver_id,))[0])

    def waivers(self, *, model_sha256: str | None = None, dataset: str | None = None) -> list[Waiver]:
        """Every waiver recorded (revoked and expired ones included) matching the filters,
        newest first."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("w.model_sha256", model_sha256), ("w.dataset", dataset)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = _SELECT_WAIVERS + (" WHERE " + " AND ".join(where) if where else "")
        with self._session("list waivers") as s:
            rows = s.rows(sql + " ORDER BY w.granted_at DESC, w.waiver_id DESC", params)
        return [_waiver(r) for r in rows]

    # -- attestations --------------------------------------------------------------------------

    def record_attestation(self, evaluation_id: str, attestation_json: str) -> None:
        """Keep the signed attestation returned with an evaluation's recorded verdict."""
        doing = f"record the attestation of evaluation {evaluation_id!r}"
        with self._session(doing, write=True) as s:
            if not s.rows("SELECT 1 AS found FROM results WHERE evaluation_id = ?", (evaluation_id,)):
                raise self._fail(doing, "it has no recorded result")
            if s.rows("SELECT 1 AS found FROM attestations WHERE evaluation_id = ?", (evaluation_id,)):
                raise self._fail(doing, "it already has one")
            s.run(
                "INSERT INTO attestations (evaluation_id, attestation_json) VALUES (?, ?)",
                (evaluation_id, attestation_json),
            )

    def attestation(self, evaluation_id: str) -> str | None:
        """The signed attestation kept for an evaluation, or None."""
        with self._session(f"read the attestation of evaluation {evaluation_id!r}") as s:
            found = s.rows("SELECT attestation_json FROM attestations WHERE evaluation_id = ?", (evaluation_id,))
        return str(found[0]["attestation_json"]) if found else None
