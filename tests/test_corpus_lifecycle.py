"""The bad-input corpus, waivers, replay and diff: careless or hostile inputs to `gate
waive`, `gate waivers`, `gate replay` and `gate diff`, each run through the command line
against a real server or audit database, with its exact exit code and message;
``docs/bad-input-corpus.md`` lists every case (see ``doc_expectations``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gate.cli import main
from gate.client import GateClient
from tests.conftest import Served
from tests.models import lookup_model

ADMIN_TOKEN = "admin-token-corpus-lifecycle"
TOKENS = [{"name": "ops", "sha256": hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest(), "roles": ["admin"]}]


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # {server}, {sha}, {data}, {dir} are filled in
    code: int
    message: str  # a fragment of stderr
    status: str = ""  # the gRPC status a server case ends with


def _waive(
    reason: str = "x", expires: str = "2031-01-01", *, model: str = "{sha}", dataset: str = "pets"
) -> tuple[str, ...]:
    return (
        "waive",
        "--server",
        "{server}",
        "--model",
        model,
        "--dataset",
        dataset,
        "--rule",
        "recall-floor",
        "--reason",
        reason,
        "--expires",
        expires,
    )


def _refused(case_id: str, argv: tuple[str, ...], message: str, status: str = "INVALID_ARGUMENT") -> Case:
    return Case(case_id, argv, 2, message, status)


CASES = [
    _refused("waiver-expires-in-the-past", _waive(expires="2020-01-01"), "is not in the future"),
    _refused("waiver-expires-in-9999", _waive(expires="9999-12-31"), "more than 180 days away"),
    _refused("waiver-expires-without-offset", _waive(expires="2031-01-01T10:00"), "has no UTC offset"),
    _refused("waiver-expires-not-a-date", _waive(expires="next friday"), "is not a date (YYYY-MM-DD)"),
    _refused("waiver-blank-reason", _waive("   "), "reason is empty"),
    _refused("waiver-reason-control-characters", _waive("ok\x1b[2Jcleared"), "reason holds control characters"),
    _refused("waiver-model-path-not-hash", _waive(model="candidate.onnx"), "model='candidate.onnx' is not a SHA-256"),
    _refused("waiver-unknown-dataset", _waive(dataset="petz"), "no dataset 'petz' on this server", "NOT_FOUND"),
    Case(
        "waiver-revoke-unknown",
        ("waivers", "revoke", "0" * 32, "--server", "{server}", "--reason", "x"),
        2,
        "no waiver with id",
        "NOT_FOUND",
    ),
    Case(
        "replay-no-audit-database",
        ("replay", "--policy", "{dir}/lenient.yaml", "--data-dir", "{dir}/empty"),
        2,
        "no audit database at",
    ),
    Case(
        "replay-since-not-a-date",
        ("replay", "--policy", "{dir}/lenient.yaml", "--data-dir", "{data}", "--since", "last week"),
        2,
        "since='last week' is not a date",
    ),
    Case(
        "replay-quoted-threshold",
        ("replay", "--policy", "{dir}/quoted.yaml", "--data-dir", "{data}"),
        2,
        "a quoted number is text",
    ),
    Case(
        "diff-not-a-verdict",
        ("diff", "{dir}/lenient.yaml", "{dir}/lenient.yaml"),
        2,
        "is not a verdict JSON document (gate.verdict/v1)",
    ),
    Case(
        "diff-verdict-metrics-not-an-object",
        ("diff", "{dir}/verdict.json", "{dir}/metrics-list.json"),
        2,
        "metrics-list.json is not a verdict JSON document (gate.verdict/v1): 'metrics' is not an object",
    ),
    Case(
        "diff-verdict-rule-without-id",
        ("diff", "{dir}/verdict.json", "{dir}/rule-without-id.json"),
        2,
        "rule-without-id.json is not a verdict JSON document (gate.verdict/v1): 'rules' is not a list of objects",
    ),
    Case(
        "diff-predictions-not-utf8",
        ("diff", "{dir}/verdict.json", "{dir}/verdict.json", "--predictions-a", "{dir}/latin1.csv"),
        2,
        "latin1.csv is not a predictions CSV file: 'utf-8' codec can't decode",
    ),
]


def doc_expectations() -> dict[str, tuple[str, ...]]:
    """Each case of this module: the fragments its row in the doc must hold."""
    return {c.id: (f"{c.code} ERROR", *((f"`{c.status}`",) if c.status else ())) for c in CASES}


def _fill(argv: tuple[str, ...], values: dict[str, str]) -> list[str]:
    return [a.format(**values) if "{" in a else a for a in argv]


def test_lifecycle_corpus(
    serve: Callable[..., Served], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = serve(tokens=TOKENS)
    s.server.servicer.evaluations.clock = lambda: dt.datetime(2030, 12, 1, tzinfo=dt.UTC)  # expiries are relative
    monkeypatch.setenv("GATE_TOKEN", ADMIN_TOKEN)
    with GateClient(s.address, timeout=60, token=ADMIN_TOKEN) as client:
        sha = client.upload_model(lookup_model(3)).sha256
        client.evaluate(sha, "pets", policy_name="default")
    (tmp_path / "lenient.yaml").write_text(
        "version: 1\nname: lenient\nrules:\n  - {id: a, type: metric, metric: accuracy, min: 0.3}\n"
    )
    (tmp_path / "quoted.yaml").write_text(
        "version: 1\nname: quoted\nrules:\n  - {id: a, type: metric, metric: accuracy, min: '0.9'}\n"
    )
    _hand_edited_verdicts(tmp_path)
    values = {"server": s.address, "sha": sha, "data": str(s.root / "data"), "dir": str(tmp_path)}
    for case in CASES:
        code = main(_fill(case.argv, values))
        out, err = capsys.readouterr()
        assert (code, out) == (case.code, ""), f"{case.id}: {code} {out!r} {err!r}"
        assert case.message in err, f"{case.id}: {err!r}"
        if case.status:
            assert case.status in err, f"{case.id}: {err!r}"


def _hand_edited_verdicts(folder: Path) -> None:
    """A verdict file, two hand-edited copies that `gate diff` cannot read, and a
    predictions file saved in Latin-1."""
    verdict = {"schema": "gate.verdict/v1", "verdict": "PASS", "metrics": {"accuracy": 0.9}, "rules": []}
    (folder / "verdict.json").write_text(json.dumps(verdict))
    (folder / "metrics-list.json").write_text(json.dumps({**verdict, "metrics": [0.9]}))
    (folder / "rule-without-id.json").write_text(json.dumps({**verdict, "rules": [{"status": "fail"}]}))
    (folder / "latin1.csv").write_bytes("sample_id,label,predicted\ncaf\u00e9.png,cat,cat\n".encode("latin-1"))
