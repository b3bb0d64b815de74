"""Metrics against scikit-learn, on the tutorial's matrix and on random labels."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from gate.metrics import GLOBAL_METRICS, TOP_K_METRICS, ClassificationMetrics, confusion_matrix

TUTORIAL = [[50, 2, 3], [4, 45, 1], [2, 3, 40]]
PETS = ["cat", "dog", "rabbit"]


def _labels_from(cm: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    t, p = [], []
    for i, row in enumerate(cm):
        for j, c in enumerate(row):
            t += [i] * c
            p += [j] * c
    return np.array(t), np.array(p)


def _sk(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> dict[str, object]:
    labels = list(range(k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=np.nan)
        out: dict[str, object] = {"precision": p, "recall": r, "f1": f, "support": s}
        for avg in ("macro", "weighted"):
            ap, ar, af, _ = skm.precision_recall_fscore_support(
                y_true, y_pred, labels=labels, average=avg, zero_division=np.nan
            )
            out[f"{avg}_precision"], out[f"{avg}_recall"], out[f"{avg}_f1"] = ap, ar, af
        out["accuracy"] = skm.accuracy_score(y_true, y_pred)
        out["balanced_accuracy"] = skm.balanced_accuracy_score(y_true, y_pred)
        out["mcc"] = skm.matthews_corrcoef(y_true, y_pred)
        out["cohen_kappa"] = skm.cohen_kappa_score(y_true, y_pred, labels=labels)
        out["cm"] = skm.confusion_matrix(y_true, y_pred, labels=labels)
    return out


def _same(ours: float | None, theirs: float) -> bool:
    if ours is None:
        return theirs is None or math.isnan(theirs)
    return not math.isnan(theirs) and math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-12)


def test_tutorial_confusion_matrix_matches_sklearn_exactly() -> None:
    t, p = _labels_from(TUTORIAL)
    m = ClassificationMetrics.from_predictions(t, p, PETS)
    assert m.confusion.tolist() == TUTORIAL
    cat = m.class_metrics("cat")
    assert (cat.tp, cat.fp, cat.fn, cat.support) == (50, 6, 5, 55)  # the tutorial's own numbers
    assert cat.precision == 50 / 56 and cat.recall == 50 / 55
    sk = _sk(t, p, 3)
    for i, c in enumerate(m.per_class):
        assert c.precision == pytest.approx(sk["precision"][i], abs=0)  # type: ignore[index]
        assert c.recall == pytest.approx(sk["recall"][i], abs=0)  # type: ignore[index]
        assert c.f1 == pytest.approx(sk["f1"][i], rel=1e-15)  # type: ignore[index]
        assert c.support == sk["support"][i]  # type: ignore[index]
    assert m.accuracy == 135 / 150


def test_empty_and_degenerate_sets_are_undefined_not_zero() -> None:
    m = ClassificationMetrics.from_confusion(np.zeros((2, 2), dtype=int), ["a", "b"])
    assert m.accuracy is None and m.balanced_accuracy is None and m.macro_f1 is None
    assert m.mcc is None and m.cohen_kappa is None and m.imbalance_ratio is None
    assert all(c.precision is None and c.recall is None and c.f1 is None for c in m.per_class)
    # one class never predicted, one class absent from the truth
    m = ClassificationMetrics.from_confusion([[0, 5], [0, 0]], ["a", "b"])
    a, b = m.per_class
    assert a.precision is None and a.recall == 0.0 and a.f1 == 0.0
    assert b.recall is None and b.precision == 0.0 and b.f1 == 0.0
    assert m.imbalance_ratio is None  # b has no samples: unbounded


def test_every_global_metric_is_computed_and_in_its_range() -> None:
    rng = np.random.default_rng(7)
    t, p = rng.integers(0, 5, 500), rng.integers(0, 5, 500)
    m = ClassificationMetrics.from_predictions(t, p, list("abcde"), rng.uniform(0.2, 1.0, 500))
    d = m.to_dict()
    # top-k accuracies need the table's top classes (tests/test_heldout_topk.py)
    matrix_metrics = {name: info for name, info in GLOBAL_METRICS.items() if name not in TOP_K_METRICS}
    for name, info in matrix_metrics.items():
        v = m.value(name)
        assert v is not None and info.low <= v <= info.high, name
        assert d[name] == v
    assert set(matrix_metrics) <= set(d)


def test_majority_baseline_and_imbalance_ratio() -> None:
    m = ClassificationMetrics.from_confusion([[90, 0], [10, 0]], ["big", "small"])
    assert m.majority_baseline_accuracy == 0.9 and m.imbalance_ratio == 9.0
    assert m.accuracy == 0.9  # the accuracy paradox: the always-"big" model


def test_confusion_matrix_validates_its_input() -> None:
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="equal length"):
        confusion_matrix([0, 1], [0], 3)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix([0.5], [0.0], 3)


def _check_against_sklearn(t: np.ndarray, p: np.ndarray, k: int) -> None:
    m = ClassificationMetrics.from_predictions(t, p, [f"c{i}" for i in range(k)])
    sk = _sk(t, p, k)
    assert m.confusion.tolist() == sk["cm"].tolist()  # type: ignore[attr-defined]
    for i, c in enumerate(m.per_class):
        for name in ("precision", "recall", "f1"):
            assert _same(c.value(name), sk[name][i]), (name, i)  # type: ignore[index]
        assert c.support == sk["support"][i]  # type: ignore[index]
    for name in (
        "accuracy",
        "balanced_accuracy",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "weighted_precision",
        "weighted_recall",
        "weighted_f1",
        "cohen_kappa",
    ):
        ours, theirs = m.value(name), float(sk[name])  # type: ignore[arg-type]
        if name.startswith("weighted_") and ours is None:
            # no class with samples has a defined value: scikit-learn answers 0.0, gate None
            per = name.removeprefix("weighted_")
            assert theirs == 0.0 and all(c.value(per) is None for c in m.per_class if c.support), name
            continue
        assert _same(ours, theirs), name
    # scikit-learn answers 0.0 where MCC is undefined; gate answers None
    if m.mcc is None:
        assert sk["mcc"] == 0.0
    else:
        assert math.isclose(m.mcc, float(sk["mcc"]), rel_tol=1e-9, abs_tol=1e-12)  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [2, 10, 37])
@pytest.mark.parametrize("seed", range(5))
def test_random_labels_match_sklearn(k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 4 * k + 50))
    t = rng.integers(0, k, n)
    p = rng.integers(0, k, n)
    # make sure some classes are never predicted and some never occur in the truth
    p[p == 0] = 1 % k
    t[t == k - 1] = 0
    assert 0 not in p and (k - 1) not in t
    _check_against_sklearn(t, p, k)


@settings(max_examples=150, deadline=None)
@given(
    k=st.sampled_from([2, 10, 37]),
    data=st.data(),
)
def test_property_metrics_equal_sklearn(k: int, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 200))
    labels = st.lists(st.integers(0, k - 1), min_size=n, max_size=n)
    t = np.array(data.draw(labels))
    p = np.array(data.draw(labels))
    _check_against_sklearn(t, p, k)
