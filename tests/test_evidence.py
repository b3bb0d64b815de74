"""Rules that weigh evidence, end to end through `gate eval` with real ONNX models:
confidence bounds, inconclusive support, prior shift, champion vs challenger, the
train/test gap and calibration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gate.cli import main
from tests.models import one_hot_rows, table_model

CLASSES = ["cat", "dog", "rabbit"]


def _eval(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, dict[str, Any]]:
    code = main(["eval", "--format", "json", "--provider", "cpu", *[str(a) for a in argv]])
    out, _ = capsys.readouterr()
    return code, json.loads(out)


def _set(tmp: Path, labels: list[int], name: str = "set", classes: list[str] = CLASSES) -> Path:
    """An .npz set whose x is each sample's index (for :func:`table_model`)."""
    path = tmp / f"{name}.npz"
    n = len(labels)
    np.savez(path, x=np.arange(n, dtype=np.float32).reshape(n, 1), y=np.array(labels), classes=np.array(classes))
    return path


def _model(tmp: Path, predicted: list[int] | np.ndarray, name: str, k: int = 3) -> Path:
    path = tmp / f"{name}.onnx"
    path.write_bytes(table_model(one_hot_rows(predicted, k)))
    return path


def _policy(tmp: Path, rules: str, name: str = "p") -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(f"version: 1\nname: {name}\nrules:\n{rules}")
    return path


def _rule(verdict: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in verdict["rules"] if r["id"] == rule_id)


# -- confidence bounds and inconclusive support -----------------------------------------


def _nine_of_ten(tmp: Path) -> tuple[Path, Path]:
    """rabbit: 10 samples, 9 recognised; cat and dog: 40 each, all right."""
    labels = [0] * 40 + [1] * 40 + [2] * 10
    predicted = [0] * 40 + [1] * 40 + [2] * 9 + [0]
    return _set(tmp, labels), _model(tmp, predicted, "m")


def test_recall_nine_of_ten_passes_a_point_floor_and_fails_a_confident_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, model = _nine_of_ten(tmp_path)
    plain = _policy(tmp_path, "  - {id: floors, type: per_class, metric: recall, classes: {rabbit: 0.80}}", "plain")
    code, v = _eval(capsys, "--model", model, "--dataset", data, "--policy", plain)
    assert code == 0 and v["verdict"] == "PASS"
    assert _rule(v, "floors")["classes"][0]["observed"] == pytest.approx(0.9)

    sure = _policy(
        tmp_path,
        "  - {id: floors, type: per_class, metric: recall, classes: {rabbit: 0.80}, confidence: 0.95}",
        "sure",
    )
    code, v = _eval(capsys, "--model", model, "--dataset", data, "--policy", sure)
    assert code == 1 and v["verdict"] == "FAIL"
    rule = _rule(v, "floors")
    assert rule["status"] == "fail" and rule["threshold"]["confidence"] == 0.95
    assert rule["message"] == ("rabbit: recall 0.900 (9/10), 95% interval [0.596, 0.982]: lower bound 0.596 < 0.800")
    # with 30 times the evidence the same rate clears the same floor
    labels = [0] * 40 + [1] * 40 + [2] * 300
    predicted = [0] * 40 + [1] * 40 + [2] * 270 + [0] * 30
    code, v = _eval(
        capsys,
        "--model",
        _model(tmp_path, predicted, "big"),
        "--dataset",
        _set(tmp_path, labels, "big"),
        "--policy",
        sure,
    )
    assert code == 0, _rule(v, "floors")["message"]


def test_confidence_is_refused_for_f1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, model = _nine_of_ten(tmp_path)
    bad = _policy(tmp_path, "  - {id: f, type: per_class, metric: f1, min: 0.5, confidence: 0.9}")
    code, v = _eval(capsys, "--model", model, "--dataset", data, "--policy", bad)
    assert code == 2 and "not to f1" in v["error"]["message"]


def test_too_few_samples_is_inconclusive_and_fails_a_block_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = [0] * 40 + [1] * 40 + [2] * 12
    data, model = _set(tmp_path, labels), _model(tmp_path, labels, "perfect")
    policy = _policy(tmp_path, "  - {id: evidence, type: min_support, min: 30}")
    code, v = _eval(capsys, "--model", model, "--dataset", data, "--policy", policy)
    assert code == 1 and v["verdict"] == "FAIL"
    rule = _rule(v, "evidence")
    assert rule["status"] == "inconclusive"
    assert rule["message"] == "rabbit: not enough evidence: 12 samples < 30"
    assert v["summary"]["inconclusive"] == 1 and v["summary"]["blocking"] == 1
    warn = _policy(
        tmp_path,
        "  - {id: evidence, type: min_support, min: 30, severity: warn}\n"
        "  - {id: acc, type: metric, metric: accuracy, min: 0.5}",
        "warn",
    )
    code, v = _eval(capsys, "--model", model, "--dataset", data, "--policy", warn)
    assert code == 0 and _rule(v, "evidence")["status"] == "inconclusive"


# -- prior shift ------------------------------------------------------------------------


def test_precision_at_production_prevalence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the worked example of the policy reference: 100 defects (90 caught), 100 ok (5 flagged)
    labels = [0] * 100 + [1] * 100
    predicted = [0] * 90 + [1] * 10 + [0] * 5 + [1] * 95
    data = _set(tmp_path, labels, classes=["defect", "ok"])
    model = _model(tmp_path, predicted, "inspector", k=2)
    held = _policy(tmp_path, "  - {id: prec, type: per_class, metric: precision, classes: {defect: 0.5}}", "held")
    code, v = _eval(capsys, "--model", model, "--dataset", data, "--policy", held)
    assert code == 0 and _rule(v, "prec")["classes"][0]["observed"] == pytest.approx(90 / 95)

    prod = _policy(
        tmp_path,
        "  - {id: prec, type: per_class, metric: precision, classes: {defect: 0.5},"
        " expected_prevalence: {defect: 0.01}}",
        "prod",
    )
    code, v = _eval(capsys, "--model", model, "--dataset", data, "--policy", prod)
    assert code == 1
    rule = _rule(v, "prec")
    assert rule["message"] == (
        "defect: precision at expected prevalence 1.00% 0.154 < 0.500 (held-out precision 0.947, 90/95)"
    )
    assert rule["classes"][0]["observed"] == pytest.approx(0.009 / 0.0585)
    assert rule["threshold"]["expected_prevalence"] == pytest.approx({"defect": 0.01, "ok": 0.99})


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("metric: recall, min: 0.5, expected_prevalence: {cat: 0.1}", "applies to precision only"),
        ("metric: precision, min: 0.5, expected_prevalence: {cat: 0.7, dog: 0.6}", "add up to 1.3"),
        ("metric: precision, min: 0.5, expected_prevalence: {cat: 0.1}, confidence: 0.9", "cannot be combined"),
        ("metric: precision, min: 0.5, expected_prevalence: {cta: 0.1}", "unknown class 'cta'"),
    ],
)
def test_bad_prevalence_settings_are_policy_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rule: str, problem: str
) -> None:
    data, model = _nine_of_ten(tmp_path)
    policy = _policy(tmp_path, f"  - {{id: p, type: per_class, {rule}}}")
    code, v = _eval(capsys, "--model", model, "--dataset", data, "--policy", policy)
    assert code == 2 and v["error"]["type"] == "PolicyError"
    assert problem in v["error"]["message"]


# -- champion vs challenger --------------------------------------------------------------


def _champion_set(tmp: Path) -> tuple[Path, list[int], list[int]]:
    """200 samples per class; the champion is right on 190 of each."""
    labels = [c for c in range(3) for _ in range(200)]
    champion = list(labels)
    for c in range(3):
        for i in range(10):
            champion[c * 200 + i] = (c + 1) % 3
    return _set(tmp, labels), labels, champion


def test_a_challenger_worse_on_one_class_fails_and_an_equal_one_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _labels, champion = _champion_set(tmp_path)
    old = _model(tmp_path, champion, "champion")
    worse = list(champion)
    for i in range(410, 450):  # 40 more rabbits missed: rabbit recall 0.95 -> 0.75
        worse[i] = 0
    policy = _policy(
        tmp_path, "  - {id: no-regression, type: baseline, metric: recall, per_class: true, max_drop: 0.05}"
    )
    code, v = _eval(
        capsys,
        "--model",
        _model(tmp_path, worse, "challenger"),
        "--dataset",
        data,
        "--policy",
        policy,
        "--baseline",
        old,
    )
    assert code == 1
    rule = _rule(v, "no-regression")
    assert rule["status"] == "fail"
    assert rule["message"] == "rabbit: recall 0.750 vs champion 0.950: drop 0.200 > 0.050"
    assert [c["status"] for c in rule["classes"]] == ["pass", "pass", "fail"]
    assert v["baseline"]["model"]["sha256"] and v["baseline"]["metrics"]["per_class"]["rabbit"]["recall"] == 0.95
    diff = v["baseline"]["comparison"]["accuracy_difference"]
    assert diff["difference"] == pytest.approx(-40 / 600)
    assert diff["low"] <= diff["difference"] <= diff["high"] < 0
    assert v["baseline"]["comparison"]["mcnemar"] == {
        "challenger_worse": 40,
        "challenger_better": 0,
        "p_value": pytest.approx(2 * 0.5**40),
    }

    # the champion against itself: nothing dropped
    code, v = _eval(capsys, "--model", old, "--dataset", data, "--policy", policy, "--baseline", old)
    assert code == 0 and _rule(v, "no-regression")["status"] == "pass"
    assert v["baseline"]["comparison"]["accuracy_difference"]["difference"] == 0.0


def test_mcnemar_does_not_fail_a_challenger_whose_difference_is_noise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, labels, champion = _champion_set(tmp_path)
    old = _model(tmp_path, champion, "champion")
    noisy = list(champion)
    for i in (20, 21, 220, 420, 421):  # 5 newly wrong
        noisy[i] = (labels[i] + 1) % 3
    for i in (0, 200):  # 2 newly right
        noisy[i] = labels[i]
    policy = _policy(
        tmp_path,
        "  - {id: acc, type: baseline, metric: accuracy, max_drop: 0.001, test: mcnemar, alpha: 0.05}\n"
        "  - {id: acc-strict, type: baseline, metric: accuracy, max_drop: 0.001, severity: warn}",
    )
    code, v = _eval(
        capsys, "--model", _model(tmp_path, noisy, "noisy"), "--dataset", data, "--policy", policy, "--baseline", old
    )
    assert code == 0, v["rules"]
    rule = _rule(v, "acc")
    assert rule["status"] == "pass"
    assert "not significantly worse" in rule["message"] and "McNemar p=0.453" in rule["message"]
    assert rule["details"]["mcnemar"] == {
        "challenger_worse": 5,
        "challenger_better": 2,
        "p_value": pytest.approx(0.453125),
    }
    assert _rule(v, "acc-strict")["status"] == "fail"  # the plain drop is broken; only the test forgives it

    # the same drop rule with 60 newly wrong samples: significantly worse, FAIL
    bad = list(champion)
    for i in list(range(20, 40)) + list(range(220, 240)) + list(range(420, 440)):
        bad[i] = (labels[i] + 1) % 3
    code, v = _eval(
        capsys, "--model", _model(tmp_path, bad, "bad"), "--dataset", data, "--policy", policy, "--baseline", old
    )
    assert code == 1
    assert "significantly worse: McNemar p=" in _rule(v, "acc")["message"]


def test_a_baseline_rule_without_a_champion_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, _labels, champion = _champion_set(tmp_path)
    policy = _policy(tmp_path, "  - {id: acc, type: baseline, metric: accuracy, max_drop: 0.01}")
    code, v = _eval(capsys, "--model", _model(tmp_path, champion, "m"), "--dataset", data, "--policy", policy)
    assert code == 2 and v["error"]["type"] == "RequestError"
    assert "rule 'acc' (baseline) needs a champion model" in v["error"]["message"]
    assert v["metrics"] is None  # refused before any inference


def test_a_broken_champion_is_an_error_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, _labels, champion = _champion_set(tmp_path)
    broken = tmp_path / "champion.onnx"
    broken.write_bytes(b"not onnx")
    policy = _policy(tmp_path, "  - {id: acc, type: metric, metric: accuracy, min: 0.5}")
    code, v = _eval(
        capsys,
        "--model",
        _model(tmp_path, champion, "m"),
        "--dataset",
        data,
        "--policy",
        policy,
        "--baseline",
        broken,
    )
    assert code == 2 and v["error"]["type"] == "ModelError"
    assert v["error"]["message"].startswith(f"baseline model {broken}: ")


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("metric: accuracy", "needs `max_drop`, `max_relative_drop` or `test: mcnemar`"),
        ("metric: recall, max_drop: 0.1", "unknown metric 'recall'"),
        ("metric: accuracy, per_class: true, max_drop: 0.1", "per_class: true needs a per-class metric"),
        ("metric: accuracy, max_drop: 0.1, alpha: 0.01", "give `test: mcnemar` too"),
        ("metric: accuracy, test: wilcoxon", "test"),
    ],
)
def test_bad_baseline_rules_are_policy_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rule: str, problem: str
) -> None:
    data, _labels, champion = _champion_set(tmp_path)
    model = _model(tmp_path, champion, "m")
    policy = _policy(tmp_path, f"  - {{id: b, type: baseline, {rule}}}")
    code, v = _eval(capsys, "--model", model, "--dataset", data, "--policy", policy, "--baseline", model)
    assert code == 2 and v["error"]["type"] == "PolicyError"
    assert problem in v["error"]["message"]


# -- overfitting -------------------------------------------------------------------------


def test_train_test_gap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # one model, two sets: right on all 300 training samples, on 240 of 300 held-out ones
    labels = [c for c in range(3) for _ in range(100)]
    rows = one_hot_rows(labels, 3)
    held_rows = rows.copy()
    for i in range(0, 300, 5):
        held_rows[i] = one_hot_rows([(labels[i] + 1) % 3], 3)[0]
    model = tmp_path / "m.onnx"
    model.write_bytes(table_model(np.concatenate([rows, held_rows])))
    n = len(labels)
    np.savez(tmp_path / "train.npz", x=np.arange(n, dtype=np.float32).reshape(n, 1), y=labels, classes=CLASSES)
    np.savez(tmp_path / "held.npz", x=np.arange(n, 2 * n, dtype=np.float32).reshape(n, 1), y=labels, classes=CLASSES)
    spec = tmp_path / "pets.yaml"
    spec.write_text("name: pets\nsource: held.npz\ntrain_sample: train.npz\n")
    policy = _policy(tmp_path, "  - {id: gap, type: train_test_gap, metric: accuracy, max_gap: 0.05}")
    code, v = _eval(capsys, "--model", model, "--dataset", spec, "--policy", policy)
    assert code == 1
    rule = _rule(v, "gap")
    assert rule["observed"] == pytest.approx(0.2)
    assert rule["message"].startswith(
        "accuracy on the training sample 1.000 (300 samples) vs held-out 0.800: gap 0.200 > 0.050"
    )
    assert v["train_sample"]["samples"] == 300 and v["train_sample"]["metrics"]["accuracy"] == 1.0
    loose = _policy(tmp_path, "  - {id: gap, type: train_test_gap, metric: accuracy, max_gap: 0.25}", "loose")
    code, v = _eval(capsys, "--model", model, "--dataset", spec, "--policy", loose)
    assert code == 0

    # a dataset without a training sample cannot be judged by this rule
    code, v = _eval(capsys, "--model", model, "--dataset", tmp_path / "held.npz", "--policy", policy)
    assert code == 2 and "has none (add `train_sample:` to its spec)" in v["error"]["message"]
    # a training sample that is missing is an error naming it
    spec.write_text("name: pets\nsource: held.npz\ntrain_sample: gone.npz\n")
    code, v = _eval(capsys, "--model", model, "--dataset", spec, "--policy", policy)
    assert code == 2 and v["error"]["type"] == "DatasetError" and "gone.npz" in v["error"]["message"]


# -- calibration -------------------------------------------------------------------------


def test_ece_rule_on_a_model_with_known_probabilities(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 100 samples, always 95 % sure of the right class's neighbour half of the time: ECE 0.45
    labels = [i % 2 for i in range(100)]
    rows = np.full((100, 2), 0.05, dtype=np.float32)
    for i in range(100):
        guess = labels[i] if i % 4 < 2 else 1 - labels[i]
        rows[i, guess] = 0.95
    model = tmp_path / "overconfident.onnx"
    model.write_bytes(table_model(rows))
    data = _set(tmp_path, labels, classes=["a", "b"])
    policy = _policy(tmp_path, "  - {id: calibrated, type: metric, metric: ece, max: 0.1}")
    code, v = _eval(capsys, "--model", model, "--dataset", data, "--policy", policy)
    assert code == 1
    assert v["metrics"]["ece"] == pytest.approx(0.45, abs=1e-6)
    assert _rule(v, "calibrated")["message"] == "ece 0.450 > 0.100"
    bins = v["metrics"]["calibration"]["bins"]
    assert sum(b["count"] for b in bins) == 100 and bins[-1]["accuracy"] == 0.5

    # logits go through a softmax: a well-calibrated model passes
    good = tmp_path / "calibrated.onnx"
    logits = np.zeros((100, 2), dtype=np.float32)
    logits[np.arange(100), labels] = 8.0  # softmax 0.99966, always right
    good.write_bytes(table_model(logits))
    code, v = _eval(capsys, "--model", good, "--dataset", data, "--policy", policy)
    assert code == 0 and v["metrics"]["ece"] == pytest.approx(1 - 1 / (1 + np.exp(-8.0)), abs=1e-6)
