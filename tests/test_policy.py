"""The policy engine: strict validation with every problem listed, and each rule type on
both sides of its threshold."""

from __future__ import annotations

from pathlib import Path

import pytest

from gate.errors import PolicyError
from gate.metrics import ClassificationMetrics
from gate.policy import RULE_TYPES, apply_policy, load_policy, parse_policy, vacuous_rules
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
        " min_support, imbalance, majority_baseline, confusion, baseline, train_test_gap, leakage, per_slice,"
        " slice_gap, model_contract, latency, memory, provider_parity, robustness, label_quality, heldout_duplicates,"
        " selective"
    ],
    "unknown-metric.yaml": [
        "rule 'acc' (line 4): unknown metric 'acuracy' (did you mean 'accuracy'?); known: accuracy,"
        " balanced_accuracy, macro_precision, macro_recall, macro_f1, weighted_precision, weighted_recall,"
        " weighted_f1, mcc, cohen_kappa, majority_baseline_accuracy, imbalance_ratio, ece,"
        " top_2_accuracy, top_3_accuracy, top_4_accuracy, top_5_accuracy"
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
        "per_slice",
        "slice_gap",
        "model_contract",
        "latency",
        "memory",
        "provider_parity",
        "robustness",
        "label_quality",
        "heldout_duplicates",
        "selective",
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


# a block rule that can fail, beside a vacuous one under test (a policy of vacuous rules alone is refused)
GUARD = "{id: guard, type: metric, metric: accuracy, min: 0.5}"


def _beside_guard(rule_yaml: str, metrics: ClassificationMetrics) -> tuple[Status, str]:
    policy = parse_policy(f"version: 1\nname: t\nrules:\n  - {rule_yaml}\n  - {GUARD}\n")
    result = apply_policy(policy, metrics)[0]
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
    # (even under vacuous thresholds, which no defined value can break)
    m = ClassificationMetrics.from_confusion([[10, 0], [0, 0]], ["a", "b"])
    assert _beside_guard("{id: r, type: per_class, metric: recall, min: 0.0}", m) == (
        Status.FAIL,
        "b: recall undefined (the class has no samples), floor 0.000",
    )
    assert _beside_guard("{id: r, type: per_class, metric: precision, min: 0.0}", m) == (
        Status.FAIL,
        "b: precision undefined (the class is never predicted), floor 0.000",
    )
    assert _beside_guard("{id: r, type: confusion, actual: b, predicted: a, max_rate: 1}", m)[0] is Status.FAIL
    assert _beside_guard("{id: r, type: imbalance, max_ratio: 100, min_recall: 0}", m)[0] is Status.FAIL
    assert _one("{id: r, type: metric, metric: imbalance_ratio, max: 100}", m)[0] is Status.FAIL
    assert _beside_guard("{id: r, type: min_support, min: 1}", m)[0] is Status.INCONCLUSIVE


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


# -- strict types: numbers are YAML numbers, flags YAML booleans, version the integer 1 ------------


def _problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as exc:
        parse_policy(text)
    return exc.value.problems


def _rule_text(fields: str, version: str = "1") -> str:
    return f"version: {version}\nname: x\nrules:\n  - id: floor\n    type: metric\n    metric: accuracy\n    {fields}\n"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (
            "min: no",
            "rule 'floor' (line 7): min: Input should be a valid number, not a boolean (got 'no', which YAML reads as"
            " False)",
        ),
        (
            "min: yes",
            "rule 'floor' (line 7): min: Input should be a valid number, not a boolean (got 'yes', which YAML reads as"
            " True)",
        ),
        (
            "min: '0.9'",
            "rule 'floor' (line 7): min: Input should be a valid number, not a string: a quoted number is text, write"
            " it without quotes (got '0.9')",
        ),
        (
            "max: true",
            "rule 'floor' (line 7): max: Input should be a valid number, not a boolean (got 'true', which YAML reads as"
            " True)",
        ),
    ],
)
def test_a_number_must_be_a_yaml_number(fields: str, problem: str) -> None:
    assert _problems(_rule_text(fields)) == [problem]


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (
            "{id: r, type: min_support, min: 30.0}",
            "rule 'r' (line 4): min: Input should be a valid integer, not a number with a fraction part (got 30.0)",
        ),
        (
            "{id: r, type: min_support, min: on}",
            "rule 'r' (line 4): min: Input should be a valid integer, not a boolean (got 'on', which YAML reads as"
            " True)",
        ),
        (
            "{id: r, type: baseline, metric: recall, per_class: 1, max_drop: 0.05}",
            "rule 'r' (line 4): per_class: Input should be a valid boolean (true or false), not an integer (got 1)",
        ),
        (
            "{id: r, type: baseline, metric: recall, per_class: 'true', max_drop: 0.05}",
            "rule 'r' (line 4): per_class: Input should be a valid boolean (true or false), not a string (got 'true')",
        ),
        (
            "{id: r, type: leakage, max_hamming: 8, max_overlap: no}",
            "rule 'r' (line 4): max_overlap: Input should be a count (an integer) or a rate (a number in [0, 1)), not a"
            " boolean (got 'no', which YAML reads as False)",
        ),
        (
            "{id: r, type: per_class, metric: recall, classes: {cat: '0.9'}}",
            "rule 'r' (line 4): classes.cat: Input should be a valid number, not a string: a quoted number is text,"
            " write it without quotes (got '0.9')",
        ),
    ],
)
def test_counts_flags_and_class_floors_are_strict(rule: str, problem: str) -> None:
    assert _problems(f"version: 1\nname: x\nrules:\n  - {rule}\n") == [problem]


@pytest.mark.parametrize(
    ("version", "problem"),
    [
        ("true", "version: Input should be the integer 1, not a boolean (got 'true', which YAML reads as True)"),
        (
            "1.0",
            "version: Input should be the integer 1, not a number with a fraction part (got 1.0)",
        ),
        ("0x1", "version: Input should be the integer 1 written in decimal (got '0x1')"),
        ("'1'", "version: Input should be 1 (got '1')"),
    ],
)
def test_version_is_the_integer_1_in_decimal(version: str, problem: str) -> None:
    assert _problems(_rule_text("min: 0.5", version)) == [problem]


def test_numbers_in_any_yaml_spelling_still_read() -> None:
    """Strict is not fussy: ints where floats go, and exponents as YAML 1.2 writes them."""
    rules = parse_policy(
        "version: 1\nname: x\nrules:\n"
        "  - {id: a, type: metric, metric: accuracy, min: 1}\n"
        "  - {id: b, type: baseline, metric: accuracy, max_drop: 1e-3}\n"
        "  - {id: c, type: leakage, max_hamming: 8, max_overlap: 0.5}\n"
    ).rules
    assert [r.model_dump().get(k) for r, k in zip(rules, ("min", "max_drop", "max_overlap"), strict=True)] == [
        1.0,
        0.001,
        0.5,
    ]


# -- vacuous rules: a policy must have a block rule that a model can fail -----------------------

VACUOUS = {
    "{id: v, type: metric, metric: accuracy, min: 0}": "accuracy always lies in [0, 1], so min 0 cannot be broken",
    "{id: v, type: metric, metric: ece, max: 1}": "ece always lies in [0, 1], so max 1 cannot be broken",
    "{id: v, type: metric, metric: mcc, min: -1, max: 1}": "mcc always lies in [-1, 1], so min -1 and max 1 cannot",
    "{id: v, type: per_class, metric: recall, min: 0}": "every recall floor is 0",
    "{id: v, type: per_class, metric: precision, classes: {cat: 0, dog: 0.0}}": "every precision floor is 0",
    "{id: v, type: per_class, metric: recall, min: 0, confidence: 0.95}": "every recall floor is 0",
    "{id: v, type: min_support, min: 1}": "min 1 only asks every class for one sample",
    "{id: v, type: imbalance, max_ratio: 3, min_recall: 0}": "min_recall 0",
    "{id: v, type: imbalance, max_ratio: 1e12, min_recall: 0.9}": "max_ratio 1e+12",
    "{id: v, type: majority_baseline, margin: 0}": "margin 0: a model that always answers the largest class",
    "{id: v, type: confusion, actual: cat, predicted: dog, max_rate: 1}": "max_rate 1",
    "{id: v, type: baseline, metric: accuracy, max_drop: 1}": "accuracy spans [0, 1]: no drop can break max_drop 1",
    "{id: v, type: baseline, metric: recall, per_class: true, max_drop: 1, max_relative_drop: 1, test: mcnemar}": (
        "no drop can break max_drop 1 and max_relative_drop 1"
    ),
    "{id: v, type: train_test_gap, metric: accuracy, max_gap: 1}": "no gap exceeds max_gap 1",
    "{id: v, type: per_slice, slice: camera, metric: recall, min: 0}": "min 0: no recall is below 0",
    "{id: v, type: slice_gap, slice: camera, metric: recall, max_gap: 1}": "max_gap 1: no two values in [0, 1]",
    "{id: v, type: provider_parity, max_disagreement: 1}": "a disagreement rate cannot exceed 1",
    "{id: v, type: robustness, corruptions: [contrast], metric: accuracy, min: 0}": "no corrupted image can break",
    "{id: v, type: label_quality, margin: false, min_support: 0}": "no suspect rate can break it",
    "{id: v, type: selective, threshold: 0.5, min_coverage: 0, classes: {cat: 0}}": "every floor is 0",
}

# each one notch away from vacuous: a model can fail it
NOT_VACUOUS = [
    "{id: v, type: robustness, corruptions: [contrast], metric: accuracy, min: 0.01}",
    "{id: v, type: metric, metric: accuracy, min: 0.01}",
    "{id: v, type: metric, metric: accuracy, min: 0, max: 0.99}",
    "{id: v, type: metric, metric: imbalance_ratio, min: 1, max: 1000000}",
    "{id: v, type: per_class, metric: recall, min: 0, classes: {cat: 0.5}}",
    "{id: v, type: min_support, min: 2}",
    "{id: v, type: imbalance, max_ratio: 999999, min_recall: 0.01}",
    "{id: v, type: majority_baseline, margin: 0.001}",
    "{id: v, type: confusion, actual: cat, predicted: dog, max_rate: 0.999}",
    "{id: v, type: baseline, metric: accuracy, max_drop: 1, test: mcnemar}".replace("max_drop: 1, ", ""),
    "{id: v, type: baseline, metric: mcc, max_drop: 1.9}",
    "{id: v, type: baseline, metric: mcc, max_relative_drop: 5}",
    "{id: v, type: baseline, metric: ece, max_relative_drop: 1}",
    "{id: v, type: train_test_gap, metric: accuracy, max_gap: 0.99}",
    "{id: v, type: leakage, max_hamming: 24, max_overlap: 0.99}",
    "{id: v, type: per_slice, slice: camera, metric: recall, min: 0.01}",
    "{id: v, type: slice_gap, slice: camera, metric: accuracy, max_gap: 0.99}",
    "{id: v, type: provider_parity, max_disagreement: 1, max_prob_diff: 0.5}",
    "{id: v, type: label_quality, margin: false, max_rate: 0.99}",
    "{id: v, type: label_quality, margin: false, min_support: 1}",
    "{id: v, type: selective, threshold: 0.5, min_coverage: 0, min_recall: 0.01}",
]


def test_every_rule_type_has_vacuous_and_useful_examples() -> None:
    types = {parse_policy(f"version: 1\nname: x\nrules:\n  - {r}\n  - {GUARD}\n").rules[0].type for r in VACUOUS}
    # a leakage rule can always fail (a larger leak), and so can a contract, a time or a memory bound, and
    # a heldout_duplicates rule (more copies)
    assert types | {"leakage", "model_contract", "latency", "memory", "heldout_duplicates"} == set(RULE_TYPES)


@pytest.mark.parametrize("rule", sorted(VACUOUS))
def test_a_policy_of_vacuous_block_rules_is_refused_naming_them(rule: str) -> None:
    problems = _problems(f"version: 1\nname: x\nrules:\n  - {rule}\n  - {rule.replace('id: v', 'id: w')}\n")
    assert problems[0].startswith("rule 'v' (line 4): ") and VACUOUS[rule] in problems[0]
    assert problems[0].endswith(": no model can fail this rule")
    assert problems[1].startswith("rule 'w' (line 5): ")
    assert problems[2] == (
        "every block rule is vacuous (v, w): the policy could never FAIL a model; give at least one block rule a"
        " threshold a bad model can break"
    )


@pytest.mark.parametrize("rule", sorted(VACUOUS))
def test_a_vacuous_rule_beside_one_that_can_fail_is_listed(rule: str) -> None:
    policy = parse_policy(f"version: 1\nname: x\nrules:\n  - {GUARD}\n  - {rule}\n")
    [found] = vacuous_rules(policy)
    assert (found.id, found.line, found.severity) == ("v", 5, Severity.BLOCK)
    assert VACUOUS[rule] in found.reason and str(found).startswith("rule 'v' (line 5): ")


@pytest.mark.parametrize("rule", NOT_VACUOUS)
def test_a_rule_a_model_can_fail_is_not_vacuous(rule: str) -> None:
    policy = parse_policy(f"version: 1\nname: x\nrules:\n  - {rule}\n")
    assert vacuous_rules(policy) == []


def test_a_vacuous_block_rule_with_a_useful_warn_rule_is_still_refused() -> None:
    problems = _problems(
        "version: 1\nname: x\nrules:\n"
        "  - {id: v, type: metric, metric: accuracy, min: 0}\n"
        "  - {id: w, type: metric, metric: accuracy, min: 0.9, severity: warn}\n"
    )
    assert problems[-1].startswith("every block rule is vacuous (v):")


# -- tolerance: a value equal to an inclusive bound meets it ------------------------------------

# recalls 6/10, 8/10, 10/10: balanced accuracy 0.7999999999999999 in floating point
ROUNDED = ClassificationMetrics.from_confusion([[6, 4, 0], [2, 8, 0], [0, 0, 10]], PETS)


def test_the_rounding_case_is_real() -> None:
    assert ROUNDED.balanced_accuracy is not None and ROUNDED.balanced_accuracy < 0.8


@pytest.mark.parametrize(
    ("rule", "status", "message"),
    [
        ("{id: r, type: metric, metric: balanced_accuracy, min: 0.8}", Status.PASS, "balanced_accuracy 0.800 >= 0.800"),
        (
            "{id: r, type: metric, metric: balanced_accuracy, min: 0.8001}",
            Status.FAIL,
            "balanced_accuracy 0.8000 < 0.8001",
        ),
        ("{id: r, type: metric, metric: macro_recall, max: 0.8}", Status.PASS, "macro_recall 0.800 <= 0.800"),
        ("{id: r, type: metric, metric: macro_recall, max: 0.7999}", Status.FAIL, "macro_recall 0.8000 > 0.7999"),
    ],
)
def test_a_value_on_a_bound_meets_it_within_the_tolerance(rule: str, status: Status, message: str) -> None:
    assert _one(rule, ROUNDED) == (status, message)


def test_inclusive_floors_on_counts_both_sides() -> None:
    # 80/100 meets 0.8 and 79/100 does not, on every rule that compares with a floor or ceiling
    for hits, status in ((80, Status.PASS), (79, Status.FAIL)):
        m = ClassificationMetrics.from_confusion([[hits, 100 - hits], [0, 100]], ["a", "b"])
        assert _one("{id: r, type: per_class, metric: recall, classes: {a: 0.8}}", m)[0] is status
        assert _one("{id: r, type: confusion, actual: a, predicted: b, max_rate: 0.2}", m)[0] is status
        assert _one("{id: r, type: imbalance, max_ratio: 1, min_recall: 0.8}", m)[0] is Status.PASS  # balanced
    # accuracy 0.9 - majority rate 0.6 = 0.30000000000000004 in floating point: meets a margin of 0.3
    m = ClassificationMetrics.from_confusion([[60, 0], [10, 30]], ["a", "b"])
    assert _one("{id: r, type: majority_baseline, margin: 0.3}", m) == (
        Status.PASS,
        "accuracy 0.900 - majority-class rate 0.600 ('a') = +0.300 >= 0.300",
    )
    assert _one("{id: r, type: majority_baseline, margin: 0.3001}", m)[0] is Status.FAIL


def test_imbalance_recall_floor_uses_the_tolerance() -> None:
    # supports 100 and 10 (ratio 10 > 2): the floor applies; recall 8/10 = 0.8 meets 0.8, 7/10 does not
    for hits, status in ((8, Status.PASS), (7, Status.FAIL)):
        m = ClassificationMetrics.from_confusion([[100, 0], [10 - hits, hits]], ["a", "b"])
        assert _one("{id: r, type: imbalance, max_ratio: 2, min_recall: 0.8}", m)[0] is status


# -- class names: NFC ---------------------------------------------------------------------------

NFC_CAFE, NFD_CAFE = "caf\u00e9", "cafe\u0301"


def test_policy_class_names_are_read_as_nfc() -> None:
    policy = parse_policy(
        f"version: 1\nname: x\nrules:\n  - {{id: r, type: per_class, metric: recall, classes: {{{NFD_CAFE}: 0.9}}}}\n"
    )
    assert policy.rules[0].class_names() == [NFC_CAFE]
    policy.check_classes([NFC_CAFE, "tea"])  # the dataset's NFC name: found


def test_a_dataset_name_in_another_normalisation_is_said_so_not_guessed() -> None:
    rule = f"{{id: r, type: confusion, actual: {NFC_CAFE}, predicted: tea, max_rate: 0.1}}"
    policy = parse_policy(f"version: 1\nname: x\nrules:\n  - {rule}\n")
    with pytest.raises(PolicyError) as exc:
        policy.check_classes([NFD_CAFE, "tea"])
    [problem] = exc.value.problems
    assert problem.startswith(f"rule 'r' (line 4): unknown class '{NFC_CAFE}' (the dataset's class '{NFD_CAFE}' is")
    assert "the same name in another Unicode normalisation" in problem and "did you mean" not in problem


def test_two_floors_for_one_class_in_two_normalisations_are_refused() -> None:
    problems = _problems(
        f"version: 1\nname: x\nrules:\n  - {{id: r, type: per_class, metric: recall,"
        f" classes: {{{NFC_CAFE}: 0.9, {NFD_CAFE}: 0.1}}}}\n"
    )
    assert len(problems) == 1 and problems[0].startswith(
        f"rule 'r' (line 4): classes: class names '{NFC_CAFE}' and '{NFD_CAFE}' differ only in Unicode normalisation"
    )
