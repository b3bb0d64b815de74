"""The statistics behind the evidence-aware rules, against hand-computed values and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest

from gate.metrics import CALIBRATION_BINS, Calibration, ClassificationMetrics
from gate.stats import mcnemar_exact, paired_bootstrap, prior_shift_precision, wilson_interval, z_for


def test_z_of_common_confidence_levels() -> None:
    assert z_for(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert z_for(0.99) == pytest.approx(2.575829, abs=1e-6)
    with pytest.raises(ValueError):
        z_for(1.0)


@pytest.mark.parametrize(
    ("k", "n", "confidence", "low", "high"),
    [
        # by hand, z = 1.96: centre (p + z²/2n)/(1 + z²/n), half z·sqrt(p(1−p)/n + z²/4n²)/(1 + z²/n)
        (9, 10, 0.95, 0.5958, 0.9821),  # centre 0.78898, half 0.19314
        (0, 10, 0.95, 0.0, 0.2775),  # centre = half = 0.13877
        (10, 10, 0.95, 0.7225, 1.0),
        (12, 100, 0.95, 0.0700, 0.1981),
        (45, 50, 0.90, 0.8085, 0.9505),  # z = 1.6449: centre 0.87946, half 0.07101
    ],
)
def test_wilson_interval_matches_hand_computation(k: int, n: int, confidence: float, low: float, high: float) -> None:
    lo, hi = wilson_interval(k, n, confidence) or (math.nan, math.nan)
    assert lo == pytest.approx(low, abs=5e-5)
    assert hi == pytest.approx(high, abs=5e-5)


def test_wilson_interval_of_nothing_is_undefined_and_bad_counts_are_refused() -> None:
    assert wilson_interval(0, 0, 0.95) is None
    with pytest.raises(ValueError):
        wilson_interval(11, 10, 0.95)


@given(st.integers(0, 400), st.integers(1, 400), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
@settings(max_examples=200, deadline=None)
def test_wilson_interval_holds_the_estimate_and_narrows_with_confidence(k: int, n: int, confidence: float) -> None:
    k = min(k, n)
    lo, hi = wilson_interval(k, n, confidence) or (math.nan, math.nan)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    lo2, hi2 = wilson_interval(k, n, 0.5) or (math.nan, math.nan)
    assert lo <= lo2 and hi2 <= hi


def _paired(worse: int, better: int, same: int = 20) -> tuple[np.ndarray, np.ndarray]:
    champion = np.array([True] * worse + [False] * better + [True] * same)
    challenger = np.array([False] * worse + [True] * better + [True] * same)
    return champion, challenger


@pytest.mark.parametrize(
    ("worse", "better", "p"),
    [
        (0, 5, 2 / 32),  # 2 · P(X <= 0), X ~ B(5, ½)
        (10, 3, 2 * (1 + 13 + 78 + 286) / 8192),  # 2 · P(X <= 3), X ~ B(13, ½)
        (7, 7, 1.0),
        (0, 0, 1.0),
    ],
)
def test_mcnemar_exact_matches_hand_computation(worse: int, better: int, p: float) -> None:
    result = mcnemar_exact(*_paired(worse, better))
    assert (result.challenger_worse, result.challenger_better) == (worse, better)
    assert result.p_value == pytest.approx(p, rel=1e-12)


@given(st.integers(0, 3000), st.integers(0, 3000))
@settings(max_examples=60, deadline=None)
def test_mcnemar_exact_matches_scipy(worse: int, better: int) -> None:
    result = mcnemar_exact(*_paired(worse, better, same=0))
    expected = 1.0 if worse + better == 0 else binomtest(min(worse, better), worse + better, 0.5).pvalue
    assert result.p_value == pytest.approx(expected, rel=1e-6, abs=1e-250)


def test_mcnemar_direction() -> None:
    worse = mcnemar_exact(*_paired(30, 5))
    assert worse.significantly_worse(0.05)
    better = mcnemar_exact(*_paired(5, 30))
    assert better.p_value == worse.p_value and not better.significantly_worse(0.05)
    noise = mcnemar_exact(*_paired(6, 4))
    assert noise.p_value > 0.5 and not noise.significantly_worse(0.05)


def test_paired_bootstrap_is_seeded_and_brackets_the_difference() -> None:
    champion, challenger = _paired(30, 10, same=960)
    a = paired_bootstrap(champion, challenger, seed=3)
    b = paired_bootstrap(champion, challenger, seed=3)
    assert a == b and a is not None
    assert a.difference == pytest.approx(-20 / 1000)
    assert a.low < a.difference < a.high < 0.0  # 40 discordant samples, 30 against: clearly worse
    # the bootstrap standard error of a paired difference: sqrt((b + c) - (b - c)²/n) / n
    se = math.sqrt(40 - 400 / 1000) / 1000
    assert a.high - a.low == pytest.approx(2 * 1.96 * se, rel=0.1)
    same = paired_bootstrap(champion, champion)
    assert same is not None and (same.low, same.high) == (0.0, 0.0)
    assert paired_bootstrap(np.array([], bool), np.array([], bool)) is None


def test_prior_shift_precision_worked_example() -> None:
    # 100 defects, 100 ok: 90 defects caught, 5 ok flagged. Held-out precision 90/95 = 0.947;
    # at 1 % defects: 0.01·0.90 / (0.01·0.90 + 0.99·0.05) = 0.009 / 0.0585 = 0.1538
    confusion = [[90, 10], [5, 95]]
    same = prior_shift_precision(confusion, ["defect", "ok"], "defect", {"defect": 0.5, "ok": 0.5})
    assert same == pytest.approx(90 / 95)
    shifted = prior_shift_precision(confusion, ["defect", "ok"], "defect", {"defect": 0.01, "ok": 0.99})
    assert shifted == pytest.approx(0.009 / 0.0585)
    assert round(shifted or 0, 4) == 0.1538
    # recall does not move with the priors; the other class's precision rises
    ok = prior_shift_precision(confusion, ["defect", "ok"], "ok", {"defect": 0.01, "ok": 0.99})
    assert ok == pytest.approx(0.99 * 0.95 / (0.99 * 0.95 + 0.01 * 0.10))
    assert prior_shift_precision([[0, 0], [5, 95]], ["defect", "ok"], "defect", {"defect": 0.1, "ok": 0.9}) is None


def test_ece_of_constructed_cases() -> None:
    # a bin at confidence 0.8 with 80 % right: perfectly calibrated
    correct = np.array([True] * 8 + [False] * 2)
    assert Calibration.from_predictions(correct, np.full(10, 0.8)).ece == pytest.approx(0.0, abs=1e-9)
    # always 95 % sure, right half the time: ECE 0.45
    half = np.array([True, False] * 50)
    assert Calibration.from_predictions(half, np.full(100, 0.95)).ece == pytest.approx(0.45, abs=1e-9)
    # two bins: 50 samples at 0.9 all right (gap 0.1), 50 at 0.6 with 30 right (gap 0): 0.5·0.1
    conf = np.array([0.9] * 50 + [0.6] * 50)
    right = np.array([True] * 50 + [True] * 30 + [False] * 20)
    cal = Calibration.from_predictions(right, conf)
    assert cal.ece == pytest.approx(0.05, abs=1e-9)
    bins = cal.bins()
    assert len(bins) == CALIBRATION_BINS
    filled = [b for b in bins if b["count"]]
    assert [(b["count"], b["accuracy"]) for b in filled] == [(50, 0.6), (50, 1.0)]
    assert filled[0]["lower"] < 0.6 <= filled[0]["upper"]
    assert Calibration.empty().ece is None


def test_calibration_bins_are_additive_exactly() -> None:
    rng = np.random.default_rng(5)
    conf = rng.uniform(0.1, 1.0, 10_001).astype(np.float32)
    right = rng.uniform(size=10_001) < conf
    whole = Calibration.from_predictions(right, conf)
    merged = Calibration.empty()
    for part in np.array_split(np.arange(10_001), 7):
        merged = merged.merge(Calibration.from_predictions(right[part], conf[part]))
    assert np.array_equal(whole.counts, merged.counts)
    assert np.array_equal(whole.confidence_fp, merged.confidence_fp)
    assert whole.ece == merged.ece


def test_ece_is_a_global_metric_when_confidences_are_known() -> None:
    y = np.array([0, 1, 1, 0])
    m = ClassificationMetrics.from_predictions(y, np.array([0, 1, 0, 0]), ["a", "b"], np.full(4, 1.0))
    assert m.value("ece") == pytest.approx(0.25)
    assert m.to_dict()["calibration"]["bins"][-1]["count"] == 4
    assert ClassificationMetrics.from_predictions(y, y, ["a", "b"]).value("ece") is None
