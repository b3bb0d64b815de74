"""Waivers end to end on a real server: a FAIL, a waiver refused to a submit token and
granted to an admin, a PASS that names it everywhere (JSON, JUnit, Markdown, HTML, text,
the signed attestation, `gate verify`), FAIL again after its expiry on the server's
clock and after a revocation, and every step in the audit log."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from gate.attest import load_public_key, verify_attestation
from gate.cli import main
from gate.client import GateClient
from gate.report import render_html, render_junit, render_markdown, render_text
from gate.store import open_store
from gate.store.base import incomplete_pass
from gate.verdict import Decision, RuleResult, Severity, Status, Verdict, decide
from tests.conftest import Served
from tests.models import lookup_model

SUBMIT_TOKEN = "submit-token-waivers-1"
ADMIN_TOKEN = "admin-token-waivers-2"
TOKENS = [
    {"name": "ci-pipeline", "sha256": hashlib.sha256(SUBMIT_TOKEN.encode()).hexdigest(), "roles": ["submit"]},
    {"name": "release-manager", "sha256": hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest(), "roles": ["admin"]},
]
# rabbit's recall on the tutorial set is 40/45 = 0.889: this floor blocks it, and only it
STRICT = """
version: 1
name: strict-recall
rules:
  - id: recall-floor
    type: per_class
    metric: recall
    min: 0.9
  - id: accuracy
    type: metric
    metric: accuracy
    min: 0.5
"""
START = dt.datetime(2031, 3, 1, 12, 0, tzinfo=dt.UTC)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _evaluate(client: GateClient, sha: str) -> tuple[dict[str, Any], str]:
    evaluation = client.evaluate(sha, "pets", policy_yaml=STRICT)
    assert evaluation.attestation is not None
    return evaluation.document, evaluation.attestation


def _waive(capsys: pytest.CaptureFixture[str], s: Served, sha: str, expires: str) -> tuple[int, str, str]:
    return _cli(
        capsys,
        "waive",
        "--server",
        s.address,
        "--model",
        sha,
        "--dataset",
        "pets",
        "--rule",
        "recall-floor",
        "--reason",
        "hotfix INC-4711: rabbit recall recovers in 2.3",
        "--expires",
        expires,
        "--format",
        "json",
    )


def test_waiver_lifecycle(
    serve: Callable[..., Served], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = serve(tokens=TOKENS)
    now = [START]
    s.server.servicer.evaluations.clock = lambda: now[0]  # the test's clock: expiry without waiting
    with GateClient(s.address, timeout=60, token=SUBMIT_TOKEN) as ci:
        sha = ci.upload_model(lookup_model(3), filename="candidate.onnx").sha256
        failed, _ = _evaluate(ci, sha)
    assert failed["verdict"] == "FAIL"
    assert [r["status"] for r in failed["rules"]] == ["fail", "pass"]

    # a submit token may not waive; an admin token may
    monkeypatch.setenv("GATE_TOKEN", SUBMIT_TOKEN)
    code, out, err = _waive(capsys, s, sha, "2031-03-05")
    assert code == 2 and out == "" and "PERMISSION_DENIED" in err and "'admin' role" in err
    monkeypatch.setenv("GATE_TOKEN", ADMIN_TOKEN)
    code, out, err = _waive(capsys, s, sha, "2031-03-05")
    assert code == 0, err
    granted = json.loads(out)
    assert granted["state"] == "active" and granted["granted_by"] == "release-manager"
    assert granted["expires_at"] == "2031-03-06T00:00:00+00:00"  # a date holds through that day

    with GateClient(s.address, timeout=60, token=SUBMIT_TOKEN) as ci:
        passed, attestation = _evaluate(ci, sha)
        kept = ci.get_verdict(passed["evaluation_id"]).verdict.attestation_json
    _check_waived_pass(passed, granted["id"])
    _check_reports(Verdict.from_dict(passed))
    _check_attestation(s, capsys, attestation, kept, sha)

    # past the expiry, on the server's clock, the same model fails again
    now[0] = dt.datetime(2031, 3, 6, 0, 0, 1, tzinfo=dt.UTC)
    with GateClient(s.address, timeout=60, token=SUBMIT_TOKEN) as ci:
        expired, _ = _evaluate(ci, sha)
    assert expired["verdict"] == "FAIL" and "waivers" not in expired
    assert expired["rules"][0]["status"] == "fail"

    # a revoked waiver stops applying at once
    code, out, err = _waive(capsys, s, sha, "2031-03-20")
    second = json.loads(out)["id"]
    code, out, err = _cli(
        capsys, "waivers", "revoke", second, "--server", s.address, "--reason", "fixed in 2.3", "--format", "json"
    )
    assert code == 0 and json.loads(out)["state"] == "revoked", err
    code, _, err = _cli(capsys, "waivers", "revoke", second, "--server", s.address, "--reason", "again")
    assert code == 2 and "already revoked" in err
    with GateClient(s.address, timeout=60, token=SUBMIT_TOKEN) as ci:
        revoked, _ = _evaluate(ci, sha)
    assert revoked["verdict"] == "FAIL"

    monkeypatch.setenv("GATE_TOKEN", SUBMIT_TOKEN)  # listing needs only submit
    code, out, err = _cli(capsys, "waivers", "list", "--server", s.address, "--format", "json")
    assert code == 0, err
    assert [(w["id"], w["state"]) for w in json.loads(out)] == [(second, "revoked"), (granted["id"], "expired")]
    code, out, _ = _cli(capsys, "waivers", "list", "--server", s.address)
    assert "hotfix INC-4711" in out and "release-manager" in out

    _check_audit_log(s, [failed, passed, expired, revoked], granted["id"], second)


def _check_waived_pass(doc: dict[str, Any], waiver_id: str) -> None:
    assert doc["verdict"] == "PASS"
    rule = doc["rules"][0]
    assert (rule["status"], rule["outcome"], rule["waiver"]["id"]) == ("waived", "fail", waiver_id)
    assert "hotfix INC-4711" in rule["message"] and "rabbit" in rule["message"]  # the real finding stays
    assert [w["id"] for w in doc["waivers"]] == [waiver_id]
    assert doc["summary"]["waived"] == 1 and doc["summary"]["blocking"] == 0


def _check_reports(verdict: Verdict) -> None:
    junit = render_junit(verdict)
    assert (
        '<skipped message="waived (fail) until 2031-03-06T00:00:00+00:00 by release-manager: hotfix INC-4711' in junit
    )
    assert "<failure" not in junit
    for rendered in (render_markdown(verdict), render_html(verdict), render_text(verdict)):
        assert "Waivers" in rendered and "hotfix INC-4711" in rendered and "release-manager" in rendered
        assert "passed or were waived (1 waived: recall-floor)" in rendered  # the headline does not hide it


def _check_attestation(s: Served, capsys: pytest.CaptureFixture[str], attestation: str, kept: str, sha: str) -> None:
    assert kept == attestation  # GetVerdict returns the attestation the audit log kept
    public = s.root / "data" / "signing" / "ed25519.pub"
    checked = verify_attestation(attestation, load_public_key(public), sha)
    assert checked.ok and checked.statement is not None
    assert [w["rule"] for w in checked.statement["waivers"]] == ["recall-floor"]
    path, model = s.root / "attestation.json", s.root / "candidate.onnx"
    path.write_text(attestation)
    model.write_bytes(lookup_model(3))
    code, out, err = _cli(
        capsys, "verify", "--attestation", str(path), "--model", str(model), "--public-key", str(public)
    )
    assert code == 0, err
    assert "verified PASS" in out and "1 waiver(s)" in out and "recall-floor" in out and "hotfix INC-4711" in out


def _check_audit_log(s: Served, docs: list[dict[str, Any]], first: str, second: str) -> None:
    with open_store(s.root / "data" / "audit.sqlite3") as store:
        records = list(reversed(store.list()))
        assert [r.decision for r in records] == ["FAIL", "PASS", "FAIL", "FAIL"]
        assert [r.evaluation_id for r in records] == [d["evaluation_id"] for d in docs]
        assert all(store.attestation(r.evaluation_id) for r in records)
        waivers = {w.id: w for w in store.waivers()}
    assert set(waivers) == {first, second}
    assert waivers[first].granted_by == "release-manager" and waivers[first].revoked_at is None
    assert waivers[second].revoked_by == "release-manager" and waivers[second].revoke_reason == "fixed in 2.3"


# -- the rules of deciding -------------------------------------------------------------------


def _waived(outcome: Status, expires: str) -> RuleResult:
    return RuleResult(
        "r",
        "metric",
        Status.WAIVED,
        Severity.BLOCK,
        "waived",
        outcome=outcome,
        waiver={"id": "w", "rule": "r", "expires_at": expires},
    )


def test_decide_lets_a_waived_rule_pass_only_while_its_waiver_holds() -> None:
    ok = RuleResult("ok", "metric", Status.PASS, Severity.BLOCK, "fine")
    at = START
    assert decide([ok, _waived(Status.FAIL, "2031-03-02T00:00:00+00:00")], at=at) is Decision.PASS
    assert decide([ok, _waived(Status.INCONCLUSIVE, "2031-03-02T00:00:00+00:00")], at=at) is Decision.PASS
    assert decide([ok, _waived(Status.FAIL, "2031-03-01T12:00:00+00:00")], at=at) is Decision.FAIL  # expired
    assert decide([ok, _waived(Status.FAIL, "2031-03-02T00:00:00")], at=at) is Decision.FAIL  # no offset
    assert decide([ok, _waived(Status.FAIL, "soon")], at=at) is Decision.FAIL
    assert decide([ok, _waived(Status.PASS, "2031-03-02T00:00:00+00:00")], at=at) is Decision.FAIL
    assert decide([ok, _waived(Status.ERROR, "2031-03-02T00:00:00+00:00")], at=at) is Decision.ERROR
    bare = RuleResult("r", "metric", Status.WAIVED, Severity.BLOCK, "no waiver", outcome=Status.FAIL)
    assert decide([ok, bare], at=at) is Decision.FAIL


def test_summary_counts_waived_only_when_present() -> None:
    ok = RuleResult("ok", "metric", Status.PASS, Severity.BLOCK, "fine")
    assert "waived" not in Verdict(Decision.PASS, rules=[ok]).summary()
    waived = Verdict(Decision.PASS, rules=[ok, _waived(Status.FAIL, "2031-03-02T00:00:00+00:00")])
    assert waived.summary()["waived"] == 1
    again = Verdict.from_dict(waived.to_dict())
    assert again.rules[1].outcome is Status.FAIL and again.rules[1].waiver == {
        "id": "w",
        "rule": "r",
        "expires_at": "2031-03-02T00:00:00+00:00",
    }


def test_the_audit_log_refuses_a_pass_whose_waiver_it_does_not_name() -> None:
    rule = _waived(Status.FAIL, "2031-03-02T00:00:00+00:00").to_dict()
    doc = {"metrics": {}, "error": None, "rules": [rule], "waivers": [{"id": "w"}]}
    assert incomplete_pass(doc) is None
    assert incomplete_pass({**doc, "waivers": []}) is not None
    assert incomplete_pass({**doc, "rules": [{**rule, "outcome": "error"}]}) is not None
    assert incomplete_pass({**doc, "rules": [{**rule, "waiver": {**rule["waiver"], "rule": "other"}}]}) is not None
