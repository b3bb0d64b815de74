"""The audit log: one record for every evaluation the gate server accepts, and its verdict.

The log is a SQLite database in WAL mode. It is append-only — rows are only ever
inserted, and triggers in the schema refuse any UPDATE or DELETE, whoever issues it —
so a recorded verdict can be trusted later. Two tables:

* ``evaluations``: one row when an evaluation is accepted (which model, dataset, policy,
  labels and requested provider);
* ``results``: one row when it ends, with the decision and the whole verdict JSON
  document, written in a single transaction.

An evaluation with no result is *running*; one the server never finished (it stopped or
crashed) is closed at the next start-up by :meth:`AuditStore.mark_interrupted` with an
ERROR result. Fail closed: a PASS is only recorded when the verdict says the evaluation
was complete and every blocking rule passed; the schema checks this as well.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import pathlib
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from gate.errors import InternalError
from gate.verdict import Decision, Verdict

#: Version of the schema below, kept in ``PRAGMA user_version``.
SCHEMA_VERSION = 1

#: Largest ``limit`` :meth:`AuditStore.list` accepts.
MAX_LIST_LIMIT = 10_000

# How long a writer waits for another connection's lock before giving up (milliseconds).
# Evaluations are written a few rows at a time, so waits are short; a long timeout only
# matters when another process (a backup, an inspection) holds the file.
BUSY_TIMEOUT_MS = 10_000

_DECISIONS = tuple(d.value for d in Decision)

_TABLES = (
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
    """
    CREATE TABLE results (
        evaluation_id  TEXT PRIMARY KEY REFERENCES evaluations (evaluation_id),
        finished_at    TEXT NOT NULL,
        decision       TEXT NOT NULL CHECK (decision IN ('PASS', 'FAIL', 'ERROR')),
        interrupted    INTEGER NOT NULL CHECK (interrupted IN (0, 1)),
        dataset_sha256 TEXT,
        policy_sha256  TEXT,
        provider       TEXT,
        onnxruntime    TEXT,
        duration_s     REAL,
        rules_json     TEXT NOT NULL,
        metrics_json   TEXT,
        error_json     TEXT,
        verdict_json   TEXT NOT NULL,
        -- Fail closed even against a writer that bypasses AuditStore: a PASS has metrics,
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

# Append-only, enforced by the database itself so that no other client can edit history.
_TRIGGERS = tuple(
    f"""
    CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table}
    BEGIN
        SELECT RAISE(ABORT, 'the audit log is append-only: {table} rows cannot be {done}');
    END
    """
    for table in ("evaluations", "results")
    for op, done in (("UPDATE", "updated"), ("DELETE", "deleted"))
)

_SELECT = """
SELECT e.evaluation_id, e.created_at, e.model_sha256, e.model_name, e.dataset, e.policy,
       e.labels_json, e.requested_provider, r.finished_at, r.interrupted, r.verdict_json
FROM evaluations AS e LEFT JOIN results AS r ON r.evaluation_id = e.evaluation_id
"""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class EvaluationRecord:
    """One evaluation as the audit log holds it."""

    evaluation_id: str
    state: str  # "running" (no result yet), "done", or "interrupted"
    created_at: str
    finished_at: str | None
    model_sha256: str
    model_name: str | None
    dataset: str
    policy: str
    labels: dict[str, Any]
    requested_provider: str
    verdict: dict[str, Any] | None  # the verdict JSON document once state != "running"

    @property
    def decision(self) -> str | None:
        """``"PASS"``, ``"FAIL"`` or ``"ERROR"``; None while the evaluation is running."""
        if self.verdict is None:
            return None
        decision = self.verdict.get("verdict")
        return decision if isinstance(decision, str) else None


def _record(row: sqlite3.Row) -> EvaluationRecord:
    verdict_json: str | None = row["verdict_json"]
    if verdict_json is None:
        state = "running"
    elif row["interrupted"]:
        state = "interrupted"
    else:
        state = "done"
    return EvaluationRecord(
        evaluation_id=row["evaluation_id"],
        state=state,
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        model_sha256=row["model_sha256"],
        model_name=row["model_name"],
        dataset=row["dataset"],
        policy=row["policy"],
        labels=json.loads(row["labels_json"]),
        requested_provider=row["requested_provider"],
        verdict=None if verdict_json is None else json.loads(verdict_json),
    )


def _incomplete_pass(verdict: Mapping[str, Any]) -> str | None:
    """Why a verdict that says PASS is not a complete pass, or None if it is one.

    Mirrors :func:`gate.verdict.decide`: a PASS needs metrics, no error, at least one
    rule, no rule in error, and every block rule passed. A rule whose severity is missing
    counts as a block rule (the policy default), so an odd document fails closed.
    """
    if verdict.get("error") is not None:
        return "it carries an error"
    if verdict.get("metrics") is None:
        return "its metrics are null"
    rules = verdict.get("rules")
    if not isinstance(rules, list) or not rules:
        return "it has no rule results"
    for rule in rules:
        if not isinstance(rule, Mapping):
            return f"a rule result is not an object: {rule!r}"
        status, severity = rule.get("status"), rule.get("severity", "block")
        if status == "error" or (severity != "warn" and status != "pass"):
            return f"rule {rule.get('id')!r} ({severity}) has status {status!r}"
    return None


def _part(verdict: Mapping[str, Any], section: str, key: str) -> str | None:
    """``verdict[section][key]`` when it is a string; ERROR verdicts often lack it."""
    value = verdict.get(section)
    if isinstance(value, Mapping):
        found = value.get(key)
        if isinstance(found, str):
            return found
    return None


def _dumps(value: Any) -> str:
    # Strict JSON: NaN and Infinity are not JSON, and other programs parse these columns.
    return json.dumps(value, allow_nan=False)


class AuditStore:
    """The append-only audit log in one SQLite file, safe to share between threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = pathlib.Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
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
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Checked again under the write lock: another process may have created it meanwhile.
                if self._check_version(conn) == 0:
                    for statement in (*_TABLES, *_TRIGGERS):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
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

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _connection(self, doing: str) -> Iterator[sqlite3.Connection]:
        """The connection, held by this thread alone; sqlite3 errors become InternalError."""
        with self._lock:
            if self._conn is None:
                raise InternalError(f"audit log {self.path}: cannot {doing}: the store is closed")
            try:
                yield self._conn
            except sqlite3.Error as e:
                raise InternalError(f"audit log {self.path}: cannot {doing}: {e}") from e

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        """A write transaction: everything in it is committed together, or nothing is."""
        with self._connection(doing) as conn:
            # IMMEDIATE takes the write lock up front, so checks made inside the
            # transaction still hold when its inserts run.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # -- writing ----------------------------------------------------------------------------

    def record_accepted(
        self,
        *,
        evaluation_id: str,
        model_sha256: str,
        model_name: str | None,
        dataset: str,
        policy: str,
        labels: Mapping[str, Any],
        requested_provider: str,
        created_at: str | None = None,
    ) -> None:
        """Record that an evaluation was accepted; it is *running* until :meth:`record_result`."""
        doing = f"record evaluation {evaluation_id!r}"
        try:
            labels_json = _dumps(dict(labels))
        except (TypeError, ValueError) as e:
            raise InternalError(f"audit log {self.path}: cannot {doing}: labels are not JSON: {e}") from e
        with self._transaction(doing) as conn:
            if conn.execute("SELECT 1 FROM evaluations WHERE evaluation_id = ?", (evaluation_id,)).fetchone():
                raise InternalError(f"audit log {self.path}: cannot {doing}: it is already recorded")
            conn.execute(
                "INSERT INTO evaluations (evaluation_id, created_at, model_sha256, model_name, dataset, policy,"
                " labels_json, requested_provider) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    evaluation_id,
                    created_at or _now(),
                    model_sha256,
                    model_name,
                    dataset,
                    policy,
                    labels_json,
                    requested_provider,
                ),
            )

    def record_result(
        self,
        evaluation_id: str,
        verdict: Mapping[str, Any],
        *,
        interrupted: bool = False,
        finished_at: str | None = None,
    ) -> None:
        """Record how an accepted evaluation ended, with its whole verdict JSON document.

        Refuses (InternalError, nothing written) a result for an evaluation that was never
        accepted or already has one, a decision other than PASS/FAIL/ERROR, and a PASS
        that is not complete: fail closed rather than log a PASS nobody can stand behind.
        """
        doing = f"record the result of evaluation {evaluation_id!r}"
        decision = verdict.get("verdict")
        if decision not in _DECISIONS:
            raise InternalError(
                f"audit log {self.path}: cannot {doing}: verdict {decision!r} is not one of {', '.join(_DECISIONS)}"
            )
        if decision == Decision.PASS:
            why = "it was interrupted" if interrupted else _incomplete_pass(verdict)
            if why is not None:
                raise InternalError(f"audit log {self.path}: cannot {doing}: the verdict says PASS but {why}")
        elif interrupted and decision != Decision.ERROR:
            raise InternalError(f"audit log {self.path}: cannot {doing}: an interrupted evaluation is an ERROR")
        duration = verdict.get("duration_s")
        if isinstance(duration, bool) or not isinstance(duration, int | float) or not math.isfinite(duration):
            duration = None
        try:
            row = (
                evaluation_id,
                finished_at or _now(),
                decision,
                int(interrupted),
                _part(verdict, "dataset", "sha256"),
                _part(verdict, "policy", "sha256"),
                _part(verdict, "runtime", "provider"),
                _part(verdict, "runtime", "onnxruntime"),
                duration,
                _dumps(verdict.get("rules", [])),
                None if verdict.get("metrics") is None else _dumps(verdict["metrics"]),
                None if verdict.get("error") is None else _dumps(verdict["error"]),
                _dumps(dict(verdict)),
            )
        except (TypeError, ValueError) as e:
            raise InternalError(f"audit log {self.path}: cannot {doing}: the verdict is not JSON: {e}") from e
        with self._transaction(doing) as conn:
            self._insert_result(conn, doing, row)

    def _insert_result(self, conn: sqlite3.Connection, doing: str, row: tuple[Any, ...]) -> None:
        evaluation_id = row[0]
        if not conn.execute("SELECT 1 FROM evaluations WHERE evaluation_id = ?", (evaluation_id,)).fetchone():
            raise InternalError(f"audit log {self.path}: cannot {doing}: it was never accepted")
        if conn.execute("SELECT 1 FROM results WHERE evaluation_id = ?", (evaluation_id,)).fetchone():
            raise InternalError(f"audit log {self.path}: cannot {doing}: it already has a result")
        conn.execute(
            "INSERT INTO results (evaluation_id, finished_at, decision, interrupted, dataset_sha256, policy_sha256,"
            " provider, onnxruntime, duration_s, rules_json, metrics_json, error_json, verdict_json)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )

    def mark_interrupted(self, *, reason: str = "the server stopped before the evaluation completed") -> list[str]:
        """Close every evaluation that has no result with an ERROR; return their ids.

        Called at server start-up: an evaluation still *running* then was cut short by a
        stop or a crash, and must not stay open (or ever turn into a PASS).
        """
        finished_at = _now()
        ids: list[str] = []
        with self._transaction("mark unfinished evaluations as interrupted") as conn:
            running = conn.execute(_SELECT + " WHERE r.evaluation_id IS NULL ORDER BY e.created_at, e.rowid").fetchall()
            for found in running:
                record = _record(found)
                verdict = Verdict(
                    decision=Decision.ERROR,
                    model={"sha256": record.model_sha256, "path": record.model_name},
                    dataset={"name": record.dataset},
                    policy={"name": record.policy},
                    error={"type": InternalError.kind, "message": reason},
                    started_at=record.created_at,
                ).to_dict()
                # Nothing is known of the run but what was accepted: no hashes, runtime or metrics.
                row = (
                    record.evaluation_id,
                    finished_at,
                    Decision.ERROR.value,
                    1,
                    *(None,) * 5,
                    _dumps(verdict["rules"]),
                    None,
                    _dumps(verdict["error"]),
                    _dumps(verdict),
                )
                self._insert_result(conn, f"mark evaluation {record.evaluation_id!r} as interrupted", row)
                ids.append(record.evaluation_id)
        return ids

    # -- reading ----------------------------------------------------------------------------

    def get(self, evaluation_id: str) -> EvaluationRecord | None:
        """The evaluation with this id, or None if it was never accepted."""
        with self._connection(f"read evaluation {evaluation_id!r}") as conn:
            found = conn.execute(_SELECT + " WHERE e.evaluation_id = ?", (evaluation_id,)).fetchone()
        return None if found is None else _record(found)

    def list(
        self,
        *,
        model_sha256: str | None = None,
        dataset: str | None = None,
        policy: str | None = None,
        decision: str | None = None,
        limit: int = 50,
    ) -> list[EvaluationRecord]:
        """Evaluations matching every filter given, newest first.

        ``decision`` matches the recorded result, so running evaluations are left out
        when it is given.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}, not {limit!r}")
        if decision is not None and decision not in _DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(_DECISIONS)}, not {decision!r}")
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("e.model_sha256", model_sha256),
            ("e.dataset", dataset),
            ("e.policy", policy),
            ("r.decision", decision),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = _SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        # rowid breaks ties between evaluations accepted within the same second.
        sql += " ORDER BY e.created_at DESC, e.rowid DESC LIMIT ?"
        params.append(limit)
        with self._connection("list evaluations") as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_record(r) for r in rows]

    def count(self) -> int:
        """How many evaluations were ever accepted."""
        with self._connection("count evaluations") as conn:
            return int(conn.execute("SELECT count(*) FROM evaluations").fetchone()[0])

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database; later calls raise InternalError. Closing twice is harmless."""
        with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                try:
                    conn.close()
                except sqlite3.Error as e:
                    raise InternalError(f"audit log {self.path}: cannot close the database: {e}") from e

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AuditStore({str(self.path)!r})"
