"""Waivers and attestations in the audit log, on SQLite and PostgreSQL: recorded, listed,
revoked once, and append-only against any writer."""

from __future__ import annotations

import datetime as dt

import pytest

from gate.errors import InternalError, NotFoundError, RequestError
from gate.store import AuditLog
from gate.verdict import Decision
from gate.waivers import new_waiver
from tests import test_store as store_suite
from tests.test_store import Backend

# the store suite's fixtures and helpers: every test runs on SQLite and on PostgreSQL
backend, store = store_suite.backend, store_suite.store
_accept, _verdict = store_suite._accept, store_suite._verdict

NOW = dt.datetime(2031, 3, 1, 12, 0, tzinfo=dt.UTC)


def _grant(store: AuditLog, rule: str, *, model: str = "a" * 64) -> str:
    waiver = new_waiver(
        model_sha256=model,
        dataset="pets",
        rule_id=rule,
        reason=f"hotfix for {rule}",
        expires="2031-03-05",
        granted_by="release-manager",
        now=NOW,
    )
    store.record_waiver(waiver)
    return waiver.id


def test_waivers_are_recorded_listed_and_revoked_once(backend: Backend, store: AuditLog) -> None:
    first = _grant(store, "recall-floor")
    second = _grant(store, "precision-floor", model="b" * 64)
    assert {w.id for w in store.waivers()} == {first, second}
    (only,) = store.waivers(model_sha256="a" * 64, dataset="pets")
    assert (only.id, only.rule_id, only.expires_at, only.state(NOW)) == (
        first,
        "recall-floor",
        "2031-03-06T00:00:00+00:00",
        "active",
    )
    revoked = store.record_revocation(first, revoked_by="ops", reason="fixed", revoked_at="2031-03-02T00:00:00+00:00")
    assert revoked.state(NOW) == "active" and revoked.state(dt.datetime(2031, 3, 2, tzinfo=dt.UTC)) == "revoked"
    with pytest.raises(RequestError, match="already revoked"):
        store.record_revocation(first, revoked_by="ops", reason="again", revoked_at="2031-03-03T00:00:00+00:00")
    with pytest.raises(NotFoundError, match="no waiver"):
        store.record_revocation("0" * 32, revoked_by="ops", reason="x", revoked_at="2031-03-03T00:00:00+00:00")
    with backend.raw() as raw:
        for sql in (
            "UPDATE waivers SET expires_at = '2099-01-01T00:00:00+00:00'",
            "DELETE FROM waiver_revocations",
            "DELETE FROM waivers",
        ):
            with pytest.raises(raw.errors, match="append-only"):
                raw.execute(sql)
        if backend.kind == "postgresql":
            with pytest.raises(raw.errors, match="append-only"):
                raw.execute("TRUNCATE waiver_revocations")


def test_attestations_are_kept_for_recorded_results_only(backend: Backend, store: AuditLog) -> None:
    _accept(store, "e1")
    with pytest.raises(InternalError, match="it has no recorded result"):
        store.record_attestation("e1", "{}")
    store.record_result("e1", _verdict(Decision.FAIL))
    assert store.attestation("e1") is None
    store.record_attestation("e1", '{"statement": {}}\n')
    assert store.attestation("e1") == '{"statement": {}}\n'
    with pytest.raises(InternalError, match="it already has one"):
        store.record_attestation("e1", "{}")
    with backend.raw() as raw, pytest.raises(raw.errors, match="append-only"):
        raw.execute("UPDATE attestations SET attestation_json = 'forged'")
