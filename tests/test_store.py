"""The audit log on real SQLite files: round trips, filters, append-only, fail-closed PASS,
interrupted evaluations, reopening, concurrent writers and schema versions."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gate.errors import InternalError
from gate.store import AuditStore, EvaluationRecord
from gate.verdict import Decision, RuleResult, Severity, Status, Verdict

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


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    with AuditStore(tmp_path / "audit" / "gate.db") as s:
        yield s


def _accept(store: AuditStore, evaluation_id: str, **changes: Any) -> None:
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


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_round_trip_accepted_running_done(store: AuditStore) -> None:
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

    with _raw(store.path) as raw:
        row = raw.execute(
            "SELECT decision, interrupted, dataset_sha256, policy_sha256, provider, onnxruntime, duration_s,"
            " metrics_json IS NOT NULL, error_json FROM results"
        ).fetchone()
    raw.close()
    assert row == ("PASS", 0, "d" * 64, "p" * 64, "CPUExecutionProvider", "1.20.0", 1.25, 1, None)


def test_defaults_created_and_finished_now(store: AuditStore) -> None:
    _accept(store, "e1")
    store.record_result("e1", _verdict(Decision.FAIL))
    record = store.get("e1")
    assert record is not None
    assert record.created_at.endswith("+00:00") and record.finished_at is not None
    assert record.finished_at >= record.created_at
    assert record.decision == "FAIL"


def test_list_filters_and_order(store: AuditStore) -> None:
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


def test_append_only_triggers_refuse_update_and_delete(store: AuditStore) -> None:
    _accept(store, "e1")
    store.record_result("e1", _verdict(Decision.FAIL))
    raw = _raw(store.path)
    try:
        for sql in (
            "UPDATE results SET decision = 'PASS'",
            "UPDATE evaluations SET model_sha256 = 'x'",
            "DELETE FROM results",
            "DELETE FROM evaluations",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                raw.execute(sql)
        # Even a writer that bypasses the store cannot log an incomplete PASS.
        raw.execute(
            "INSERT INTO evaluations VALUES ('e2', '2024-01-01T00:00:00+00:00', 'x', NULL, 'd', 'p', '{}', 'cpu')"
        )
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            raw.execute(
                "INSERT INTO results (evaluation_id, finished_at, decision, interrupted, rules_json, metrics_json,"
                " verdict_json) VALUES ('e2', 'now', 'PASS', 0, '[]', NULL, '{}')"
            )
    finally:
        raw.close()
    record = store.get("e1")
    assert record is not None and record.decision == "FAIL"


def test_pragmas_wal_and_schema_version(store: AuditStore) -> None:
    raw = _raw(store.path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
        indexes = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    finally:
        raw.close()
    assert {
        "results_decision",
        "evaluations_model_sha256",
        "evaluations_dataset",
        "evaluations_policy",
        "evaluations_created_at",
    } <= indexes


def test_double_result_and_unknown_id_refused(store: AuditStore) -> None:
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
def test_incomplete_pass_refused_and_nothing_written(store: AuditStore, changes: dict[str, Any], why: str) -> None:
    _accept(store, "e1")
    with pytest.raises(InternalError, match=f"says PASS but.*{why}"):
        store.record_result("e1", _verdict(**changes))
    record = store.get("e1")
    assert record is not None and record.state == "running"
    # The same verdict as FAIL or ERROR is data, and is recorded.
    store.record_result("e1", _verdict(Decision.ERROR, **changes))
    record = store.get("e1")
    assert record is not None and record.decision == "ERROR"


def test_bad_decisions_refused(store: AuditStore) -> None:
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


def test_mark_interrupted(store: AuditStore) -> None:
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


def test_reopen_sees_everything(tmp_path: Path) -> None:
    path = tmp_path / "gate.db"
    with AuditStore(path) as store:
        _accept(store, "e1", created_at="2024-01-01T00:00:00+00:00")
        _accept(store, "e2", created_at="2024-01-02T00:00:00+00:00")
        store.record_result("e1", _verdict())
        before = store.list()
    with AuditStore(str(path)) as again:
        assert again.path == path
        assert again.count() == 2
        assert again.list() == before
        again.record_result("e2", _verdict(Decision.FAIL))
    with AuditStore(path) as third:
        assert [r.decision for r in third.list()] == ["FAIL", "PASS"]


def test_closed_store_refuses(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "gate.db")
    store.close()
    store.close()
    with pytest.raises(InternalError, match="closed"):
        store.count()


def test_concurrent_writers(store: AuditStore) -> None:
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


def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "gate.db"
    AuditStore(path).close()
    raw = _raw(path)
    raw.execute("PRAGMA user_version = 7")
    raw.close()
    with pytest.raises(InternalError, match=r"gate\.db.*version 7.*version 1"):
        AuditStore(path)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "gate.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InternalError, match=r"gate\.db"):
        AuditStore(path)
