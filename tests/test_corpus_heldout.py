"""The bad-input corpus, held-out rules: careless or hostile `label_quality`,
`heldout_duplicates`, `selective` and top-k policies, each run end to end through
``gate eval`` with real models, with its exact exit code and message;
``docs/bad-input-corpus.md`` lists every case (see ``doc_expectations``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gate.cli import main
from tests.test_corpus import Inputs, baseline
from tests.test_corpus_policy import PolicyCase, _gate_eval


def _policy(*rules: str) -> Callable[[Inputs], Inputs]:
    text = "version: 1\nname: attack\nrules:\n" + "".join(f"  - {r}\n" for r in rules)
    return lambda inputs: inputs.put_policy(text)


CASES = [
    PolicyCase(
        "heldout-label-rate-written-no",
        _policy("{id: labels, type: label_quality, max_rate: no}"),
        2,
        "ERROR",
        "rule 'labels' (line 4): max_rate: Input should be a valid number, not a boolean (got 'no', which YAML reads"
        " as False)",
        "PolicyError",
    ),
    PolicyCase(
        "heldout-label-rate-quoted",
        _policy("{id: labels, type: label_quality, max_rate: '0.02'}"),
        2,
        "ERROR",
        "rule 'labels' (line 4): max_rate: Input should be a valid number, not a string: a quoted number is text,"
        " write it without quotes (got '0.02')",
        "PolicyError",
    ),
    PolicyCase(
        "heldout-label-rate-one",
        _policy("{id: labels, type: label_quality, max_rate: 1}"),
        2,
        "ERROR",
        "rule 'labels' (line 4): max_rate 1 is a rate and must be in [0, 1)",
        "PolicyError",
    ),
    PolicyCase(
        "heldout-label-quality-nothing-to-judge",
        _policy("{id: labels, type: label_quality, margin: false}"),
        2,
        "ERROR",
        "rule 'labels' (line 4): needs `max_rate`, `margin: true` or `min_support` (or several)",
        "PolicyError",
    ),
    PolicyCase(
        "heldout-label-quality-no-margin-to-compare",
        _policy("{id: labels, type: label_quality}"),
        0,
        "PASS",
        "no blocking metric rule has a margin to compare with",
    ),
    PolicyCase(
        "heldout-duplicates-radius-huge",
        _policy("{id: dups, type: heldout_duplicates, max_hamming: 64, conflicts: 0}"),
        2,
        "ERROR",
        "rule 'dups' (line 4): max_hamming: Input should be less than or equal to 24",
        "PolicyError",
    ),
    PolicyCase(
        "heldout-duplicates-no-limit",
        _policy("{id: dups, type: heldout_duplicates, max_hamming: 4}"),
        2,
        "ERROR",
        "rule 'dups' (line 4): needs `max_rate`, `conflicts` or both",
        "PolicyError",
    ),
    PolicyCase(
        "heldout-duplicates-conflicts-negative",
        _policy("{id: dups, type: heldout_duplicates, conflicts: -1}"),
        2,
        "ERROR",
        "rule 'dups' (line 4): conflicts: Input should be greater than or equal to 0",
        "PolicyError",
    ),
    PolicyCase(
        "heldout-duplicates-not-images",
        _policy("{id: dups, type: heldout_duplicates, conflicts: 0}"),
        2,
        "ERROR",
        "heldout_duplicates rules compare the held-out images by perceptual hash, and dataset 'pets' holds samples"
        " of shape (1,), which are not images ((H, W), (H, W, C) or (C, H, W) with C in 1, 3, 4)",
        "DatasetError",
    ),
    PolicyCase(
        "heldout-selective-threshold-above-one",
        _policy("{id: abstain, type: selective, threshold: 1.5, min_coverage: 0.9}"),
        2,
        "ERROR",
        "rule 'abstain' (line 4): threshold: Input should be less than or equal to 1",
        "PolicyError",
    ),
    PolicyCase(
        "heldout-selective-no-floor",
        _policy("{id: abstain, type: selective, threshold: 0.8}"),
        2,
        "ERROR",
        "rule 'abstain' (line 4): needs `min_coverage`, `min_accuracy`, `min_recall` or `classes` (or several)",
        "PolicyError",
    ),
    PolicyCase(
        "heldout-selective-unknown-class",
        _policy("{id: abstain, type: selective, threshold: 0.5, classes: {cow: 0.9}}"),
        2,
        "ERROR",
        "rule 'abstain' (line 4): unknown class 'cow'; the dataset's classes are cat, dog, rabbit",
        "PolicyError",
    ),
    PolicyCase(
        "heldout-top-6-accuracy",
        _policy("{id: top, type: metric, metric: top_6_accuracy, min: 0.9}"),
        2,
        "ERROR",
        "rule 'top' (line 4): unknown metric 'top_6_accuracy' (did you mean 'top_5_accuracy'?)",
        "PolicyError",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_gate_eval_answers_each_held_out_attack_exactly(
    case: PolicyCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, verdict = _gate_eval(capsys, case.breaks(baseline(tmp_path)))
    error = verdict["error"] or {}
    said = error.get("message") or " ".join(r["message"] for r in verdict["rules"])
    assert (code, verdict["verdict"], error.get("type", "")) == (case.code, case.verdict, case.error), said
    assert case.message in said


#: ``--label-issues-out`` naming the file another output of ``gate eval`` writes: refused
#: before any work (exit 2, no verdict), not written over that output at the end.
OUTPUT_CLASHES = {
    "heldout-label-issues-out-is-the-predictions-file": "--predictions-out",
    "heldout-label-issues-out-is-the-report-file": "--output",
}


@pytest.mark.parametrize("case_id", list(OUTPUT_CLASHES))
def test_gate_eval_refuses_a_suspects_file_another_output_names(
    case_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = _policy("{id: labels, type: label_quality, max_rate: 0.02}")(baseline(tmp_path))
    option, out = OUTPUT_CLASHES[case_id], tmp_path / "out.csv"
    argv = ["eval", "--provider", "cpu", "--model", str(inputs.model), "--dataset", str(inputs.dataset)]
    code = main([*argv, "--policy", str(inputs.policy), option, str(out), "--label-issues-out", str(out)])
    said = capsys.readouterr()
    assert (code, said.out, out.exists()) == (2, "", False)
    assert f"gate eval: label issues file {out}: {option} names the same file; give each its own" in said.err


def doc_expectations() -> dict[str, tuple[str, ...]]:
    """Each case of this module: the fragments its row in the doc must hold."""
    found = {c.id: tuple(x for x in (f"{c.code} {c.verdict}", c.error) if x) for c in CASES}
    return found | {case_id: ("exit 2, no verdict", option) for case_id, option in OUTPUT_CLASHES.items()}
