"""The audit log on real SQLite files and a real PostgreSQL server, the same tests on both:
round trips, filters, append-only, fail-closed PASS, interrupted evaluations, replicas
and their claims, reopening, concurrent writers, and schema versions and migrations."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gate.errors import InternalError
from gate.store import (
    SCHEMA_VERSION,
    AuditLog,
    AuditStore,
    EvaluationRecord,
    PostgresAuditStore,
    SQLiteAuditStore,
    open_store,
    redact_url,
    sqlite_path,
)
from gate.store import postgres as pg_schema
from gate.store import sqlite as sqlite_schema
from gate.verdict import Decision, RuleResult, Severity, Status, Verdict
from tests.pg import PostgresDatabase

SHA_A = "a" * 64
SHA_B = "b" * 64


def _verdict(decision: Decision = Decision.PASS, **changes: Any) -> dict[str, Any]:
    """A complete verdict JSON document as the evaluation produces it."""
    status = Status.PASS if decision is Decision.PASS else Status.FAIL
    verdict = Verdict(
        decision=decision,
        model={"sha256": SHA_A, "path": "model.onnx"},
        dataset={"name": "pets", "sha256": "d" * 64, "samples": 150, "classes": ["cat", "dog", "rabbit"]},
        policy={"name": "prod", "sha256": "p" * 64},
        runtime={"onnxruntime": "1.20.0", "provider": "CPUExecutionProvider"},
        metrics={"accuracy": 0.9, "per_class": {"rabbit": {"recall": None}}},
        rules=[
            RuleResult("acc", "metric", status, Severity.BLOCK, "accuracy 0.900 >= 0.850", 0.9, {"min": 0.85}),
            RuleResult("warned", "metric", Status.FAIL, Severity.WARN, "macro_f1 0.5 < 0.6"),
        ],
        started_at="2024-05-01T12:00:00+00:00",
        duration_s=1.25,
    ).to_dict()
    verdict.update(changes)
    return verdict


# ---------------------------------------------------------------- the two back ends


class Raw:
    """A plain connection to the store's database, bypassing gate."""

    def __init__(self, backend: Backend) -> None:
        self.kind = backend.kind
        if backend.kind == "sqlite":
            self._sqlite: sqlite3.Connection | None = sqlite3.connect(backend.target, isolation_level=None)
            self._pg: psycopg.Connection[Any] | None = None
        else:
            assert backend.database is not None
            self._sqlite, self._pg = None, backend.database.connect()

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self._sqlite is not None:
            return self._sqlite.execute(sql, params).fetchall()
        assert self._pg is not None
        cursor = self._pg.execute(sql.replace("?", "%s"), params)
        return cursor.fetchall() if cursor.description else []

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        return (sqlite3.IntegrityError,) if self._sqlite is not None else (psycopg.Error,)

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._pg is not None:
            self._pg.close()

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass
class Backend:
    kind: str  # "sqlite" or "postgresql"
    target: str  # what open_store takes
    database: PostgresDatabase | None = None

    def open(self, replica_id: str | None = None, *, claim_timeout_s: float = 10.0) -> AuditLog:
        return open_store(self.target, replica_id=replica_id, claim_timeout_s=claim_timeout_s)

    def raw(self) -> Raw:
        return Raw(self)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "audit" / "gate.db"))
    database: PostgresDatabase = request.getfixturevalue("postgres_database")
    return Backend("postgresql", database.url, database)


@pytest.fixture
def store(backend: Backend) -> Iterator[AuditLog]:
    with backend.open() as s:
        yield s


def _accept(store: AuditLog, evaluation_id: str, **changes: Any) -> None:
    fields: dict[str, Any] = {
        "model_sha256": SHA_A,
        "model_name": "model.onnx",
        "dataset": "pets",
        "policy": "prod",
        "labels": {"pipeline_id": "42", "git_sha": "abc"},
        "requested_provider": "auto",
    }
    fields.update(changes)
    store.record_accepted(evaluation_id=evaluation_id, **fields)


# ---------------------------------------------------------------- records


def test_open_store_picks_the_back_end(backend: Backend, store: AuditLog) -> None:
    if backend.kind == "sqlite":
        assert isinstance(store, SQLiteAuditStore) and AuditStore is SQLiteAuditStore
        assert store.location == backend.target
    else:
        assert isinstance(store, PostgresAuditStore)
        assert backend.database is not None and backend.database.server.password not in store.location
        assert "***" in store.location and repr(store).startswith("PostgresAuditStore('postgresql://gate:***@")


def test_round_trip_accepted_running_done(backend: Backend, store: AuditLog) -> None:
    _accept(store, "e1", created_at="2024-05-01T12:00:00+00:00")
    running = store.get("e1")
    assert running == EvaluationRecord(
        evaluation_id="e1",
        state="running",
        created_at="2024-05-01T12:00:00+00:00",
        finished_at=None,
        model_sha256=SHA_A,
        model_name="model.onnx",
        dataset="pets",
        policy="prod",
        labels={"pipeline_id": "42", "git_sha": "abc"},
        requested_provider="auto",
        verdict=None,
        replica_id=None,
    )
    assert running.decision is None

    verdict = _verdict()
    store.record_result("e1", verdict, finished_at="2024-05-01T12:00:02+00:00")
    done = store.get("e1")
    assert done is not None
    assert (done.state, done.decision, done.finished_at) == ("done", "PASS", "2024-05-01T12:00:02+00:00")
    assert done.verdict == verdict
    assert list(done.verdict) == list(verdict)  # the document as given, keys in order
    assert store.get("nope") is None
    assert store.count() == 1

    with backend.raw() as raw:
        (row,) = raw.execute(
            "SELECT decision, interrupted, dataset_sha256, policy_sha256, provider, onnxruntime, duration_s,"
            " metrics_json IS NOT NULL, error_json FROM results"
        )
    assert row == ("PASS", 0, "d" * 64, "p" * 64, "CPUExecutionProvider", "1.20.0", 1.25, 1, None)


def test_defaults_created_and_finished_now(store: AuditLog) -> None:
    _accept(store, "e1")
    store.record_result("e1", _verdict(Decision.FAIL))
    record = store.get("e1")
    assert record is not None
    assert record.created_at.endswith("+00:00") and record.finished_at is not None
    assert record.finished_at >= record.created_at
    assert record.decision == "FAIL"


def test_list_filters_and_order(store: AuditLog) -> None:
    _accept(store, "old", created_at="2024-01-01T00:00:00+00:00", model_sha256=SHA_B)
    _accept(store, "mid", created_at="2024-02-01T00:00:00+00:00", dataset="birds")
    _accept(store, "tie1", created_at="2024-03-01T00:00:00+00:00", policy="<inline>")
    _accept(store, "tie2", created_at="2024-03-01T00:00:00+00:00")
    store.record_result("old", _verdict(Decision.FAIL))
    store.record_result("mid", _verdict())
    store.record_result("tie1", _verdict(Decision.ERROR, metrics=None, error={"type": "X", "message": "m"}))

    def ids(**filters: Any) -> list[str]:
        return [r.evaluation_id for r in store.list(**filters)]

    assert ids() == ["tie2", "tie1", "mid", "old"]  # newest first, later insert first on a tie
    assert ids(model_sha256=SHA_B) == ["old"]
    assert ids(model_sha256=SHA_A) == ["tie2", "tie1", "mid"]
    assert ids(dataset="birds") == ["mid"]
    assert ids(policy="<inline>") == ["tie1"]
    assert ids(decision="PASS") == ["mid"]
    assert ids(decision="FAIL") == ["old"]
    assert ids(decision="ERROR") == ["tie1"]  # the running one has no decision
    assert ids(dataset="pets", decision="FAIL") == ["old"]
    assert ids(dataset="pets", decision="PASS") == []
    assert ids(limit=2) == ["tie2", "tie1"]
    assert len(store.list(limit=10_000)) == 4
    for bad in (0, -1, 10_001):
        with pytest.raises(ValueError, match="limit"):
            store.list(limit=bad)
    with pytest.raises(ValueError, match="decision"):
        store.list(decision="pass")


def test_list_continues_after_an_evaluation(store: AuditLog) -> None:
    """Pages: ``after`` an evaluation, those listed after it, in the same order (ties too)."""
    for evaluation_id, created_at in (
        ("a", "2024-01-01T00:00:00+00:00"),
        ("b", "2024-03-01T00:00:00+00:00"),
        ("c", "2024-03-01T00:00:00+00:00"),
        ("d", "2024-03-01T00:00:00+00:00"),
        ("e", "2024-04-01T00:00:00+00:00"),
    ):
        _accept(store, evaluation_id, created_at=created_at, dataset="birds" if evaluation_id == "c" else "pets")

    def ids(**options: Any) -> list[str]:
        return [r.evaluation_id for r in store.list(**options)]

    assert ids() == ["e", "d", "c", "b", "a"]
    pages, after = [], None
    while page := ids(limit=2, after=after):
        pages.append(page)
        after = page[-1]
    assert pages == [["e", "d"], ["c", "b"], ["a"]]
    assert ids(after="d", dataset="pets") == ["b", "a"]  # the filters still apply
    assert ids(after="a") == []
    with pytest.raises(ValueError, match="no evaluation with id 'zz' to list from"):
        store.list(after="zz")


def test_append_only_triggers_refuse_update_and_delete(backend: Backend, store: AuditLog) -> None:
    _accept(store, "e1")
    store.record_result("e1", _verdict(Decision.FAIL))
    refused = [
        "UPDATE results SET decision = 'PASS'",
        "UPDATE evaluations SET model_sha256 = 'x'",
        "DELETE FROM results",
        "DELETE FROM evaluations",
    ]
    if backend.kind == "postgresql":
        refused += ["TRUNCATE results", "TRUNCATE evaluations CASCADE"]  # no row trigger fires for these
    with backend.raw() as raw:
        for sql in refused:
            with pytest.raises(raw.errors, match="append-only"):
                raw.execute(sql)
        # Even a writer that bypasses the store cannot log an incomplete PASS.
        raw.execute(
            "INSERT INTO evaluations (evaluation_id, created_at, model_sha256, model_name, dataset, policy,"
            " labels_json, requested_provider) VALUES ('e2', '2024-01-01T00:00:00+00:00', 'x', NULL, 'd', 'p',"
            " '{}', 'cpu')"
        )
        for columns, values in (
            ("metrics_json, interrupted", "NULL, 0"),  # a PASS without metrics
            ("metrics_json, interrupted", "'{}', 1"),  # an interrupted PASS
        ):
            with pytest.raises(raw.errors, match=r"(?i)check constraint"):
                raw.execute(
                    f"INSERT INTO results (evaluation_id, finished_at, decision, rules_json, verdict_json, {columns})"
                    f" VALUES ('e2', 'now', 'PASS', '[]', '{{}}', {values})"
                )
    record = store.get("e1")
    assert record is not None and record.decision == "FAIL"
    assert store.count() == 2


def test_double_result_and_unknown_id_refused(store: AuditLog) -> None:
    _accept(store, "e1")
    store.record_result("e1", _verdict(Decision.FAIL))
    with pytest.raises(InternalError, match=r"'e1'.*already has a result"):
        store.record_result("e1", _verdict())
    record = store.get("e1")
    assert record is not None and record.decision == "FAIL"
    with pytest.raises(InternalError, match=r"'ghost'.*never accepted"):
        store.record_result("ghost", _verdict(Decision.FAIL))
    with pytest.raises(InternalError, match="already recorded"):
        _accept(store, "e1")
    assert store.count() == 1


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"metrics": None}, "metrics are null"),
        ({"error": {"type": "ModelError", "message": "NaN"}}, "carries an error"),
        ({"rules": []}, "no rule results"),
        ({"rules": [{"id": "acc", "severity": "block", "status": "fail"}]}, "'acc'"),
        ({"rules": [{"id": "few", "severity": "block", "status": "inconclusive"}]}, "'few'"),
        ({"rules": [{"id": "odd", "status": "fail"}]}, "'odd'"),  # no severity: a block rule
        ({"rules": [{"id": "w", "severity": "warn", "status": "error"}]}, "'w'"),
    ],
)
def test_incomplete_pass_refused_and_nothing_written(store: AuditLog, changes: dict[str, Any], why: str) -> None:
    _accept(store, "e1")
    with pytest.raises(InternalError, match=f"says PASS but.*{why}"):
        store.record_result("e1", _verdict(**changes))
    record = store.get("e1")
    assert record is not None and record.state == "running"
    # The same verdict as FAIL or ERROR is data, and is recorded.
    store.record_result("e1", _verdict(Decision.ERROR, **changes))
    record = store.get("e1")
    assert record is not None and record.decision == "ERROR"


def test_bad_decisions_refused(store: AuditLog) -> None:
    _accept(store, "e1")
    for decision in ("pass", "MAYBE", None):
        with pytest.raises(InternalError, match="is not one of PASS, FAIL, ERROR"):
            store.record_result("e1", _verdict(verdict=decision))
    with pytest.raises(InternalError, match="PASS but it was interrupted"):
        store.record_result("e1", _verdict(), interrupted=True)
    with pytest.raises(InternalError, match="interrupted evaluation is an ERROR"):
        store.record_result("e1", _verdict(Decision.FAIL), interrupted=True)
    with pytest.raises(InternalError, match="not JSON"):
        store.record_result("e1", _verdict(Decision.FAIL, duration_s=float("nan"), extra={1, 2}))
    record = store.get("e1")
    assert record is not None and record.state == "running"


def test_mark_interrupted(store: AuditLog) -> None:
    _accept(store, "done", created_at="2024-01-01T00:00:00+00:00")
    _accept(store, "run1", created_at="2024-01-02T00:00:00+00:00", model_name=None)
    _accept(store, "run2", created_at="2024-01-03T00:00:00+00:00", policy="<inline>")
    store.record_result("done", _verdict())

    assert store.mark_interrupted(reason="server restarted") == ["run1", "run2"]
    assert store.mark_interrupted() == []

    done = store.get("done")
    assert done is not None and (done.state, done.decision) == ("done", "PASS")
    run1, run2 = store.get("run1"), store.get("run2")
    assert run1 is not None and run2 is not None
    assert (run1.state, run1.decision, run2.state, run2.decision) == ("interrupted", "ERROR", "interrupted", "ERROR")
    assert run1.verdict is not None and run2.verdict is not None
    assert run1.verdict["schema"] == "gate.verdict/v1"
    assert run1.verdict["model"] == {"sha256": SHA_A, "path": None}
    assert run1.verdict["dataset"] == {"name": "pets"}
    assert run2.verdict["policy"] == {"name": "<inline>"}
    assert run1.verdict["runtime"] == {}
    assert run1.verdict["metrics"] is None and run1.verdict["rules"] == []
    assert run1.verdict["error"] == {"type": "InternalError", "message": "server restarted"}
    assert run1.verdict["started_at"] == "2024-01-02T00:00:00+00:00"
    assert [r.evaluation_id for r in store.list(decision="ERROR")] == ["run2", "run1"]
    with pytest.raises(InternalError, match="already has a result"):
        store.record_result("run1", _verdict())


def test_reopen_sees_everything(backend: Backend) -> None:
    with backend.open() as store:
        _accept(store, "e1", created_at="2024-01-01T00:00:00+00:00")
        _accept(store, "e2", created_at="2024-01-02T00:00:00+00:00")
        store.record_result("e1", _verdict())
        before = store.list()
    with backend.open() as again:
        assert again.count() == 2
        assert again.list() == before
        again.record_result("e2", _verdict(Decision.FAIL))
    with backend.open() as third:
        assert [r.decision for r in third.list()] == ["FAIL", "PASS"]
    if backend.kind == "sqlite":
        with AuditStore(Path(backend.target)) as by_path:
            assert by_path.path == Path(backend.target) and by_path.count() == 2


def test_closed_store_refuses(backend: Backend) -> None:
    store = backend.open()
    store.close()
    store.close()
    with pytest.raises(InternalError, match="closed"):
        store.count()
    with pytest.raises(InternalError, match="closed"):
        _accept(store, "e1")


def test_concurrent_writers(store: AuditLog) -> None:
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(25):
                evaluation_id = f"w{worker}-{i}"
                _accept(store, evaluation_id, dataset=f"set{worker % 2}")
                store.record_result(evaluation_id, _verdict(Decision.PASS if i % 2 else Decision.FAIL))
                assert store.get(evaluation_id) is not None
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count() == 200
    assert len(store.list(limit=1000)) == 200
    assert len(store.list(decision="PASS", limit=1000)) == 96
    assert len(store.list(dataset="set0", limit=1000)) == 100
    assert store.mark_interrupted() == []


# ---------------------------------------------------------------- replicas


def test_each_replica_records_its_id_and_several_write_at_once(backend: Backend) -> None:
    """Two servers' stores on one database (two connections, two claims) writing together."""
    errors: list[BaseException] = []
    with backend.open("replica-a") as a, backend.open("replica-b") as b:

        def work(store: AuditLog, name: str, worker: int) -> None:
            try:
                for i in range(20):
                    evaluation_id = f"{name}-{worker}-{i}"
                    _accept(store, evaluation_id)
                    store.record_result(evaluation_id, _verdict(Decision.FAIL))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work, args=(s, n, w)) for s, n in ((a, "a"), (b, "b")) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        records = a.list(limit=1000)
        assert len(records) == len({r.evaluation_id for r in records}) == 160 == b.count()
        assert {r.evaluation_id[0]: r.replica_id for r in records} == {"a": "replica-a", "b": "replica-b"}


def test_a_replica_id_is_claimed_by_one_server_at_a_time(backend: Backend) -> None:
    first = backend.open("replica-a")
    try:
        with pytest.raises(InternalError, match="'replica-a' is in use by another running gate server"):
            backend.open("replica-a", claim_timeout_s=0)
        with backend.open("replica-b"), backend.open():  # another id, and a reader, are fine
            pass
    finally:
        first.close()
    with backend.open("replica-a", claim_timeout_s=0) as again:  # given back on close
        assert again.replica_id == "replica-a"
    with pytest.raises(InternalError, match="replica id 'bad id' is not valid"):
        backend.open("bad id")


def test_mark_interrupted_leaves_a_live_siblings_evaluations_alone(backend: Backend) -> None:
    a = backend.open("replica-a")
    b = backend.open("replica-b")
    with backend.open() as reader:
        _accept(reader, "unowned", created_at="2024-01-01T00:00:00+00:00")  # as schema version 1 left them
    _accept(a, "a1", created_at="2024-01-02T00:00:00+00:00")
    _accept(b, "b1", created_at="2024-01-03T00:00:00+00:00")
    _accept(b, "b2", created_at="2024-01-04T00:00:00+00:00")
    b.record_result("b2", _verdict(Decision.FAIL))
    record = a.get("a1")
    assert record is not None and record.replica_id == "replica-a"
    try:
        with backend.open("replica-c") as c:
            # a and b are alive: only the evaluation nobody owns is closed
            assert c.mark_interrupted() == ["unowned"]
            a.close()  # a stops without finishing a1
            assert c.mark_interrupted() == ["a1"]
            assert c.mark_interrupted() == []
        b1 = b.get("b1")
        assert b1 is not None and b1.state == "running"
        b.record_result("b1", _verdict())  # b finishes its evaluation, untouched
        b1 = b.get("b1")
        assert b1 is not None and (b1.state, b1.decision) == ("done", "PASS")

        _accept(b, "b3")
        b.close()
        with backend.open("replica-b") as restarted:  # a restart closes its own
            assert restarted.mark_interrupted() == ["b3"]
        with backend.open("replica-a", claim_timeout_s=0):  # a's claim was given back after a1 was closed
            pass
    finally:
        a.close()
        b.close()
    with backend.open() as reader:
        states = {r.evaluation_id: (r.state, r.decision) for r in reader.list()}
    assert states == {
        "unowned": ("interrupted", "ERROR"),
        "a1": ("interrupted", "ERROR"),
        "b1": ("done", "PASS"),
        "b2": ("done", "FAIL"),
        "b3": ("interrupted", "ERROR"),
    }


_CRASHING_SERVER = textwrap.dedent(
    """
    import sys, time
    from gate.store import open_store
    store = open_store(sys.argv[1], replica_id="doomed")
    store.record_accepted(evaluation_id="x1", model_sha256="0" * 64, model_name=None, dataset="pets",
                          policy="default", labels={}, requested_provider="cpu")
    print("running", flush=True)
    time.sleep(600)
    """
)


def test_a_killed_replicas_evaluations_are_closed_by_the_next_start(backend: Backend) -> None:
    """The claim dies with its process, however it dies: the OS or the database releases it."""
    with backend.open():  # create the schema first
        pass
    proc = subprocess.Popen([sys.executable, "-c", _CRASHING_SERVER, backend.target], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "running\n"
        with backend.open("replica-c") as c:
            assert c.mark_interrupted() == []  # alive: left alone
            x1 = c.get("x1")
            assert x1 is not None and (x1.state, x1.replica_id) == ("running", "doomed")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            # PostgreSQL ends the session of a vanished client once it notices; the store
            # retries its claim check at each start, so poll a few times
            closed: list[str] = []
            for _ in range(200):
                closed = c.mark_interrupted()
                if closed:
                    break
                time.sleep(0.05)
            assert closed == ["x1"]
            x1 = c.get("x1")
            assert x1 is not None and (x1.state, x1.decision) == ("interrupted", "ERROR")
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()


# ---------------------------------------------------------------- schema versions


def _make_version_1(backend: Backend) -> None:
    """A database as gate wrote it before replica ids (schema version 1), with a finished
    and a running evaluation."""
    if backend.kind == "sqlite":
        Path(backend.target).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(backend.target, isolation_level=None)
        conn.execute("BEGIN")
        sqlite_schema.apply_migrations(conn, 0, target=1)
        conn.execute("COMMIT")
        conn.close()
    else:
        assert backend.database is not None
        with backend.database.connect() as pg, pg.transaction():
            pg_schema.apply_migrations(pg, 0, target=1)
    with backend.raw() as raw:
        for evaluation_id, created in (
            ("old-done", "2024-01-01T00:00:00+00:00"),
            ("old-run", "2024-01-02T00:00:00+00:00"),
        ):
            raw.execute(
                "INSERT INTO evaluations (evaluation_id, created_at, model_sha256, model_name, dataset, policy,"
                " labels_json, requested_provider) VALUES (?, ?, ?, NULL, 'pets', 'prod', '{}', 'auto')",
                (evaluation_id, created, SHA_A),
            )
        verdict = _verdict(Decision.FAIL)
        raw.execute(
            "INSERT INTO results (evaluation_id, finished_at, decision, interrupted, rules_json, metrics_json,"
            " verdict_json) VALUES ('old-done', '2024-01-01T00:00:01+00:00', 'FAIL', 0, '[]', '{}', ?)",
            (json.dumps(verdict),),
        )


def _version(backend: Backend) -> int:
    with backend.raw() as raw:
        if backend.kind == "sqlite":
            return int(raw.execute("PRAGMA user_version")[0][0])
        return int(raw.execute("SELECT max(version) FROM gate_schema_migrations")[0][0])


def test_an_older_schema_is_migrated(backend: Backend) -> None:
    _make_version_1(backend)
    assert _version(backend) == 1
    with backend.open("replica-a") as store:
        assert _version(backend) == SCHEMA_VERSION == 3
        old = store.get("old-done")
        assert old is not None and (old.decision, old.replica_id) == ("FAIL", None)
        running = store.get("old-run")
        assert running is not None and (running.state, running.replica_id) == ("running", None)
        # the running evaluation from before the upgrade is nobody's: closed at start-up
        assert store.mark_interrupted() == ["old-run"]
        _accept(store, "new", created_at="2024-01-03T00:00:00+00:00")
        assert [r.evaluation_id for r in store.list()] == ["new", "old-run", "old-done"]
        new = store.get("new")
        assert new is not None and (new.state, new.replica_id) == ("running", "replica-a")
    with backend.open() as again:  # already current: nothing more to do
        assert again.count() == 3
    assert _version(backend) == SCHEMA_VERSION
    if backend.kind == "postgresql":
        with backend.raw() as raw:
            assert [r[0] for r in raw.execute("SELECT version FROM gate_schema_migrations ORDER BY 1")] == [1, 2, 3]


def test_newer_schema_refused(backend: Backend) -> None:
    backend.open().close()
    with backend.raw() as raw:
        if backend.kind == "sqlite":
            raw.execute("PRAGMA user_version = 7")
        else:
            raw.execute("INSERT INTO gate_schema_migrations (version, description) VALUES (7, 'from the future')")
    where = r"gate\.db" if backend.kind == "sqlite" else r"postgresql://gate:\*\*\*@"
    with pytest.raises(InternalError, match=rf"{where}.*schema version 7 is newer.*version {SCHEMA_VERSION}"):
        backend.open()
    assert _version(backend) == 7  # refused before anything changed


def test_sqlite_pragmas_wal_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "gate.db"
    AuditStore(path).close()
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        raw.close()
    assert {
        "results_decision",
        "evaluations_model_sha256",
        "evaluations_dataset",
        "evaluations_policy",
        "evaluations_created_at",
        "evaluations_replica_id",
    } <= indexes


def test_postgresql_schema(postgres_database: PostgresDatabase) -> None:
    open_store(postgres_database.url).close()
    with postgres_database.connect() as raw:
        assert raw.execute("SELECT current_schema()").fetchone() == (postgres_database.name,)
        indexes = {r[0] for r in raw.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}
        triggers = {
            r[0]
            for r in raw.execute(
                "SELECT t.tgname FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid"
                " WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace"
            )
        }
    assert {
        "results_decision",
        "evaluations_model_sha256",
        "evaluations_dataset",
        "evaluations_policy",
        "evaluations_created_at",
        "evaluations_replica_id",
    } <= indexes
    assert triggers == {
        "evaluations_append_only",
        "evaluations_no_truncate",
        "results_append_only",
        "results_no_truncate",
        *(
            f"{t}_{kind}"
            for t in ("waivers", "waiver_revocations", "attestations")
            for kind in ("append_only", "no_truncate")
        ),
    }


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "gate.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InternalError, match=r"gate\.db"):
        AuditStore(path)


# ---------------------------------------------------------------- targets and failures


def test_targets_and_redaction(tmp_path: Path) -> None:
    assert sqlite_path("sqlite:///srv/gate/audit.db") == Path("/srv/gate/audit.db")
    assert sqlite_path(tmp_path / "a.db") == tmp_path / "a.db"
    assert sqlite_path("relative/audit.sqlite3") == Path("relative/audit.sqlite3")
    assert sqlite_path("postgresql://gate:pw@db:5432/gate") is None
    assert sqlite_path("postgres://db/gate") is None
    assert redact_url("postgresql://gate:s3cret@db.example:5432/gate?sslmode=require") == (
        "postgresql://gate:***@db.example:5432/gate?sslmode=require"
    )
    assert redact_url("postgresql://gate@db/gate") == "postgresql://gate@db/gate"
    for bad in ("mysql://root:s3cret@db/gate", "sqlite://", " "):
        with pytest.raises(InternalError) as caught:
            open_store(bad)
        assert "s3cret" not in caught.value.message
    store = open_store(f"sqlite://{tmp_path}/url.db")
    try:
        assert isinstance(store, SQLiteAuditStore) and store.path == tmp_path / "url.db"
    finally:
        store.close()


@contextlib.contextmanager
def _closed_port() -> Iterator[int]:
    """A loopback port nothing listens on, for as long as the block runs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        yield s.getsockname()[1]


def test_unreachable_postgresql_is_an_internal_error_without_the_password() -> None:
    with _closed_port() as port, pytest.raises(InternalError) as caught:
        open_store(f"postgresql://gate:s3cret-pw@127.0.0.1:{port}/gate")
    message = caught.value.message
    assert message.startswith(f"audit log postgresql://gate:***@127.0.0.1:{port}/gate: cannot open the database: ")
    assert "s3cret-pw" not in message and "s3cret-pw" not in repr(caught.value.__cause__)


def test_a_wrong_password_is_refused_without_showing_it(postgres_database: PostgresDatabase) -> None:
    url = postgres_database.server.url(postgres_database.name, password="not-the-password")
    with pytest.raises(InternalError, match=r"password authentication failed") as caught:
        open_store(url)
    assert "not-the-password" not in str(caught.value) and "gate:***@" in str(caught.value)


def test_a_lost_connection_reconnects_and_claims_again(postgres_database: PostgresDatabase) -> None:
    with open_store(postgres_database.url, replica_id="replica-a") as store:
        _accept(store, "e1")
        with postgres_database.server.admin() as admin:  # the server ends the store's session
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gate replica-a'"
            )
        with pytest.raises(InternalError, match=r"cannot read evaluation 'e1'"):
            store.get("e1")  # the call that finds the connection gone fails, closed
        record = store.get("e1")  # the next one reconnects
        assert record is not None and record.replica_id == "replica-a"
        with pytest.raises(InternalError, match="in use"):  # and the claim is held again
            open_store(postgres_database.url, replica_id="replica-a", claim_timeout_s=0)
