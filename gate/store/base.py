"""What every audit-log back end shares: the record type, the interface, the fail-closed
checks and the SQL logic; the back ends (:mod:`gate.store.sqlite`,
:mod:`gate.store.postgres`) supply connections, schema migrations and replica claims.

**Replicas and interrupted evaluations.** Every accepted evaluation is recorded with the
replica id of the server that accepted it (``replica_id``; by default the host name, which
on Kubernetes is the pod name). A server holds a *claim* on its replica id for as long as
its store is open: a session-level advisory lock on PostgreSQL, an ``flock`` on a lock
file next to the database on SQLite. Both are released by the operating system or the
database when the process dies, however it dies. A second server cannot open the store
with a replica id that is claimed (it waits ``claim_timeout_s``, then refuses to start).

At start-up :meth:`AuditLog.mark_interrupted` closes, as ERROR, the unfinished
evaluations of

* this replica (it has just started: none of them can still be running);
* every replica whose claim nobody holds: its process is gone, so are its evaluations;
* no replica (recorded before replica ids existed, schema version 1).

It leaves alone those of every replica whose claim is held: a sibling that is running them
right now. While it closes a dead replica's evaluations it holds that replica's claim, so
two servers starting together cannot both close them, and a replacement started with the
same replica id waits until it is done.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self
from urllib.parse import urlsplit, urlunsplit

from gate.errors import InternalError
from gate.store.lifecycle import LifecycleRecords
from gate.verdict import Decision, Verdict

#: Version of the audit schema this gate writes; both back ends number it alike.
#: 1: evaluations and results, append-only; 2: the replica id of each evaluation;
#: 3: waivers, their revocations and the signed attestations (:mod:`gate.store.lifecycle`).
SCHEMA_VERSION = 3

#: Largest ``limit`` :meth:`AuditLog.list` accepts.
MAX_LIST_LIMIT = 10_000

#: How long opening a store waits for a replica id that another server holds (seconds):
#: long enough for a sibling to finish closing that replica's evaluations.
CLAIM_TIMEOUT_S = 10.0

# Columns of the ``results`` table written alike in both SQL dialects (each back end's
# migration puts them between its own typed columns).
RESULT_DECISION_COLUMN = "decision TEXT NOT NULL CHECK (decision IN ('PASS', 'FAIL', 'ERROR'))"
RESULT_RUNTIME_COLUMNS = "dataset_sha256 TEXT, policy_sha256 TEXT, provider TEXT, onnxruntime TEXT"
RESULT_DOCUMENT_COLUMNS = "rules_json TEXT NOT NULL, metrics_json TEXT, error_json TEXT, verdict_json TEXT NOT NULL"

DECISIONS = tuple(d.value for d in Decision)

_REPLICA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")


def now() -> str:
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
    replica_id: str | None = None  # the server that accepted it; None before schema version 2

    @property
    def decision(self) -> str | None:
        """``"PASS"``, ``"FAIL"`` or ``"ERROR"``; None while the evaluation is running."""
        if self.verdict is None:
            return None
        decision = self.verdict.get("verdict")
        return decision if isinstance(decision, str) else None


# -- store targets --------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<an unparseable URL>"
    if password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{user}:***@{host}" + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def parse_target(target: str | os.PathLike[str]) -> tuple[str, str]:
    """``("sqlite", path)`` or ``("postgresql", url)`` for a store target: a file path, a
    ``sqlite:///ABSOLUTE/PATH`` URL or a ``postgresql://USER:PASSWORD@HOST:PORT/DB`` URL.
    ValueError (without the password) for anything else."""
    if not isinstance(target, str):
        return "sqlite", os.fspath(target)
    text = target.strip()
    if not text:
        raise ValueError("the audit store is empty: give a file path, sqlite:///PATH or postgresql://...")
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if scheme in ("postgresql", "postgres") and rest.startswith("//"):
        return "postgresql", text
    if sep and scheme == "sqlite":
        path = rest.removeprefix("//")
        if not path:
            raise ValueError(f"{text!r} names no file; write sqlite:///ABSOLUTE/PATH")
        return "sqlite", path
    if sep and rest.startswith("//") and re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        raise ValueError(
            f"the audit store {redact_url(text)!r} has an unknown scheme {scheme!r}; "
            "use sqlite:///PATH (or a file path) or postgresql://USER:PASSWORD@HOST:PORT/DB"
        )
    return "sqlite", text


def check_replica_id(replica_id: str) -> str:
    if not _REPLICA_ID_RE.match(replica_id):
        raise ValueError(
            f"replica id {replica_id!r} is not valid: 1 to 128 letters, digits and . _ : @ -, "
            "starting with a letter or digit"
        )
    return replica_id


def claim_key(replica_id: str) -> int:
    """A replica id as a signed 64-bit number (PostgreSQL advisory lock keys are bigint)."""
    digest = hashlib.sha256(f"gate.audit.replica:{replica_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# -- the fail-closed checks and the documents ---------------------------------------------


def incomplete_pass(verdict: Mapping[str, Any]) -> str | None:
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
    waived = {w.get("id") for w in verdict.get("waivers") or () if isinstance(w, Mapping)}
    for rule in rules:
        if not isinstance(rule, Mapping):
            return f"a rule result is not an object: {rule!r}"
        status, severity = rule.get("status"), rule.get("severity", "block")
        if status == "waived" and _named_waiver(rule, waived):
            continue
        if status == "error" or (severity != "warn" and status != "pass"):
            return f"rule {rule.get('id')!r} ({severity}) has status {status!r}"
    return None


def _named_waiver(rule: Mapping[str, Any], waived: set[Any]) -> bool:
    """A waived rule result stands in a PASS only with a waivable real outcome and a
    waiver the verdict's ``waivers`` section names (its validity was judged when applied)."""
    waiver = rule.get("waiver")
    return (
        rule.get("outcome") in ("fail", "inconclusive")
        and isinstance(waiver, Mapping)
        and waiver.get("id") in waived
        and waiver.get("rule") == rule.get("id")
    )


def _part(verdict: Mapping[str, Any], section: str, key: str) -> str | None:
    """``verdict[section][key]`` when it is a string; ERROR verdicts often lack it."""
    value = verdict.get(section)
    if isinstance(value, Mapping):
        found = value.get(key)
        if isinstance(found, str):
            return found
    return None


def dumps(value: Any) -> str:
    # Strict JSON: NaN and Infinity are not JSON, and other programs parse these columns.
    return json.dumps(value, allow_nan=False)


def to_record(row: Mapping[str, Any]) -> EvaluationRecord:
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
        replica_id=row["replica_id"],
    )


# -- the SQL both back ends run -------------------------------------------------------------

Row = dict[str, Any]


class Session(Protocol):
    """A connection, held by one thread, inside a transaction when the store writes.
    SQL is written with ``?`` placeholders."""

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> None: ...


_SELECT = """
SELECT e.evaluation_id, e.created_at, e.model_sha256, e.model_name, e.dataset, e.policy,
       e.labels_json, e.requested_provider, e.replica_id, r.finished_at, r.interrupted, r.verdict_json
FROM evaluations AS e LEFT JOIN results AS r ON r.evaluation_id = e.evaluation_id
"""

_FOUND = "SELECT 1 AS found FROM evaluations WHERE evaluation_id = ?"

_INSERT_RESULT = (
    "INSERT INTO results (evaluation_id, finished_at, decision, interrupted, dataset_sha256, policy_sha256,"
    " provider, onnxruntime, duration_s, rules_json, metrics_json, error_json, verdict_json)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

INTERRUPTED_REASON = "the server stopped before the evaluation completed"


class SQLAuditStore(LifecycleRecords, ABC):
    """The audit log, whatever holds it (:data:`AuditLog`): its logic over a SQL
    database; a back end supplies :meth:`_session` and the replica claims. Every method
    raises :class:`InternalError` naming the store and what it was doing when the
    database fails."""

    #: The column of ``evaluations`` that orders evaluations accepted within the same second.
    _TIEBREAK: ClassVar[str]

    location: str  # where it is, fit for messages and logs (never a password)
    replica_id: str | None  # the replica this store records evaluations for

    # -- what a back end supplies -------------------------------------------------------------

    @abstractmethod
    def _session(self, doing: str, *, write: bool = False) -> AbstractContextManager[Session]:
        """The connection for this thread alone; with ``write``, in a transaction that is
        committed when the block ends and rolled back when it raises. Database errors
        leave as InternalError naming the store and ``doing``."""

    @abstractmethod
    def _hold_claim(self, session: Session, replica_id: str) -> bool:
        """Take the claim of another replica if nobody holds it (its server is gone)."""

    @abstractmethod
    def _release_claims(self, replica_ids: Sequence[str]) -> None:
        """Give back claims taken by :meth:`_hold_claim`."""

    @abstractmethod
    def close(self) -> None: ...

    # -- plumbing ------------------------------------------------------------------------------

    def _fail(self, doing: str, why: str) -> InternalError:
        return InternalError(f"audit log {self.location}: cannot {doing}: {why}")

    # -- writing -------------------------------------------------------------------------------

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
        """Record that an evaluation was accepted by this replica; it is *running* until
        :meth:`record_result`."""
        doing = f"record evaluation {evaluation_id!r}"
        try:
            labels_json = dumps(dict(labels))
        except (TypeError, ValueError) as e:
            raise self._fail(doing, f"labels are not JSON: {e}") from e
        with self._session(doing, write=True) as s:
            if s.rows(_FOUND, (evaluation_id,)):
                raise self._fail(doing, "it is already recorded")
            s.run(
                "INSERT INTO evaluations (evaluation_id, created_at, model_sha256, model_name, dataset, policy,"
                " labels_json, requested_provider, replica_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    evaluation_id,
                    created_at or now(),
                    model_sha256,
                    model_name,
                    dataset,
                    policy,
                    labels_json,
                    requested_provider,
                    self.replica_id,
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
        if decision not in DECISIONS:
            raise self._fail(doing, f"verdict {decision!r} is not one of {', '.join(DECISIONS)}")
        if decision == Decision.PASS:
            why = "it was interrupted" if interrupted else incomplete_pass(verdict)
            if why is not None:
                raise self._fail(doing, f"the verdict says PASS but {why}")
        elif interrupted and decision != Decision.ERROR:
            raise self._fail(doing, "an interrupted evaluation is an ERROR")
        duration = verdict.get("duration_s")
        if isinstance(duration, bool) or not isinstance(duration, int | float) or not math.isfinite(duration):
            duration = None
        try:
            row = (
                evaluation_id,
                finished_at or now(),
                decision,
                int(interrupted),
                _part(verdict, "dataset", "sha256"),
                _part(verdict, "policy", "sha256"),
                _part(verdict, "runtime", "provider"),
                _part(verdict, "runtime", "onnxruntime"),
                duration,
                dumps(verdict.get("rules", [])),
                None if verdict.get("metrics") is None else dumps(verdict["metrics"]),
                None if verdict.get("error") is None else dumps(verdict["error"]),
                dumps(dict(verdict)),
            )
        except (TypeError, ValueError) as e:
            raise self._fail(doing, f"the verdict is not JSON: {e}") from e
        with self._session(doing, write=True) as s:
            self._insert_result(s, doing, row)

    def _insert_result(self, s: Session, doing: str, row: tuple[Any, ...]) -> None:
        evaluation_id = row[0]
        if not s.rows(_FOUND, (evaluation_id,)):
            raise self._fail(doing, "it was never accepted")
        if s.rows("SELECT 1 AS found FROM results WHERE evaluation_id = ?", (evaluation_id,)):
            raise self._fail(doing, "it already has a result")
        s.run(_INSERT_RESULT, row)

    def mark_interrupted(self, *, reason: str = INTERRUPTED_REASON) -> list[str]:
        """Close with an ERROR every unfinished evaluation that no live server is running:
        this replica's, those of replicas whose claim nobody holds, and those recorded
        without a replica id. Return their ids, oldest first.

        Called at server start-up: such an evaluation was cut short by a stop or a crash,
        and must not stay open (or ever turn into a PASS). A sibling replica's running
        evaluations are left alone.
        """
        doing = "mark unfinished evaluations as interrupted"
        finished_at = now()
        held: list[str] = []
        ids: list[str] = []
        try:
            with self._session(doing, write=True) as s:
                owners = [
                    r["replica_id"]
                    for r in s.rows(
                        "SELECT DISTINCT e.replica_id FROM evaluations AS e"
                        " LEFT JOIN results AS r ON r.evaluation_id = e.evaluation_id"
                        " WHERE r.evaluation_id IS NULL"
                    )
                ]
                closing: list[str] = []
                unowned = False
                for owner in owners:
                    if owner is None:
                        unowned = True
                    elif owner == self.replica_id:
                        closing.append(owner)
                    elif self._hold_claim(s, owner):
                        held.append(owner)
                        closing.append(owner)
                which: list[str] = []
                if unowned:
                    which.append("e.replica_id IS NULL")
                if closing:
                    which.append(f"e.replica_id IN ({', '.join('?' * len(closing))})")
                if not which:
                    return []
                running = s.rows(
                    _SELECT
                    + f" WHERE r.evaluation_id IS NULL AND ({' OR '.join(which)})"
                    + f" ORDER BY e.created_at, e.{self._TIEBREAK}",
                    closing,
                )
                for found in running:
                    record = to_record(found)
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
                        dumps(verdict["rules"]),
                        None,
                        dumps(verdict["error"]),
                        dumps(verdict),
                    )
                    self._insert_result(s, f"mark evaluation {record.evaluation_id!r} as interrupted", row)
                    ids.append(record.evaluation_id)
        finally:
            if held:
                self._release_claims(held)
        return ids

    # -- reading -------------------------------------------------------------------------------

    def get(self, evaluation_id: str) -> EvaluationRecord | None:
        """The evaluation with this id, or None if it was never accepted."""
        with self._session(f"read evaluation {evaluation_id!r}") as s:
            found = s.rows(_SELECT + " WHERE e.evaluation_id = ?", (evaluation_id,))
        return to_record(found[0]) if found else None

    def list(
        self,
        *,
        model_sha256: str | None = None,
        dataset: str | None = None,
        policy: str | None = None,
        decision: str | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> list[EvaluationRecord]:
        """Evaluations matching every filter given, newest first; with ``after`` (an
        evaluation id), only those older than it: the next page of a listing that ended
        with that evaluation. ValueError for an ``after`` that was never recorded.

        ``decision`` matches the recorded result, so running evaluations are left out
        when it is given.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit must be an integer from 1 to {MAX_LIST_LIMIT}, not {limit!r}")
        if decision is not None and decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
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
        if after is not None:
            # the same order as below: older, or accepted in the same second but earlier
            where.append(
                f"(e.created_at, e.{self._TIEBREAK}) < (SELECT p.created_at, p.{self._TIEBREAK}"
                " FROM evaluations AS p WHERE p.evaluation_id = ?)"
            )
            params.append(after)
        sql = _SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        # the tie-break orders evaluations accepted within the same second by insertion
        sql += f" ORDER BY e.created_at DESC, e.{self._TIEBREAK} DESC LIMIT ?"
        params.append(limit)
        with self._session("list evaluations") as s:
            if after is not None and not s.rows(_FOUND, (after,)):
                raise ValueError(f"no evaluation with id {after!r} to list from")
            rows = s.rows(sql, params)
        return [to_record(r) for r in rows]

    def count(self) -> int:
        """How many evaluations were ever accepted."""
        with self._session("count evaluations") as s:
            return int(s.rows("SELECT count(*) AS n FROM evaluations")[0]["n"])

    # -- lifetime ------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"


#: The audit log, whatever holds it: the interface both back ends implement.
AuditLog = SQLAuditStore


def iter_versions(current: int) -> Iterator[int]:
    """The migrations a schema at version ``current`` still needs, in order."""
    return iter(range(current + 1, SCHEMA_VERSION + 1))
