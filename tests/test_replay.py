"""Policy replay: recorded evaluations judged again by another policy from what they
stored, without a model (ONNX Runtime is not even imported), from an audit database
(`gate replay --data-dir`) and through the service (ReplayPolicy)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from gate._proto.gate.v1 import gate_pb2 as pb
from gate.cli import main
from gate.policy import parse_policy
from gate.replay import ReplayReport, rejudge, replay_records
from gate.store import EvaluationRecord
from tests.conftest import ROOT, Served
from tests.models import lookup_model, one_hot_rows, predictions_for, table_model

LENIENT = "version: 1\nname: lenient\nrules:\n  - {id: some-accuracy, type: metric, metric: accuracy, min: 0.3}\n"
# the tutorial set predicted by class: the second model answers cat for every dog
MODELS = {
    "good.onnx": lookup_model(3),
    "dog-blind.onnx": table_model(one_hot_rows([0, 0, 2], 3)),
    "good-probabilities.onnx": lookup_model(3, probabilities=True),
}


def _three_evaluations(s: Served) -> dict[str, str]:
    """Each model evaluated once under the lenient policy: its evaluation id by file name."""
    ids = {}
    with s.client() as client:
        for name, data in MODELS.items():
            sha = client.upload_model(data, filename=name).sha256
            evaluation = client.evaluate(sha, "pets", policy_yaml=LENIENT, model_name=name)
            assert evaluation.verdict.decision == pb.PASS
            ids[name] = evaluation.evaluation_id
    return ids


def _replay_without_onnxruntime(*argv: str) -> tuple[int, str, list[str]]:
    """`gate replay ...` in a fresh interpreter: its exit code, stdout, and which of
    ONNX Runtime's modules it imported (a model cannot run without them)."""
    code = (
        "import sys, io, contextlib\n"
        "from gate.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    rc = main({list(argv)!r})\n"
        "print(rc); print(sorted(m for m in sys.modules if m.split('.')[0] == 'onnxruntime')); print(out.getvalue())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    rc, modules, stdout = done.stdout.split("\n", 2)
    return int(rc), stdout, json.loads(modules.replace("'", '"'))


def test_replay_lists_exactly_what_the_default_policy_would_block(serve: Callable[..., Served]) -> None:
    s = serve()
    ids = _three_evaluations(s)
    data = s.root / "data"
    default = str(ROOT / "policies" / "default.yaml")

    rc, out, imported = _replay_without_onnxruntime(
        "replay", "--policy", default, "--data-dir", str(data), "--format", "json"
    )
    assert rc == 0 and imported == []  # no ONNX Runtime, so no inference session, was ever created
    report = json.loads(out)
    assert report["summary"] == "3 evaluations: 1 would now FAIL, 0 would now PASS"
    rows = {r["evaluation_id"]: r for r in report["evaluations"]}
    assert [i for i, r in rows.items() if r["new"] == "FAIL"] == [ids["dog-blind.onnx"]]
    blocked = rows[ids["dog-blind.onnx"]]
    assert (blocked["old"], blocked["change"]) == ("PASS", "now FAIL")
    assert "recall-floor" in blocked["changed"] and any("dog" in b for b in blocked["blocking"])
    assert all(rows[ids[n]]["change"] == "same" for n in ("good.onnx", "good-probabilities.onnx"))

    rc, text, _ = _replay_without_onnxruntime("replay", "--policy", default, "--data-dir", str(data))
    assert rc == 0 and text.rstrip().endswith("3 evaluations: 1 would now FAIL, 0 would now PASS")
    assert f"{ids['dog-blind.onnx'][:12]}" in text and "PASS -> FAIL  (now FAIL)" in text
    rc, markdown, _ = _replay_without_onnxruntime(
        "replay", "--policy", default, "--data-dir", str(data), "--format", "markdown"
    )
    assert rc == 0 and "**3 evaluations: 1 would now FAIL, 0 would now PASS**" in markdown

    # the same through the service
    with s.client() as client:
        reply = client.call("ReplayPolicy", pb.ReplayPolicyRequest(policy_name="default", dataset="pets"))
    assert (reply.evaluations, reply.now_fail, reply.now_pass, reply.not_replayable) == (3, 1, 0, 0)
    served = ReplayReport.from_dict(json.loads(reply.report_json))
    assert [r.evaluation_id for r in served.rows if r.new == "FAIL"] == [ids["dog-blind.onnx"]]


def test_replay_through_the_cli_from_a_server(serve: Callable[..., Served], capsys: pytest.CaptureFixture[str]) -> None:
    s = serve()
    _three_evaluations(s)
    code = main(
        ["replay", "--policy", str(ROOT / "policies" / "default.yaml"), "--server", s.address, "--since", "2000-01-01"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.rstrip().endswith("3 evaluations: 1 would now FAIL, 0 would now PASS")
    code = main(
        ["replay", "--policy", str(ROOT / "policies" / "default.yaml"), "--server", s.address, "--since", "2999-01-01"]
    )
    out, _ = capsys.readouterr()
    assert code == 0 and out.rstrip().endswith("0 evaluations: 0 would now FAIL, 0 would now PASS")


def _record(evaluation_id: str, verdict: dict[str, Any] | None) -> EvaluationRecord:
    return EvaluationRecord(
        evaluation_id=evaluation_id,
        state="done" if verdict is not None else "running",
        created_at="2031-01-01T00:00:00+00:00",
        finished_at=None,
        model_sha256="a" * 64,
        model_name=None,
        dataset="pets",
        policy="lenient",
        labels={},
        requested_provider="cpu",
        verdict=verdict,
    )


def _stored_verdict() -> dict[str, Any]:
    cm = [[50, 2, 3], [4, 45, 1], [2, 3, 40]]
    from gate.metrics import ClassificationMetrics

    metrics = ClassificationMetrics.from_confusion(cm, ["cat", "dog", "rabbit"]).to_dict()
    return {
        "schema": "gate.verdict/v1",
        "verdict": "PASS",
        "model": {"sha256": "a" * 64},
        "dataset": {"name": "pets", "sha256": "b" * 64, "classes": ["cat", "dog", "rabbit"]},
        "runtime": {"provider": "CPUExecutionProvider"},
        "metrics": metrics,
        "rules": [{"id": "some-accuracy", "status": "pass"}],
        "started_at": "2031-01-01T00:00:00+00:00",
    }


def test_evaluations_whose_evidence_is_gone_are_listed_with_the_reason() -> None:
    good = _stored_verdict()
    records = [
        _record("running", None),
        _record("errored", {**good, "verdict": "ERROR", "metrics": None}),
        _record("no-matrix", {**good, "metrics": {"samples": 150}}),
        _record("fine", good),
    ]
    leakage = parse_policy(
        "version: 1\nname: leak\nrules:\n  - {id: no-leaks, type: leakage, max_hamming: 4, max_overlap: 0}\n",
        source="<t>",
    )
    report = replay_records(records, parse_policy((ROOT / "policies" / "default.yaml").read_text(), source="<t>"))
    reasons = {r.evaluation_id: r.reason for r in report.rows}
    assert reasons["running"] == "it has not finished"
    assert reasons["errored"] == "it ended ERROR: no metrics were judged"
    assert reasons["no-matrix"] == "its verdict holds no confusion matrix"
    assert reasons["fine"] is None and report.rows[-1].new == "PASS"
    assert report.summary() == "4 evaluations: 0 would now FAIL, 0 would now PASS, 3 not replayable"
    latency = parse_policy(
        "version: 1\nname: l\nrules:\n  - {id: fast, type: latency, percentile: 99, max_ms: 10}\n", source="<t>"
    )
    slow = replay_records([records[-1]], latency).rows[0]
    assert slow.new is None and "rule 'fast' (latency) cannot be judged from what the evaluation stored" in str(
        slow.reason
    )
    gone = replay_records([records[-1]], leakage).rows[0]
    assert gone.new is None and "needs the training fingerprint, which evaluations do not keep" in str(gone.reason)
    unknown = parse_policy(
        "version: 1\nname: u\nrules:\n  - {id: r, type: per_class, metric: recall, classes: {hamster: 0.5}}\n",
        source="<t>",
    )
    assert "hamster" in str(replay_records([records[-1]], unknown).rows[0].reason)


def test_baseline_rules_need_both_tables() -> None:
    doc = {**_stored_verdict(), "baseline": {"model": {"sha256": "c" * 64}}}
    champion = parse_policy(
        "version: 1\nname: c\nrules:\n  - {id: no-worse, type: baseline, metric: accuracy, max_drop: 0.01}\n",
        source="<t>",
    )
    row = replay_records([_record("x", doc)], champion, tables=lambda *_: None).rows[0]
    assert row.new is None and "needs the predictions table of model aaaaaaaaaaaa, which is no longer kept" in str(
        row.reason
    )


def test_recorded_waivers_apply_as_they_did_then() -> None:
    doc = _stored_verdict()
    doc["waivers"] = [
        {
            "id": "w1",
            "rule": "floor",
            "reason": "hotfix",
            "expires_at": "2031-01-02T00:00:00+00:00",
            "granted_by": "ops",
            "granted_at": "2030-12-31T00:00:00+00:00",
        }
    ]
    strict = parse_policy(
        "version: 1\nname: s\nrules:\n  - {id: floor, type: metric, metric: accuracy, min: 0.95}\n", source="<t>"
    )
    verdict = rejudge(doc, strict)
    assert verdict.decision.value == "PASS" and verdict.rules[0].outcome is not None
    later = rejudge({**doc, "started_at": "2031-01-03T00:00:00+00:00"}, strict)
    assert later.decision.value == "FAIL"


def test_a_slice_rule_is_judged_on_the_kept_predictions_table(
    serve: Callable[..., Served], capsys: pytest.CaptureFixture[str]
) -> None:
    s = serve()
    x, y = predictions_for([[40, 0], [10, 30]])  # the dog errors are samples of both sites
    (s.root / "sited").mkdir()
    np.savez(s.root / "sited" / "set.npz", x=x, y=y, classes=np.array(["cat", "dog"]))
    sites = "".join(f"{i},{'north' if y[i] == 1 and x[i, 0] == 0 else 'south'}\n" for i in range(len(y)))
    (s.root / "sited" / "meta.csv").write_text("index,site\n" + sites)
    (s.root / "datasets" / "sited.yaml").write_text(
        "name: sited\nsource: ../sited/set.npz\nmetadata: ../sited/meta.csv\n"
    )
    with s.client() as client:
        client.reload()
        sha = client.upload_model(lookup_model(2)).sha256
        assert client.evaluate(sha, "sited", policy_yaml=LENIENT).verdict.decision == pb.PASS
    policy = s.root / "by-site.yaml"
    policy.write_text(
        "version: 1\nname: by-site\nrules:\n"
        "  - {id: site-accuracy, type: per_slice, slice: site, metric: accuracy, min: 0.5, min_support: 5}\n"
    )
    argv = ["replay", "--policy", str(policy), "--data-dir", str(s.root / "data"), "--format", "json"]
    assert main(argv) == 0
    (row,) = json.loads(capsys.readouterr().out)["evaluations"]
    assert (row["old"], row["new"]) == ("PASS", "FAIL")  # north holds only the misread dogs
    assert any("north" in b for b in row["blocking"])
    shutil.rmtree(s.root / "data" / "cache")
    assert main(argv) == 0
    (row,) = json.loads(capsys.readouterr().out)["evaluations"]
    assert row["new"] is None and row["reason"].endswith("its predictions table is no longer kept")


def test_a_top_k_rule_is_judged_on_the_kept_predictions_table(
    serve: Callable[..., Served], tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    s = serve()
    model = tmp_path / "m.onnx"
    model.write_bytes(lookup_model(3))
    with s.client() as client:
        sha = client.upload_model(model.read_bytes()).sha256
        assert client.evaluate(sha, "pets", policy_yaml=LENIENT).verdict.decision == pb.PASS
    policy = tmp_path / "top2.yaml"
    policy.write_text(
        "version: 1\nname: top2\nrules:\n  - {id: top2, type: metric, metric: top_2_accuracy, min: 0.95}\n"
    )
    # the oracle: the same model judged afresh by the same policy on the same set
    spec = s.root / "datasets" / "pets.yaml"
    code = main(["eval", "--model", str(model), "--dataset", str(spec), "--policy", str(policy), "--format", "json"])
    fresh = json.loads(capsys.readouterr().out)
    argv = ["replay", "--policy", str(policy), "--data-dir", str(s.root / "data"), "--format", "json"]
    assert main(argv) == 0
    (row,) = json.loads(capsys.readouterr().out)["evaluations"]
    assert code == 1 and (row["old"], row["new"]) == ("PASS", "FAIL")
    assert row["blocking"] == [f"top2: {fresh['rules'][0]['message']}"]  # top_2_accuracy 0.947 < 0.950
    shutil.rmtree(s.root / "data" / "cache")
    assert main(argv) == 0
    (row,) = json.loads(capsys.readouterr().out)["evaluations"]
    assert row["new"] is None and "no longer kept" in row["reason"]


def test_a_malformed_recorded_verdict_is_that_rows_problem_only() -> None:
    """A recorded verdict of another form (a section that is not an object, no model
    SHA-256, a waiver whose times cannot be read) is listed as not replayable; the
    evaluations beside it are still judged."""
    strict = parse_policy(
        "version: 1\nname: s\nrules:\n  - {id: floor, type: metric, metric: accuracy, min: 0.95}\n", source="<t>"
    )
    waiver = {
        "id": "w1",
        "rule": "floor",
        "reason": "x",
        "granted_by": "ops",
        "granted_at": "2030-12-31T00:00:00+00:00",
    }
    good = _stored_verdict()
    records = [
        _record("dataset-text", {**good, "dataset": "pets"}),
        _record("no-model", {**good, "model": None}),
        _record("waiver-expiry", {**good, "waivers": [{**waiver, "expires_at": "soon"}]}),
        _record(
            "waiver-grant",
            {**good, "waivers": [{**waiver, "expires_at": "2031-01-02T00:00:00+00:00"} | {"granted_at": None}]},
        ),
        _record("fine", good),
    ]
    rows = {r.evaluation_id: r for r in replay_records(records, strict).rows}
    assert rows["dataset-text"].reason == "its verdict's 'dataset' is not an object"
    assert rows["no-model"].reason == "its verdict names no model SHA-256"
    assert rows["waiver-expiry"].reason == "its recorded waiver 'w1' has no valid grant or expiry time"
    assert rows["waiver-grant"].reason == "its recorded waiver 'w1' has no valid grant or expiry time"
    assert rows["fine"].new == "FAIL" and rows["fine"].reason is None
