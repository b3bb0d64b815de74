"""Suspected label errors: confident learning on the predictions table, end to end with
real ONNX models (tests/models.py), against cleanlab on the same probabilities, and the
suspects file of `gate eval` / `gate check --label-issues-out`."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from gate.cache import Caches, stored_predictions
from gate.cli import main
from gate.evaluation import evaluate
from gate.heldout.label_audit import audit_labels, table_probabilities
from gate.heldout.label_issues import SparseProbabilities, find_label_suspects
from gate.predictions import PredictionTable, probabilities
from tests.models import table_model

CLASSES = ["a", "b", "c", "d"]
N = 2000
LABEL_POLICY = "version: 1\nname: labels\nrules:\n  - {id: labels, type: label_quality, max_rate: 0.02}\n"


def _noisy_set(seed: int, *, k: int = 4, n: int = N, flip_rate: float = 0.05) -> dict[str, Any]:
    """A set whose labels are flipped at random for ``flip_rate`` of the samples, and the
    logits of a model that is right on the true labels (its top class is the true one)."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(0.0, 1.0, (n, k)).astype(np.float32)
    logits[np.arange(n), true] = logits.max(axis=1) + rng.uniform(1.0, 5.0, n).astype(np.float32)
    given = true.copy()
    flipped = rng.choice(n, round(flip_rate * n), replace=False)
    given[flipped] = (true[flipped] + rng.integers(1, k, len(flipped))) % k
    return {"true": true, "given": given, "logits": logits, "flipped": set(flipped.tolist())}


def _write_set(root: Path, name: str, labels: npt.NDArray[np.int64], classes: list[str]) -> Path:
    """An .npz set whose sample i holds x = i (the table model's row)."""
    path = root / f"{name}.npz"
    np.savez(path, x=np.arange(len(labels), dtype=np.float32)[:, None], y=labels, classes=np.array(classes))
    return path


def _model(root: Path, name: str, logits: npt.NDArray[np.float32]) -> Path:
    path = root / f"{name}.onnx"
    path.write_bytes(table_model(logits))
    return path


def _policy(root: Path, text: str = LABEL_POLICY) -> Path:
    path = root / "policy.yaml"
    path.write_text(text)
    return path


def _suspect_rows(verdict: dict[str, Any]) -> set[int]:
    return {int(i["sample_id"][2:-1]) for i in verdict["dataset_audit"]["label_issues"]["issues"]}


def test_five_percent_flipped_labels_are_found_and_fail_a_two_percent_ceiling(tmp_path: Path) -> None:
    case = _noisy_set(3)
    data = _write_set(tmp_path, "noisy", case["given"], CLASSES)
    v = evaluate(_model(tmp_path, "m", case["logits"]), data, _policy(tmp_path), provider="cpu").to_dict()
    assert v["verdict"] == "FAIL", v.get("error")
    found, flipped = _suspect_rows(v), case["flipped"]
    assert len(found & flipped) >= 0.9 * len(flipped)  # recall
    assert len(found & flipped) >= 0.9 * len(found)  # precision
    [rule] = v["rules"]
    rate = len(found) / N
    assert rule["status"] == "fail" and rule["observed"] == pytest.approx(rate)
    assert rule["message"].startswith(f"{len(found)} of {N} held-out labels ({rate:.2%}) are suspected wrong")
    assert f"rate {rate:.3f} > max_rate 0.020" in rule["message"]
    section = v["dataset_audit"]["label_issues"]
    assert section["count"] == len(found) and section["method"] == "confident_learning"
    issue = section["issues"][0]
    row = int(issue["sample_id"][2:-1])
    assert issue["given_label"] == CLASSES[case["given"][row]]
    assert issue["suggested_label"] == CLASSES[int(np.argmax(case["logits"][row]))]
    assert issue["confidence"] == pytest.approx(probabilities(case["logits"][row : row + 1])[0].max(), abs=1e-6)
    scores = [i["given_label_probability"] for i in section["issues"]]
    assert scores == sorted(scores)  # most doubtful first


def test_the_clean_set_passes(tmp_path: Path) -> None:
    case = _noisy_set(3)
    data = _write_set(tmp_path, "clean", case["true"], CLASSES)
    v = evaluate(_model(tmp_path, "m", case["logits"]), data, _policy(tmp_path), provider="cpu").to_dict()
    assert v["verdict"] == "PASS", v["rules"]
    assert v["dataset_audit"]["label_issues"]["count"] == 0


@pytest.mark.parametrize("seed", range(6))
def test_same_suspects_as_cleanlab_on_the_same_probabilities(tmp_path: Path, seed: int) -> None:
    cleanlab_filter = pytest.importorskip("cleanlab.filter")
    rng = np.random.default_rng(100 + seed)
    case = _noisy_set(seed, n=1500)
    # a weaker, noisier model than the acceptance case: more room for the two to differ
    case["logits"] = case["logits"] + rng.normal(0.0, 1.5, case["logits"].shape).astype(np.float32)
    data = _write_set(tmp_path, "noisy", case["given"], CLASSES)
    cache = Caches.at(tmp_path / "cache")
    model = _model(tmp_path, "m", case["logits"])
    table = _stored_table(cache, evaluate(model, data, _policy(tmp_path), provider="cpu", caches=cache).to_dict())
    dense = np.zeros((len(table), 4))
    np.put_along_axis(dense, table.top_k_class, table.top_k_score.astype(np.float64), axis=1)
    ours = find_label_suspects(table_probabilities(table)).mask
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns about small classes; the comparison does not care
        theirs = cleanlab_filter.find_label_issues(table.label, dense)
    assert np.array_equal(ours, theirs), (int(ours.sum()), int(theirs.sum()), int((ours ^ theirs).sum()))


def _stored_table(cache: Caches, verdict: dict[str, Any]) -> PredictionTable:
    """The predictions table the evaluation behind ``verdict`` stored in ``cache``."""
    table = stored_predictions(cache, verdict["model"]["sha256"], verdict["dataset"]["sha256"], "cpu")
    assert table is not None
    return table


def test_the_table_keeps_the_probability_of_the_given_label_beyond_the_top_five(tmp_path: Path) -> None:
    k, n = 9, 2000
    case = _noisy_set(5, k=k, n=n)
    data = _write_set(tmp_path, "nine", case["given"], [f"c{i}" for i in range(k)])
    cache = Caches.at(tmp_path / "cache")
    v = evaluate(_model(tmp_path, "m", case["logits"]), data, _policy(tmp_path), provider="cpu", caches=cache).to_dict()
    table = _stored_table(cache, v)
    assert table.top_k_class.shape == (n, 5) and table.label_score is not None
    probs = probabilities(case["logits"])
    np.testing.assert_allclose(table.label_score, probs[np.arange(n), case["given"]], rtol=1e-5, atol=1e-7)
    found, flipped = _suspect_rows(v), case["flipped"]
    # nine classes of about 220 samples: confident learning finds fewer flips (cleanlab too)
    assert len(found & flipped) >= 0.85 * len(flipped) and len(found & flipped) >= 0.95 * len(found)
    # what the table lacks (the probabilities below each sample's top five) changes nothing here
    every_class = find_label_suspects(SparseProbabilities.dense(case["given"], probs)).mask
    assert found == set(np.flatnonzero(every_class).tolist())
    cleanlab_filter = pytest.importorskip("cleanlab.filter")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = set(np.flatnonzero(cleanlab_filter.find_label_issues(case["given"], probs)).tolist())
    assert found == theirs


def test_a_champion_narrows_the_suspects_to_labels_both_models_contradict(tmp_path: Path) -> None:
    case = _noisy_set(7)
    data = _write_set(tmp_path, "noisy", case["given"], CLASSES)
    candidate = _model(tmp_path, "candidate", case["logits"])
    # a champion that learnt the given labels, wrong ones included: it contradicts none
    agreeing = np.full((N, 4), -2.0, dtype=np.float32)
    agreeing[np.arange(N), case["given"]] = 3.0
    champion = _model(tmp_path, "champion", agreeing)
    policy = _policy(tmp_path)
    alone = evaluate(candidate, data, policy, provider="cpu").to_dict()["dataset_audit"]["label_issues"]
    both = evaluate(candidate, data, policy, provider="cpu", baseline=champion).to_dict()
    section = both["dataset_audit"]["label_issues"]
    assert both["verdict"] == "PASS" and section["models"] == ["candidate", "champion"]
    assert section["count"] == 0 and section["candidate_only"] == alone["count"] > 0
    assert "the candidate's and the champion's probabilities" in both["rules"][0]["message"]
    # the same model as champion: the same suspects, now backed by both
    same = evaluate(candidate, data, policy, provider="cpu", baseline=candidate).to_dict()
    assert same["dataset_audit"]["label_issues"]["issues"] == alone["issues"]


def test_the_margin_the_policy_relies_on_is_named_and_judged(tmp_path: Path) -> None:
    case = _noisy_set(3)
    data = _write_set(tmp_path, "noisy", case["given"], CLASSES)
    accuracy = float(np.mean(case["given"] == case["true"]))  # the model is right on the true labels
    floor = round(accuracy - 0.01, 2)
    policy = _policy(
        tmp_path,
        "version: 1\nname: m\nrules:\n"
        f"  - {{id: acc, type: metric, metric: accuracy, min: {floor}}}\n"
        "  - {id: labels, type: label_quality}\n",
    )
    v = evaluate(_model(tmp_path, "m", case["logits"]), data, policy, provider="cpu").to_dict()
    rule = v["rules"][1]
    assert v["verdict"] == "FAIL" and rule["status"] == "fail"
    assert "the decision margin" in rule["message"] and "rule 'acc': accuracy" in rule["message"]
    assert "label errors could flip that rule" in rule["message"]
    margins = v["dataset_audit"]["label_issues"]["decision_margins"]
    assert margins == [
        {
            "rule": "acc",
            "metric": "accuracy",
            "observed": accuracy,
            "bound": floor,
            "side": "min",
            "margin": pytest.approx(accuracy - floor),
        }
    ]


def test_min_support_counts_what_is_left_once_suspects_are_set_aside() -> None:
    case = _noisy_set(3, n=400)
    from gate.predictions import build_table, ranked

    classes, scores, given = ranked(case["logits"], 4, case["given"])
    assert given is not None  # labels were given
    table = build_table(
        classes=CLASSES,
        sample_ids=[f"s{i}" for i in range(400)],
        labels=case["given"],
        predicted=classes[:, 0].copy(),
        confidence=scores[:, 0].copy(),
        top_class=classes,
        top_score=scores,
        label_score=given,
    )
    audit = audit_labels(table)
    support = np.bincount(case["given"], minlength=4)
    assert sum(audit.remaining().values()) == 400 - audit.count
    assert audit.remaining() == {c: int(support[i]) - audit.suspects_per_class.get(c, 0) for i, c in enumerate(CLASSES)}


def test_dense_and_sparse_views_agree_when_every_class_is_ranked() -> None:
    case = _noisy_set(11, n=800)
    probs = probabilities(case["logits"])
    dense = find_label_suspects(SparseProbabilities.dense(case["given"], probs))
    from gate.predictions import ranked

    classes, scores, given = ranked(case["logits"], 4, case["given"])
    assert given is not None  # labels were given
    sparse = SparseProbabilities(case["given"], given.astype(np.float64), classes, scores.astype(np.float64), 4)
    assert np.array_equal(dense.mask, find_label_suspects(sparse).mask)


# -- the suspects file ----------------------------------------------------------------------------


def _eval(tmp_path: Path, capsys: pytest.CaptureFixture[str], policy: Path, out: Path) -> tuple[int, str, str]:
    case = _noisy_set(3)
    data = _write_set(tmp_path, "noisy", case["given"], CLASSES)
    model = _model(tmp_path, "m", case["logits"])
    argv = ["eval", "--model", str(model), "--dataset", str(data), "--policy", str(policy), "--format", "json"]
    code = main([*argv, "--provider", "cpu", "--no-cache", "--label-issues-out", str(out)])
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def test_gate_eval_writes_the_suspects_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "issues.csv"
    code, stdout, stderr = _eval(tmp_path, capsys, _policy(tmp_path), out)
    v = json.loads(stdout)
    assert code == 1 and v["verdict"] == "FAIL"
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    issues = v["dataset_audit"]["label_issues"]["issues"]
    assert [r["sample_id"] for r in rows] == [i["sample_id"] for i in issues] and len(rows) > 0
    assert list(rows[0]) == ["sample_id", "given_label", "suggested_label", "confidence", "given_label_probability"]
    assert f"{len(rows)} suspected label error(s) written to {out}" in stderr


def test_the_suspects_file_needs_a_label_quality_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "issues.csv"
    policy = _policy(tmp_path, "version: 1\nname: p\nrules:\n  - {id: acc, type: metric, metric: accuracy, min: 0.5}\n")
    code, stdout, stderr = _eval(tmp_path, capsys, policy, out)
    assert code == 2 and json.loads(stdout)["verdict"] == "PASS"
    assert "the verdict holds no label audit; the policy needs a `label_quality` rule" in stderr
    assert not out.exists()


def test_the_suspects_file_must_be_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, stderr = _eval(tmp_path, capsys, _policy(tmp_path), tmp_path / "issues.xlsx")
    assert code == 2 and stdout == ""
    assert "label issues file" in stderr and "use a .csv file name" in stderr


@pytest.mark.parametrize("option", ["--predictions-out", "--output"])
def test_the_suspects_file_may_not_replace_another_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    """Written last, the suspects would silently replace the predictions table or the report."""
    out = tmp_path / "out.csv"
    case = _noisy_set(3, n=200)
    data = _write_set(tmp_path, "noisy", case["given"], CLASSES)
    model = _model(tmp_path, "m", case["logits"])
    argv = ["eval", "--model", str(model), "--dataset", str(data), "--policy", str(_policy(tmp_path))]
    code = main([*argv, "--provider", "cpu", "--no-cache", option, str(out), "--label-issues-out", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 2 and stdout == "" and not out.exists()
    assert f"label issues file {out}: {option} names the same file; give each its own" in stderr


def test_the_suspects_file_may_not_be_another_output_under_another_name(tmp_path: Path) -> None:
    from gate.errors import RequestError
    from gate.heldout.issues_file import check_issues_path

    table = tmp_path / "table.csv"
    table.write_text("")
    (tmp_path / "hard.csv").hardlink_to(table)
    (tmp_path / "soft.csv").symlink_to(table)
    for name in ("hard.csv", "soft.csv", "./table.csv"):
        with pytest.raises(RequestError, match="--predictions-out names the same file"):
            check_issues_path(tmp_path / name, others={"--predictions-out": table})
    assert check_issues_path(tmp_path / "own.csv", others={"--predictions-out": table, "--output": None})


def test_gate_check_refuses_a_suspects_file_that_is_its_predictions_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before any connection: the server is never asked (none listens here)."""
    out = tmp_path / "out.csv"
    model = _model(tmp_path, "m", _noisy_set(3, n=20)["logits"])
    argv = ["check", "--server", "127.0.0.1:9", "--model", str(model), "--dataset", "noisy", "--format", "json"]
    code = main(
        [*argv, "--policy-file", str(_policy(tmp_path)), "--predictions-out", str(out), "--label-issues-out", str(out)]
    )
    v = json.loads(capsys.readouterr().out)
    assert code == 2 and v["verdict"] == "ERROR" and not out.exists()
    assert "--predictions-out names the same file" in v["error"]["message"]


def test_gate_check_writes_the_suspects_file_from_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], serve: Any
) -> None:
    case = _noisy_set(3, n=400)
    extra = tmp_path / "extra"
    extra.mkdir()
    data = _write_set(extra, "noisy", case["given"], CLASSES)
    (extra / "noisy.yaml").write_text(f"name: noisy\nsource: {data}\n")
    served = serve(datasets=["datasets", str(extra)])
    model = _model(tmp_path, "m", case["logits"])
    out = tmp_path / "issues.csv"
    argv = ["check", "--server", served.address, "--model", str(model), "--dataset", "noisy"]
    code = main([*argv, "--policy-file", str(_policy(tmp_path)), "--format", "json", "--label-issues-out", str(out)])
    stdout, stderr = capsys.readouterr()
    v = json.loads(stdout)
    assert code == 1 and v["verdict"] == "FAIL", stderr
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["sample_id"] for r in rows] == [i["sample_id"] for i in v["dataset_audit"]["label_issues"]["issues"]]
    assert len(rows) == v["dataset_audit"]["label_issues"]["count"] > 0


def test_the_ray_engine_fills_the_given_label_probability_as_the_local_engine_does(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the ray extra (gate[ray]) is not installed")
    k, n = 7, 300
    case = _noisy_set(9, k=k, n=n)
    data = _write_set(tmp_path, "seven", case["given"], [f"c{i}" for i in range(k)])
    model, policy = _model(tmp_path, "m", case["logits"]), _policy(tmp_path)
    tables, audits = [], []
    for engine in ("local", "ray"):
        cache = Caches.at(tmp_path / f"cache-{engine}")
        v = evaluate(model, data, policy, provider="cpu", caches=cache, engine=engine).to_dict()
        assert v["verdict"] in ("PASS", "FAIL"), v.get("error")
        tables.append(_stored_table(cache, v))
        audits.append(v["dataset_audit"]["label_issues"])
    local, sharded = tables
    assert local.label_score is not None and sharded.label_score is not None
    np.testing.assert_array_equal(local.label_score, sharded.label_score)
    assert audits[0] == audits[1]


@pytest.mark.parametrize(("k", "n", "boost"), [(10, 5000, 3.0), (100, 20000, 4.0)])
def test_same_suspects_as_cleanlab_with_many_classes(k: int, n: int, boost: float) -> None:
    cleanlab_filter = pytest.importorskip("cleanlab.filter")
    rng = np.random.default_rng(k)
    true = rng.integers(0, k, n)
    logits = rng.normal(0.0, 1.0, (n, k))
    logits[np.arange(n), true] += boost
    given = true.copy()
    flipped = rng.random(n) < 0.05
    given[flipped] = (true[flipped] + rng.integers(1, k, int(flipped.sum()))) % k
    probs = probabilities(logits)
    ours = find_label_suspects(SparseProbabilities.dense(given, probs)).mask
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = cleanlab_filter.find_label_issues(given, probs, n_jobs=1)
    assert np.array_equal(ours, theirs)


def test_too_few_samples_left_once_suspects_are_set_aside_is_inconclusive(tmp_path: Path) -> None:
    case = _noisy_set(3)
    data = _write_set(tmp_path, "noisy", case["given"], CLASSES)
    support = np.bincount(case["given"], minlength=4)
    floor = int(support.min())  # the smallest class, whole, and not one sample less
    policy = _policy(
        tmp_path, f"version: 1\nname: p\nrules:\n  - {{id: labels, type: label_quality, min_support: {floor}}}\n"
    )
    v = evaluate(_model(tmp_path, "m", case["logits"]), data, policy, provider="cpu").to_dict()
    [rule] = v["rules"]
    assert v["verdict"] == "FAIL" and rule["status"] == "inconclusive"
    assert "too few samples left once suspects are set aside" in rule["message"]
    left = {c["class"]: c["observed"] for c in rule["classes"]}
    per_class = v["dataset_audit"]["label_issues"]["per_class"]
    assert left == {name: support[i] - per_class.get(name, 0) for i, name in enumerate(CLASSES)}
