"""The statistics of slice rules: Holm and Bonferroni against hand computation and against
statsmodels' ``multipletests``; a seeded simulation of many slices of pure noise; the
score test agreeing with the Wilson interval; slice counts against a direct count; and
what a policy author gets wrong in a slice rule."""

from __future__ import annotations

import numpy as np
import pytest

from gate.datasets.metadata import MISSING
from gate.errors import PolicyError
from gate.policy import parse_policy
from gate.policy.context import RuleContext
from gate.policy.slice_rules import PerSliceRule, SliceGapRule
from gate.predictions import PredictionTable, build_table
from gate.slices import adjust_pvalues, below_floor_pvalue, bin_labels, slice_table, slices_section
from gate.stats import wilson_interval
from gate.verdict import Status

multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests


def test_holm_and_bonferroni_by_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # Bonferroni: m·p; Holm: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, running max
    assert adjust_pvalues(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert adjust_pvalues(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust_pvalues([0.5, 0.9], "bonferroni") == [1.0, 1.0]
    assert adjust_pvalues(p, "none") == p


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("method", ["holm", "bonferroni"])
def test_corrections_agree_with_statsmodels(seed: int, method: str) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 60))
    # a family with some strong effects, some ties, some nulls
    p = np.concatenate([rng.uniform(0, 0.01, m // 3), rng.uniform(0, 1, m - m // 3)])
    p[rng.integers(0, m)] = p[0]
    ours = adjust_pvalues(p.tolist(), method)  # type: ignore[arg-type]
    reject, theirs, _, _ = multipletests(p, alpha=0.05, method=method)
    assert ours == pytest.approx(theirs.tolist(), abs=1e-12)
    assert [q <= 0.05 for q in ours] == reject.tolist()


@pytest.mark.parametrize(
    ("k", "n", "floor"), [(15, 30, 0.8), (27, 30, 0.8), (0, 10, 0.5), (10, 10, 0.95), (88, 100, 0.9)]
)
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_the_score_test_says_what_the_wilson_interval_says(k: int, n: int, floor: float, confidence: float) -> None:
    _, high = wilson_interval(k, n, confidence) or (0.0, 1.0)
    assert (below_floor_pvalue(k, n, floor) <= 1 - confidence) == (high < floor)


def _noise_table(rng: np.random.Generator, slices: int, per_slice: int, recall: float) -> PredictionTable:
    """``slices`` slices of one class, each sample found with probability ``recall``."""
    n = slices * per_slice
    found = rng.random(n) < recall
    labels = np.zeros(n, dtype=np.int64)
    predicted = np.where(found, 0, 1).astype(np.int64)
    return build_table(
        classes=["pos", "neg"],
        sample_ids=[f"x[{i}]" for i in range(n)],
        labels=labels,
        predicted=predicted,
        confidence=np.ones(n, np.float32),
        top_class=np.stack([predicted, 1 - predicted], axis=1),
        top_score=np.ones((n, 2), np.float32),
        metadata={"slice": np.asarray([f"s{i // per_slice:02d}" for i in range(n)], dtype=np.str_)},
    )


def _flagged(rule: PerSliceRule, table: PredictionTable) -> bool:
    result = rule.check(RuleContext(table.metrics(), table=table))
    assert result.status is not Status.ERROR
    return result.status is Status.FAIL


def _rule(**options: object) -> PerSliceRule:
    return PerSliceRule(id="r", slice=["slice"], metric="recall", min=0.8, **options)  # type: ignore[arg-type]


SEEDS = 200


def test_forty_noisy_slices_flag_uncorrected_bounds_and_not_holm() -> None:
    """40 slices of 100 samples whose true recall is 0.9 everywhere, floor 0.8.

    Read as per_class reads a floor (a slice passes only when its 95 % lower bound clears
    it), some slice is flagged in most seeds. per_slice with Holm fails a slice only when
    the family-corrected interval lies below the floor: its family-wise false alarm rate
    stays within 5 %.
    """
    rng = np.random.default_rng(2026)
    lower_bound_flags = holm_flags = 0
    holm = _rule(confidence=0.95, correction="holm")
    for _ in range(SEEDS):
        table = _noise_table(rng, 40, 100, 0.9)
        st = slice_table(table, ["slice"])
        lows = [
            (wilson_interval(int(t), int(s), 0.95) or (0.0, 1.0))[0]
            for t, s in zip(st.tp[:, 0], st.support[:, 0], strict=True)
        ]
        lower_bound_flags += min(lows) < 0.8
        holm_flags += _flagged(holm, table)
    assert lower_bound_flags / SEEDS > 0.5
    assert holm_flags / SEEDS <= 0.05


def test_at_the_floor_uncorrected_intervals_raise_false_alarms_and_holm_does_not() -> None:
    """The hardest null: every slice's true recall is exactly the floor. Uncorrected 95 %
    intervals put some slice wholly below it in most seeds (each one about 2.5 % of the
    time, 40 chances); Holm and Bonferroni bring the family near its nominal level. The
    Wilson interval is an approximation whose far tail runs a little light for a
    proportion near 0.8 (the exact binomial tail is heavier at the 1/40 levels a
    correction asks for), so the measured rate is about 6 %, not 2.5 %: the bound
    asserted is 10 %, eight times below the uncorrected rate."""
    rng = np.random.default_rng(7)
    flags = {"none": 0, "holm": 0, "bonferroni": 0}
    rules = {method: _rule(confidence=0.95, correction=method) for method in flags}
    for _ in range(SEEDS):
        table = _noise_table(rng, 40, 100, 0.8)
        for method, rule in rules.items():
            flags[method] += _flagged(rule, table)
    assert flags["none"] / SEEDS > 0.5
    assert flags["holm"] / SEEDS <= 0.10 and flags["bonferroni"] / SEEDS <= 0.10
    assert flags["bonferroni"] <= flags["holm"] <= flags["none"]


def test_slice_counts_match_a_direct_count() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    labels = rng.integers(0, 3, n)
    predicted = np.where(rng.random(n) < 0.7, labels, rng.integers(0, 3, n))
    cams = rng.choice(["a", "b", MISSING], n)
    sites = rng.choice(["x", "y"], n)
    table = build_table(
        classes=["u", "v", "w"],
        sample_ids=[str(i) for i in range(n)],
        labels=labels,
        predicted=predicted,
        confidence=np.ones(n, np.float32),
        top_class=predicted.reshape(-1, 1),
        top_score=np.ones((n, 1), np.float32),
        metadata={"camera": cams, "site": sites},
    )
    st = slice_table(table, ["camera", "site"])
    assert len(st) == 6
    for v, (cam, site) in enumerate(st.values):
        inside = (cams == cam) & (sites == site)
        for k in range(3):
            assert st.support[v, k] == int((inside & (labels == k)).sum())
            assert st.predicted[v, k] == int((inside & (predicted == k)).sum())
            assert st.tp[v, k] == int((inside & (labels == k) & (predicted == k)).sum())
    assert st.label(0) == f"camera={st.values[0][0]}, site={st.values[0][1]}"


def test_bins() -> None:
    values = np.asarray(["3", "20", "49.5", "50", "71", MISSING], dtype=np.str_)
    assert bin_labels(values, [20, 50], "age").tolist() == ["< 20", "[20, 50)", "[20, 50)", ">= 50", ">= 50", MISSING]


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("{id: r, type: per_slice, slice: c, metric: recal, min: 0.8}", "unknown metric 'recal' (did you mean"),
        (
            "{id: r, type: per_slice, slice: c, metric: recall, per_class: false, min: 0.8}",
            "per_class must be true",
        ),
        (
            "{id: r, type: per_slice, slice: c, metric: accuracy, per_class: true, min: 0.8}",
            "per_class must be false",
        ),
        (
            "{id: r, type: per_slice, slice: c, metric: recall, min: 0.8, correction: holm}",
            "give `confidence` too",
        ),
        ("{id: r, type: per_slice, slice: c, metric: macro_f1, min: 0.8, confidence: 0.9}", "not macro_f1"),
        ("{id: r, type: per_slice, slice: c, metric: recall, min: 1.5}", "min 1.5 is outside"),
        ("{id: r, type: per_slice, slice: [a, a], metric: recall, min: 0.8}", "slice names a column twice"),
        ("{id: r, type: per_slice, slice: a, metric: recall, min: 0.8, bins: {b: [1]}}", "bins for column 'b'"),
        ("{id: r, type: per_slice, slice: a, metric: recall, min: 0.8, bins: {a: [5, 1]}}", "increasing numbers"),
        ("{id: r, type: per_slice, slice: a, metric: recall, min: '0.8'}", "a quoted number is text"),
        ("{id: r, type: per_slice, slice: a, metric: recall, min: 0.8, correction: yes}", "correction"),
        ("{id: r, type: per_slice, slice: a, metric: recall, min: 0.8, min_support: 0}", "min_support"),
        ("{id: r, type: slice_gap, slice: a, metric: recall, max_gap: 1}", "no two values in [0, 1]"),
        ("{id: r, type: slice_gap, slice: a, metric: recall, max_gap: 0.1, against: worst}", "against"),
        ("{id: r, type: per_slice, metric: recall, min: 0.8}", "slice"),
    ],
)
def test_a_slice_rule_written_wrong_is_refused(rule: str, problem: str) -> None:
    with pytest.raises(PolicyError) as refused:
        parse_policy(f"version: 1\nname: p\nrules:\n  - {rule}\n")
    assert problem in str(refused.value)


def test_a_column_of_many_values_is_counted_not_tabled() -> None:
    n = 500
    table = build_table(
        classes=["a", "b"],
        sample_ids=[str(i) for i in range(n)],
        labels=np.zeros(n, dtype=np.int64),
        predicted=np.zeros(n, dtype=np.int64),
        confidence=np.ones(n, np.float32),
        top_class=np.zeros((n, 1), np.int64),
        top_score=np.ones((n, 1), np.float32),
        metadata={"id": np.asarray([f"s{i}" for i in range(n)], dtype=np.str_), "site": np.full(n, "x")},
    )
    section = slices_section(table)
    assert section["columns"]["id"] == {"values_total": 500, "listed": False}
    assert section["columns"]["site"]["x"]["support"] == 500
    assert [w["slice"] for w in section["weakest"]] == ["site=x"]


def _table(classes: list[str], labels: list[int], predicted: list[int], **metadata: list[str]) -> PredictionTable:
    n = len(labels)
    return build_table(
        classes=classes,
        sample_ids=[f"x[{i}]" for i in range(n)],
        labels=np.asarray(labels, dtype=np.int64),
        predicted=np.asarray(predicted, dtype=np.int64),
        confidence=np.ones(n, np.float32),
        top_class=np.asarray(predicted, dtype=np.int64).reshape(n, 1),
        top_score=np.ones((n, 1), np.float32),
        metadata={name: np.asarray(values, dtype=np.str_) for name, values in metadata.items()},
    )


def test_a_crossing_of_four_id_columns_keeps_each_samples_values() -> None:
    # 60,000 values in each of four columns: 60,000**4 passes 2**63, so a slice named by one
    # number mixed from the four would wrap and pair values of different samples
    n = 60_000
    ids = [str(i) for i in range(n)]
    table = _table(["a", "b"], [i % 2 for i in range(n)], [0] * n, a=ids, b=ids, c=ids, d=ids)
    st = slice_table(table, ["a", "b", "c", "d"])
    assert len(st) == n
    assert all(len(set(values)) == 1 for values in st.values)
    assert st.samples.tolist() == [1] * n


def test_slice_gap_per_class_with_a_comma_in_a_class_name() -> None:
    table = _table(["cat, big", "dog"], [0, 1, 0, 1, 0, 1, 0, 1], [0, 1, 1, 1, 0, 0, 0, 1], camera=list("aabbaabb"))
    rule = SliceGapRule(id="g", slice=["camera"], metric="recall", max_gap=0.1)
    result = rule.check(RuleContext(table.metrics(), table=table))
    assert result.status is Status.FAIL
    assert [c.name for c in result.classes] == ["cat, big", "dog"]
    assert result.message.startswith("cat, big: recall 0.500 at camera=b (1/2) vs 1.000 at camera=a (2/2)")


def test_per_slice_over_no_samples_is_not_a_pass() -> None:
    table = _table(["a", "b"], [], [], slice=[])
    result = _rule().judge(slice_table(table, ["slice"]), table)
    assert result.status is Status.INCONCLUSIVE
    assert result.message == "not enough evidence: no slice of ['slice'] has samples"
