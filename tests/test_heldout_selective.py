"""Abstention (`selective` rules, the risk-coverage curve) and top-k accuracy, from the
predictions table of real ONNX models, against hand computation and scikit-learn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from gate.cli import main
from gate.evaluation import evaluate
from gate.heldout.selective import risk_coverage
from gate.predictions import probabilities
from gate.report import render_html, render_markdown, render_text
from tests.models import table_model

# (confidence of the top class, predicted right?) per sample, for a 3-class model whose
# rows are probabilities (taken as they are): the top class gets the confidence, the
# others share the rest
SAMPLES = [
    (0.90, True),
    (0.80, True),
    (0.70, False),
    (0.95, True),
    (0.50, False),
    (0.60, True),
    (0.85, False),
    (0.99, True),
    (0.40, True),
    (0.75, True),
]
CLASSES = ["a", "b", "c"]


def _constructed(root: Path) -> tuple[Path, Path, npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    rows = np.zeros((len(SAMPLES), 3), dtype=np.float32)
    labels = np.zeros(len(SAMPLES), dtype=np.int64)
    for i, (confidence, right) in enumerate(SAMPLES):
        top = i % 3
        rows[i] = (1.0 - confidence) / 2
        rows[i, top] = confidence
        labels[i] = top if right else (top + 1) % 3
    data = root / "set.npz"
    np.savez(data, x=np.arange(len(SAMPLES), dtype=np.float32)[:, None], y=labels, classes=np.array(CLASSES))
    model = root / "m.onnx"
    model.write_bytes(table_model(rows))
    return model, data, rows, labels


def _policy(root: Path, *rules: str) -> Path:
    path = root / "policy.yaml"
    path.write_text("version: 1\nname: p\nrules:\n" + "".join(f"  - {r}\n" for r in rules))
    return path


def test_coverage_and_selective_accuracy_equal_hand_computation(tmp_path: Path) -> None:
    model, data, rows, labels = _constructed(tmp_path)
    rule = (
        "{id: abstain, type: selective, threshold: 0.75, min_coverage: 0.6, min_accuracy: 0.8,"
        " classes: {a: 0.5, b: 0.5}}"
    )
    v = evaluate(model, data, _policy(tmp_path, rule), provider="cpu").to_dict()
    # by hand: confidences >= 0.75 are 0.90, 0.80, 0.95, 0.85, 0.99, 0.75 (6 of 10), of which
    # 0.85 is wrong: coverage 0.6, selective accuracy 5/6
    [result] = v["rules"]
    details = result["details"]
    assert details["answered"] == 6 and details["coverage"] == 0.6
    assert details["accuracy"] == pytest.approx(5 / 6)
    answered = rows.max(axis=1) >= 0.75
    right = rows.argmax(axis=1) == labels
    for c, name in enumerate(CLASSES):
        mine = answered & (labels == c)
        expected = (right & mine).sum() / mine.sum() if mine.sum() else None
        assert details["per_class_recall"][name] == pytest.approx(expected)
    assert details["per_class_recall"]["c"] is None  # no answered sample is labelled c
    assert result["status"] == "pass", result["message"]
    assert [c["class"] for c in result["classes"]] == ["a", "b"]
    assert result["message"].startswith("answering at confidence >= 0.75: 6 of 10 samples; coverage 0.600 >= 0.600")
    assert "selective accuracy 0.833 >= 0.800" in result["message"]


def test_floors_fail_naming_the_numbers(tmp_path: Path) -> None:
    model, data, _, _ = _constructed(tmp_path)
    rule = "{id: abstain, type: selective, threshold: 0.9, min_coverage: 0.5, classes: {a: 1.0}}"
    [result] = evaluate(model, data, _policy(tmp_path, rule), provider="cpu").to_dict()["rules"]
    assert result["status"] == "fail"
    assert "answering at confidence >= 0.9: 3 of 10 samples; coverage 0.300 < 0.500" in result["message"]
    by_class = {c["class"]: c for c in result["classes"]}
    assert set(by_class) == {"a"} and by_class["a"]["status"] == "pass"


def test_a_class_with_no_answered_sample_fails_its_floor(tmp_path: Path) -> None:
    model, data, _, _ = _constructed(tmp_path)
    rule = "{id: abstain, type: selective, threshold: 0.999, min_recall: 0.1}"
    [result] = evaluate(model, data, _policy(tmp_path, rule), provider="cpu").to_dict()["rules"]
    assert result["status"] == "fail"
    assert "a: recall on the answered samples undefined (no answered sample) < 0.100" in result["message"]


def test_the_risk_coverage_curve_is_in_the_verdict_and_the_html_report(tmp_path: Path) -> None:
    model, data, rows, labels = _constructed(tmp_path)
    rule = "{id: abstain, type: selective, threshold: 0.5, min_coverage: 0.5}"
    verdict = evaluate(model, data, _policy(tmp_path, rule), provider="cpu")
    curve = verdict.to_dict()["metrics"]["risk_coverage"]
    conf = rows.max(axis=1).astype(np.float64)
    right = rows.argmax(axis=1) == labels
    order = np.argsort(-conf)
    expected = [
        {"threshold": float(conf[i]), "coverage": (n + 1) / 10, "risk": 1 - right[order[: n + 1]].mean()}
        for n, i in enumerate(order)
    ]
    assert len(curve["points"]) == len(expected)
    for got, want in zip(curve["points"], expected, strict=True):
        assert got == {key: pytest.approx(value) for key, value in want.items()}
    assert curve["aurc"] == pytest.approx(sum(p["risk"] for p in expected) / 10)
    html = render_html(verdict)
    assert '<img src="data:image/png;base64,' in html and 'alt="risk-coverage curve"' in html
    assert "Risk-coverage: area under the curve" in render_markdown(verdict)
    assert "risk-coverage: area under the curve" in render_text(verdict)


def test_the_curve_has_one_point_per_distinct_confidence_and_at_most_101() -> None:
    rng = np.random.default_rng(0)
    conf = np.round(rng.uniform(0, 1, 5000), 3)
    right = rng.uniform(0, 1, 5000) < conf
    curve = risk_coverage(conf, right)
    points = curve["points"]
    assert 50 < len(points) <= 101 and points[-1]["coverage"] == 1.0
    assert points[-1]["risk"] == pytest.approx(1 - right.mean())
    thresholds = [p["threshold"] for p in points]
    assert thresholds == sorted(thresholds, reverse=True) and len(set(thresholds)) == len(thresholds)
    for p in points:
        answered = conf >= p["threshold"]
        assert p["coverage"] == answered.mean() and p["risk"] == pytest.approx(1 - right[answered].mean())
    assert risk_coverage([], []) == {"points": [], "aurc": None}


# -- top-k ---------------------------------------------------------------------------------------


def _seven_classes(root: Path) -> dict[str, Any]:
    rng = np.random.default_rng(4)
    n, k = 600, 7
    logits = rng.normal(0.0, 1.0, (n, k)).astype(np.float32)
    labels = rng.integers(0, k, n)
    logits[np.arange(n), labels] += 1.0  # a weak model: its top-k accuracy rises with k
    data = root / "seven.npz"
    np.savez(data, x=np.arange(n, dtype=np.float32)[:, None], y=labels, classes=np.array([f"c{i}" for i in range(k)]))
    model = root / "m.onnx"
    model.write_bytes(table_model(logits))
    return {"data": data, "model": model, "logits": logits, "labels": labels}


def test_top_k_accuracy_equals_scikit_learn(tmp_path: Path) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    case = _seven_classes(tmp_path)
    policy = _policy(tmp_path, "{id: top3, type: metric, metric: top_3_accuracy, min: 0.5}")
    v = evaluate(case["model"], case["data"], policy, provider="cpu").to_dict()
    scores = probabilities(case["logits"])
    section = v["metrics"]["top_k"]
    for k in range(1, 6):
        expected = metrics.top_k_accuracy_score(case["labels"], scores, k=k, labels=list(range(7)))
        assert section["accuracy"][f"top_{k}"] == pytest.approx(expected, abs=1e-12)
    [rule] = v["rules"]
    assert rule["observed"] == pytest.approx(metrics.top_k_accuracy_score(case["labels"], scores, k=3))
    assert rule["message"].startswith("top_3_accuracy ")
    for c in range(7):
        mine = case["labels"] == c
        expected = metrics.top_k_accuracy_score(case["labels"][mine], scores[mine], k=2, labels=list(range(7)))
        assert section["per_class_recall"][f"c{c}"]["top_2"] == pytest.approx(expected)
    assert section["accuracy"]["top_1"] == v["metrics"]["accuracy"]


def test_top_k_beyond_the_classes_is_every_sample(tmp_path: Path) -> None:
    model, data, _, _ = _constructed(tmp_path)
    policy = _policy(tmp_path, "{id: top5, type: metric, metric: top_5_accuracy, min: 1.0}")
    v = evaluate(model, data, policy, provider="cpu").to_dict()
    assert v["verdict"] == "PASS" and v["rules"][0]["observed"] == 1.0


def test_a_policy_without_these_rules_leaves_the_verdict_as_it_was(tmp_path: Path) -> None:
    case = _seven_classes(tmp_path)
    policy = _policy(tmp_path, "{id: acc, type: metric, metric: accuracy, min: 0.1}")
    v = evaluate(case["model"], case["data"], policy, provider="cpu").to_dict()
    assert "dataset_audit" not in v and "top_k" not in v["metrics"] and "risk_coverage" not in v["metrics"]


def test_gate_eval_text_report_lists_top_k(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = _seven_classes(tmp_path)
    policy = _policy(tmp_path, "{id: top2, type: metric, metric: top_2_accuracy, min: 0.1}")
    argv = ["eval", "--model", str(case["model"]), "--dataset", str(case["data"]), "--policy", str(policy)]
    assert main([*argv, "--provider", "cpu", "--no-cache"]) == 0
    out = capsys.readouterr()[0]
    assert "Held-out set" in out and "top-k accuracy: top-1 " in out
    assert main([*argv, "--provider", "cpu", "--no-cache", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr()[0])["metrics"]["top_k"]["accuracy"]["top_2"] > 0
