"""The ``robustness`` rule on given runs (tables built here, no model): what it refuses in
a policy, the messages it gives, and its arithmetic against recomputed numbers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gate.errors import PolicyError
from gate.policy import apply_policy, parse_policy
from gate.policy.context import RobustnessRun, RuleContext
from gate.policy.robustness_rules import mean_corruption_error
from gate.predictions import PredictionTable, build_table
from gate.verdict import Status

CLASSES = ["cat", "dog"]


def table(labels: list[int], predicted: list[int]) -> PredictionTable:
    n = len(labels)
    pred = np.asarray(predicted, dtype=np.int64)
    return build_table(
        classes=CLASSES,
        sample_ids=[f"s{i}" for i in range(n)],
        labels=labels,
        predicted=pred,
        confidence=np.ones(n, dtype=np.float32),
        top_class=np.stack([pred, 1 - pred], axis=1),
        top_score=np.tile(np.array([1.0, 0.0], dtype=np.float32), (n, 1)),
    )


LABELS = [0] * 10 + [1] * 10
CLEAN = table(LABELS, LABELS)


def with_errors(cat_wrong: int, dog_wrong: int) -> PredictionTable:
    predicted = [1] * cat_wrong + [0] * (10 - cat_wrong) + [0] * dog_wrong + [1] * (10 - dog_wrong)
    return table(LABELS, predicted)


def judge(rule: str, run: RobustnessRun) -> tuple[Status, str]:
    policy = parse_policy(f"version: 1\nname: t\nrules:\n  - {rule}\n")
    context = RuleContext(CLEAN.metrics(), table=CLEAN, robustness={run.seed: run})
    (result,) = apply_policy(policy, CLEAN.metrics(), context)
    return result.status, result.message


def test_messages_name_the_cell_the_class_and_the_counts() -> None:
    run = RobustnessRun(0, CLEAN, {("motion_blur", 3): with_errors(6, 0), ("motion_blur", 1): with_errors(1, 0)})
    rule = "{id: r, type: robustness, corruptions: [motion_blur], severities: [1, 3], metric: recall, per_class: true"
    status, message = judge(rule + ", min: 0.7}", run)
    assert status is Status.FAIL
    assert message == "motion_blur@3, cat: recall 0.400 (4/10) < 0.700 (clean 1.000)"
    status, message = judge(rule + ", max_drop: 0.05}", run)
    assert message == (
        "motion_blur@1, cat: recall 0.900 (9/10) drop 0.100 > 0.050 (clean 1.000);"
        " motion_blur@3, cat: recall 0.400 (4/10) drop 0.600 > 0.050 (clean 1.000)"
    )
    status, message = judge(rule + ", min: 0.3}", run)
    assert status is Status.PASS
    assert message == "every cell within the limits; worst: motion_blur@3, cat: recall 0.400 (clean 1.000)"


def test_a_global_metric_and_a_confidence_bound() -> None:
    run = RobustnessRun(0, CLEAN, {("contrast", 2): with_errors(2, 1)})
    base = "{id: r, type: robustness, corruptions: [contrast], severities: [2]"
    status, message = judge(base + ", metric: accuracy, min: 0.9}", run)
    assert status is Status.FAIL and message == "contrast@2, accuracy 0.850 < 0.900 (clean 1.000)"
    status, message = judge(base + ", metric: recall, per_class: true, min: 0.5, confidence: 0.95}", run)
    # 8/10 has a 95 % Wilson interval from 0.490: below a floor of 0.5
    assert status is Status.FAIL and message.startswith("contrast@2, cat: recall 0.800 (8/10) 95% lower bound 0.490")


def test_classes_with_too_few_samples_are_inconclusive() -> None:
    run = RobustnessRun(0, CLEAN, {("contrast", 2): CLEAN})
    rule = "{id: r, type: robustness, corruptions: [contrast], severities: [2], metric: recall, per_class: true"
    status, message = judge(rule + ", min: 0.5, min_support: 11}", run)
    assert status is Status.INCONCLUSIVE
    assert message == "not enough evidence: cat: 10 samples < 11; dog: 10 samples < 11"


def test_the_champion_comparison() -> None:
    mine = {("contrast", 1): with_errors(2, 0), ("contrast", 2): with_errors(4, 0)}
    theirs = {("contrast", 1): with_errors(1, 0), ("contrast", 2): with_errors(2, 0)}
    run = RobustnessRun(0, CLEAN, mine, CLEAN, theirs)
    rule = "{id: r, type: robustness, corruptions: [contrast], severities: [1, 2], metric: accuracy"
    status, message = judge(rule + ", relative_to_baseline: 1.5}", run)
    assert status is Status.FAIL
    assert (
        message == "mCE 2.000 > 1.5 × the champion's (corruption error relative to the champion; worst: contrast 2.000)"
    )
    same = RobustnessRun(0, CLEAN, mine, CLEAN, mine)
    assert mean_corruption_error(same, ["contrast"], [1, 2])["mce"] == 1.0
    assert mean_corruption_error(same, ["contrast"], [1, 2])["relative_mce"] == 1.0


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (
            "corruptions: [gausian_noise], metric: accuracy, min: 0.5",
            "unknown corruption 'gausian_noise' (did you mean",
        ),
        ("corruptions: [frost], metric: accuracy, min: 0.5", "corruption 'frost' is not available: it overlays"),
        ("corruptions: [contrast], severities: [0, 6], metric: accuracy, min: 0.5", "severity 0 is not one of 1..5"),
        ("corruptions: [contrast, contrast], metric: accuracy, min: 0.5", "corruption 'contrast' is listed twice"),
        ("corruptions: [contrast], metric: recall, min: 0.5", "unknown metric 'recall'"),
        ("corruptions: [contrast], metric: accuracy, per_class: true, min: 0.5", "per_class: true needs a per-class"),
        ("corruptions: [contrast], metric: accuracy", "needs `min`, `max_drop` or `relative_to_baseline`"),
        ("corruptions: [contrast], metric: accuracy, min: 70", "min 70 is outside the metric's range [0, 1]"),
        ("corruptions: [contrast], metric: accuracy, min: 0.5, confidence: 0.9", "`confidence` applies to per-class"),
        ("corruptions: [], metric: accuracy, min: 0.5", "corruptions"),
        ("corruptions: [contrast], metric: accuracy, min: '0.5'", "a quoted number is text"),
        ("corruptions: [contrast], metric: accuracy, min: 0.5, seed: no", "Input should be a valid integer"),
    ],
)
def test_policy_problems(rule: str, problem: str) -> None:
    with pytest.raises(PolicyError) as exc:
        parse_policy(f"version: 1\nname: t\nrules:\n  - {{id: r, type: robustness, {rule}}}\n")
    assert any(problem in p for p in exc.value.problems), exc.value.problems


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10), st.integers(0, 10)), min_size=1, max_size=5), st.floats(0.01, 1.0))
def test_the_cells_agree_with_recomputed_recalls(errors: list[tuple[int, int]], floor: float) -> None:
    cells = {("gaussian_noise", s + 1): with_errors(c, d) for s, (c, d) in enumerate(errors)}
    run = RobustnessRun(0, CLEAN, cells)
    severities = ", ".join(str(s) for _, s in cells)
    rule = f"{{id: r, type: robustness, corruptions: [gaussian_noise], severities: [{severities}], metric: recall"
    status, message = judge(rule + f", per_class: true, min: {floor!r}}}", run)
    # recall of cat is (10 - c) / 10: the rule fails exactly when one is under the floor
    below = [
        (s, name)
        for (_, s), (c, d) in zip(cells, errors, strict=True)
        for name, w in (("cat", c), ("dog", d))
        if (10 - w) / 10 < floor - 1e-9
    ]
    assert (status is Status.FAIL) == bool(below), message
    for s, name in below:
        assert f"gaussian_noise@{s}, {name}: recall" in message
    expected = sum((c + d) / 20 for c, d in errors) / len(errors)
    assert mean_corruption_error(run, ["gaussian_noise"], [s for _, s in cells])[
        "mean_corruption_error"
    ] == pytest.approx(expected)
