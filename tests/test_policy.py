"""The policy engine: strict validation with every problem listed, and each rule type on
both sides of its threshold."""

from __future__ import annotations

from pathlib import Path

import pytest

from gate.errors import PolicyError
from gate.metrics import ClassificationMetrics
from gate.policy import RULE_TYPES, apply_policy, load_policy, parse_policy
from gate.verdict import Decision, Severity, Status, decide

INVALID = Path(__file__).parent / "policies" / "invalid"
SHIPPED = Path(__file__).parent.parent / "policies"
PETS = ["cat", "dog", "rabbit"]
TUTORIAL = ClassificationMetrics.from_confusion([[50, 2, 3], [4, 45, 1], [2, 3, 40]], PETS)

# file -> the exact problem lines its PolicyError must list
EXPECTED_PROBLEMS = {
    "unknown-key.yaml": [
        "rule 'recall-floors' (line 7): unknown key 'mni' (did you mean 'min'?); allowed: id, type, severity,"
        " description, metric, min, classes, confidence, expected_prevalence"
    ],
    "unknown-rule-type.yaml": [
        "rule 'acc' (line 4): unknown rule type 'metrc' (did you mean 'metric'?); known types: metric, per_class,"
        " min_support, imbalance, majority_baseline, confusion, baseline, train_test_gap, leakage"
    ],
    "unknown-metric.yaml": [
        "rule 'acc' (line 4): unknown metric 'acuracy' (did you mean 'accuracy'?); known: accuracy,"
        " balanced_accuracy, macro_precision, macro_recall, macro_f1, weighted_precision, weighted_recall,"
        " weighted_f1, mcc, cohen_kappa, majority_baseline_accuracy, imbalance_ratio, ece"
    ],
    "duplicate-ids.yaml": ["rule 'floor' (line 5): duplicate rule id (also rule #1)"],
    "min-above-max.yaml": ["rule 'band' (line 4): min 0.9 > max 0.8"],
    "threshold-out-of-range.yaml": ["rule 'recall-floors' (line 4): min 80 is outside the metric's range [0, 1]"],
    "empty-rules.yaml": ["rules: the rule list is empty; a policy needs at least one rule"],
    "many-problems.yaml": [
        "unknown key 'colour'; allowed: version, name, description, rules",
        "rule 'a' (line 5): min 0.9 > max 0.8",
        "rule 'b' (line 6): metric: Input should be 'recall', 'precision' or 'f1' (got 'recal')",
        "rule 'a' (line 7): max_rate: Input should be less than or equal to 1 (got 1.5)",
        "rule 'a' (line 7): duplicate rule id (also rule #1)",
    ],
}


def test_every_invalid_fixture_has_an_expectation() -> None:
    on_disk = {p.name for p in INVALID.glob("*.yaml")} - {"unknown-class.yaml"}
    assert on_disk == set(EXPECTED_PROBLEMS)


@pytest.mark.parametrize("name", sorted(EXPECTED_PROBLEMS))
def test_invalid_policy_lists_every_problem(name: str) -> None:
    with pytest.raises(PolicyError) as exc:
        load_policy(INVALID / name)
    assert exc.value.problems == EXPECTED_PROBLEMS[name]
    assert str(INVALID / name) in str(exc.value)


def test_unknown_class_is_caught_against_the_dataset() -> None:
    policy = load_policy(INVALID / "unknown-class.yaml")  # valid on its own
    with pytest.raises(PolicyError) as exc:
        policy.check_classes(PETS)
    assert exc.value.problems == [
        "rule 'recall-floors' (line 4): unknown class 'rabit' (did you mean 'rabbit'?); the dataset's classes"
        " are cat, dog, rabbit"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: &x [1]\nb: *x\n", "YAML error at line 1, column 4: YAML anchors are not allowed in a policy"),
        (
            "version: 1\nname: x\nrules:\n - {id: a, type: metric, metric: accuracy, min: 0.5, min: 0.6}\n",
            "duplicate key 'min' (first on line 4)",
        ),
        ("- just\n- a list\n", "expected a mapping with version, name and rules; got list"),
        ("version: 1\nname: x\nrules: [\n", "YAML error at line 4"),
        (
            "version: 2\nname: x\nrules:\n - {id: a, type: metric, metric: accuracy, min: 0.5}\n",
            "version: Input should be 1 (got 2)",
        ),
        (
            "version: 1\nname: x\nrules:\n - {id: a, type: metric, metric: accuracy, min: 0.5, severity: warn}\n",
            "every rule has severity warn: the policy could never FAIL a model",
        ),
        (
            "version: 1\nname: x\nrules:\n - {id: a, type: metric, metric: accuracy}\n",
            "rule 'a' (line 4): needs `min`, `max` or both",
        ),
        ("version: 1\nname: x\nrules:\n - {id: a, metric: accuracy, min: 0.5}\n", "rule 'a' (line 4): missing `type`"),
        (
            "version: 1\nname: x\nrules:\n - {id: a, type: min_support}\n",
            "rule 'a' (line 4): missing required key 'min'",
        ),
        (
            "version: 1\nname: x\nrules:\n - {id: a, type: confusion, actual: cat, predicted: cat, max_rate: 0.1}\n",
            "actual and predicted are both 'cat'",
        ),
        (
            "version: 1\nname: x\nrules:\n - {id: a, type: per_class, metric: recall}\n",
            "needs `min` (a floor for every class) or `classes`",
        ),
        (
            "version: 1\nname: x\nrules:\n - {id: a, type: imbalance, max_ratio: 0.5, min_recall: 0.5}\n",
            "max_ratio: Input should be greater than or equal to 1",
        ),
        (
            "version: 1\nname: x\nrules:\n - {id: a, type: metric, metric: imbalance_ratio, max: 0.5}\n",
            "max 0.5 is outside the metric's range [1, inf]",
        ),
    ],
)
def test_policy_text_errors(text: str, expected: str) -> None:
    with pytest.raises(PolicyError, match=None) as exc:
        parse_policy(text)
    assert expected in str(exc.value)


def test_billion_laughs_is_refused_before_expansion() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    with pytest.raises(PolicyError, match="anchors are not allowed"):
        parse_policy("\n".join(lines))


def test_oversized_policy_is_refused() -> None:
    with pytest.raises(PolicyError, match="exceeds the 1048576-byte limit"):
        parse_policy("# " + "x" * (1 << 20))


def test_missing_policy_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=f"policy file not found: {tmp_path / 'nope.yaml'}"):
        load_policy(tmp_path / "nope.yaml")


def test_registry_is_complete_and_every_type_documents_what_it_catches() -> None:
    assert set(RULE_TYPES) == {
        "metric",
        "per_class",
        "min_support",
        "imbalance",
        "majority_baseline",
        "confusion",
        "baseline",
        "train_test_gap",
        "leakage",
    }
    assert all(cls.catches for cls in RULE_TYPES.values())


@pytest.mark.parametrize("name", sorted(p.name for p in SHIPPED.glob("*.yaml")))
def test_shipped_policies_are_valid(name: str) -> None:
    policy = load_policy(SHIPPED / name)
    assert policy.rules


def _one(rule_yaml: str, metrics: ClassificationMetrics = TUTORIAL) -> tuple[Status, str]:
    policy = parse_policy(f"version: 1\nname: t\nrules:\n  - {rule_yaml}\n")
    (result,) = apply_policy(policy, metrics)
    return result.status, result.message


# cat recall 50/55 = 0.909, dog 45/50 = 0.900, rabbit 40/45 = 0.889; accuracy 135/150 = 0.900
@pytest.mark.parametrize(
    ("rule", "status", "message"),
    [
        ("{id: r, type: metric, metric: accuracy, min: 0.9}", Status.PASS, "accuracy 0.900 >= 0.900"),
        ("{id: r, type: metric, metric: accuracy, min: 0.9001}", Status.FAIL, "accuracy 0.9000 < 0.9001"),
        ("{id: r, type: metric, metric: accuracy, max: 0.9}", Status.PASS, "accuracy 0.900 <= 0.900"),
        ("{id: r, type: metric, metric: accuracy, max: 0.8999}", Status.FAIL, "accuracy 0.9000 > 0.8999"),
        (
            "{id: r, type: per_class, metric: recall, min: 0.9, classes: {rabbit: 0.888}}",
            Status.PASS,
            "all 3 classes meet their recall floor; closest: dog: recall 0.900 >= 0.900 (45/50)",
        ),
        ("{id: r, type: per_class, metric: recall, min: 0.9}", Status.FAIL, "rabbit: recall 0.889 < 0.900 (40/45)"),
        (
            "{id: r, type: per_class, metric: recall, classes: {dog: 0.9}}",
            Status.PASS,
            "all 1 classes meet their recall floor; closest: dog: recall 0.900 >= 0.900 (45/50)",
        ),
        (
            "{id: r, type: per_class, metric: precision, classes: {cat: 0.893}}",
            Status.FAIL,
            "cat: precision 0.8929 < 0.8930 (50/56)",
        ),
        ("{id: r, type: per_class, metric: f1, min: 0.9}", Status.FAIL, "rabbit: f1 0.899 < 0.900 (80/89)"),
        ("{id: r, type: min_support, min: 45}", Status.PASS, "every class has >= 45 samples; smallest: rabbit with 45"),
        ("{id: r, type: min_support, min: 46}", Status.INCONCLUSIVE, "rabbit: not enough evidence: 45 samples < 46"),
        (
            "{id: r, type: majority_baseline, margin: 0.5}",
            Status.PASS,
            "accuracy 0.900 - majority-class rate 0.367 ('cat') = +0.533 >= 0.500",
        ),
        (
            "{id: r, type: majority_baseline, margin: 0.6}",
            Status.FAIL,
            "accuracy 0.900 - majority-class rate 0.367 ('cat') = +0.533 < 0.600",
        ),
        (
            "{id: r, type: confusion, actual: rabbit, predicted: cat, max_rate: 0.0445}",
            Status.PASS,
            "rabbit predicted as cat: 0.0444 <= 0.0445 (2/45)",
        ),
        (
            "{id: r, type: confusion, actual: rabbit, predicted: cat, max_rate: 0.044}",
            Status.FAIL,
            "rabbit predicted as cat: 0.0444 > 0.0440 (2/45)",
        ),
        (
            "{id: r, type: imbalance, max_ratio: 1.23, min_recall: 0.95}",
            Status.PASS,
            "support ratio 1.2 (cat 55 / rabbit 45) <= 1.23: balanced enough",
        ),
        (
            "{id: r, type: imbalance, max_ratio: 1.2, min_recall: 0.888}",
            Status.PASS,
            "support ratio 1.2 (cat 55 / rabbit 45) > 1.2, and every class has recall >= 0.888",
        ),
        (
            "{id: r, type: imbalance, max_ratio: 1.2, min_recall: 0.89}",
            Status.FAIL,
            "support ratio 1.2 (cat 55 / rabbit 45) > 1.2; rabbit: recall 0.889 < 0.890 (40/45). Accuracy paradox:",
        ),
    ],
)
def test_rule_both_sides_of_threshold(rule: str, status: Status, message: str) -> None:
    got_status, got_message = _one(rule)
    assert got_status is status
    assert got_message.startswith(message)


def test_floor_boundary_0799_vs_0800() -> None:
    # 799/1000 vs 800/1000 recall against a floor of 0.80
    for correct, status in ((799, Status.FAIL), (800, Status.PASS)):
        m = ClassificationMetrics.from_confusion([[correct, 1000 - correct], [0, 1000]], ["a", "b"])
        assert _one("{id: r, type: per_class, metric: recall, min: 0.80}", m)[0] is status


def test_undefined_values_fail_never_skip() -> None:
    # "b" has no samples and is never predicted: its recall, precision and F1 are undefined
    m = ClassificationMetrics.from_confusion([[10, 0], [0, 0]], ["a", "b"])
    assert _one("{id: r, type: per_class, metric: recall, min: 0.0}", m) == (
        Status.FAIL,
        "b: recall undefined (the class has no samples), floor 0.000",
    )
    assert _one("{id: r, type: per_class, metric: precision, min: 0.0}", m) == (
        Status.FAIL,
        "b: precision undefined (the class is never predicted), floor 0.000",
    )
    assert _one("{id: r, type: confusion, actual: b, predicted: a, max_rate: 1}", m)[0] is Status.FAIL
    assert _one("{id: r, type: imbalance, max_ratio: 100, min_recall: 0}", m)[0] is Status.FAIL
    assert _one("{id: r, type: metric, metric: imbalance_ratio, max: 100}", m)[0] is Status.FAIL
    assert _one("{id: r, type: min_support, min: 1}", m)[0] is Status.INCONCLUSIVE


def test_severity_and_decision() -> None:
    policy = parse_policy(
        "version: 1\nname: t\nrules:\n"
        "  - {id: hard, type: metric, metric: accuracy, min: 0.5}\n"
        "  - {id: soft, type: metric, metric: accuracy, min: 0.99, severity: warn}\n"
    )
    results = apply_policy(policy, TUTORIAL)
    assert [r.status for r in results] == [Status.PASS, Status.FAIL]
    assert results[1].severity is Severity.WARN and not results[1].blocks
    assert decide(results) is Decision.PASS
    assert decide([]) is Decision.ERROR  # nothing judged is never a pass


def test_unknown_class_in_apply_is_an_error_not_a_pass() -> None:
    policy = load_policy(INVALID / "unknown-class.yaml")
    with pytest.raises(PolicyError, match="unknown class 'rabit'"):
        apply_policy(policy, TUTORIAL)
