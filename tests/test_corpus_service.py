"""Attacks on the service, each through a real server on a free port (see the section
"Attacks: the service" of docs/bad-input-corpus.md, which lists every case here with its
outcome: `doc_expectations`).

The audit log cases make the real SQLite database refuse writes while an evaluation
runs, on the store's own connection: ``PRAGMA max_page_count`` (the file cannot grow: a
disk that is full) and ``PRAGMA query_only`` (no write at all). No mock stands in for the
database, the server or the worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from gate._proto.gate.v1 import gate_pb2 as pb
from tests.conftest import Served
from tests.test_isolation import start_slow


def doc_expectations() -> dict[str, tuple[str, ...]]:
    """Each case of this module: the fragments its row in the doc must hold."""
    return {**_audit_log_expectations()}


# -- the audit log refuses the verdict ---------------------------------------------------------


def _audit_log_expectations() -> dict[str, tuple[str, ...]]:
    return {
        "service-audit-log-full": ("2 ERROR", "InternalError", "could not be recorded in the audit log"),
        "service-audit-log-refuses-writes": ("`INTERNAL`", "InternalError", "once the audit log takes writes again"),
    }


def _audit_pragma(s: Served, pragma: str) -> Any:
    """Run ``pragma`` on the audit store's own SQLite connection (the one that records verdicts)."""
    store: Any = s.server.store
    with store._lock:
        row = store._conn.execute(pragma).fetchone()
    return None if row is None else tuple(row)


def _recorded(s: Served, evaluation_id: str) -> pb.EvaluationRecord:
    with s.client() as c:
        return c.get_verdict(evaluation_id)


def test_service_audit_log_full(serve: Callable[..., Served]) -> None:
    """The disk fills while the evaluation runs: its PASS cannot be recorded, so the client
    gets (signed) the ERROR that is recorded in its place, naming the cause."""
    s = serve()
    channel, call, evaluation_id = start_slow(s, "pets-large")
    pages = _audit_pragma(s, "PRAGMA page_count")[0]
    assert _audit_pragma(s, f"PRAGMA max_page_count = {pages}") == (pages,)
    events = list(call)
    channel.close()
    verdict = events[-1].verdict
    assert verdict.decision == pb.ERROR and verdict.evaluation_id == evaluation_id
    assert verdict.error.type == "InternalError"
    assert verdict.error.message.startswith("the PASS verdict could not be recorded in the audit log: audit log ")
    assert verdict.error.message.endswith("database or disk is full")
    assert not verdict.rules and not verdict.HasField("metrics")  # nobody can stand behind them
    statement = json.loads(verdict.attestation_json)["statement"]
    assert (statement["verdict"], statement["evaluation_id"]) == ("ERROR", evaluation_id)
    record = _recorded(s, evaluation_id)
    assert record.state == "done"
    assert json.loads(record.verdict.verdict_json) == json.loads(verdict.verdict_json)  # the client's, exactly
    with s.client() as c:
        assert c.health() == "SERVING"


def test_service_audit_log_refuses_writes(serve: Callable[..., Served]) -> None:
    """The log takes no write at all: the client gets an error status (no verdict the log
    lacks), and the record is closed with the same cause once the log takes writes again."""
    s = serve()
    channel, call, evaluation_id = start_slow(s, "pets-large")
    _audit_pragma(s, "PRAGMA query_only = ON")
    try:
        with pytest.raises(grpc.RpcError) as refused:
            list(call)
        assert _recorded(s, evaluation_id).state == "running"
    finally:
        _audit_pragma(s, "PRAGMA query_only = OFF")
        channel.close()
    assert refused.value.code() == grpc.StatusCode.INTERNAL
    details = refused.value.details() or ""
    prefix = f"evaluation {evaluation_id}: the PASS verdict could not be recorded in the audit log: audit log "
    assert details.startswith(prefix) and "attempt to write a readonly database" in details
    later = "; it will be recorded as ERROR once the audit log takes writes again"
    assert details.endswith(later)
    deadline = time.monotonic() + 30
    while (record := _recorded(s, evaluation_id)).state == "running":
        assert time.monotonic() < deadline, "the record stayed open after the audit log took writes again"
        time.sleep(0.1)
    assert record.state == "done" and record.verdict.decision == pb.ERROR
    error = json.loads(record.verdict.verdict_json)["error"]
    assert error["type"] == "InternalError"
    assert details == f"evaluation {evaluation_id}: {error['message']}{later}"  # the cause the client was given
