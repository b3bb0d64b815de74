"""The bad-input corpus, held-out rules: careless or hostile `label_quality`,
`heldout_duplicates`, `selective` and top-k policies, each run end to end through
``gate eval`` with real models, with its exact exit code and message;
``docs/bad-input-corpus.md`` lists every case (see ``doc_expectations``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gate.cli import main
from tests.test_corpus import Inputs, baseline


def _policy(*rules: str) -> Callable[[Inputs], Inputs]:
    text = "version: 1\nname: attack\nrules:\n" + "".join(f"  - {r}\n" for r in rules)
    return lambda inputs: inputs.put_policy(text)


@dataclass(frozen=True)
class HeldoutCase:
    """One attack through ``gate eval``: the outcome, and a fragment of the error message
    (ERROR) or of the rule messages (PASS, FAIL)."""

    id: str
    breaks: Callable[[Inputs], Inputs]
    code: int
    verdict: str
    message: str
    error: str = ""


CASES = [
    HeldoutCase(
        "heldout-label-rate-written-no",
        _policy("{id: labels, type: label_quality, max_rate: no}"),
        2,
        "ERROR",
        "rule 'labels' (line 4): max_rate: Input should be a valid number, not a boolean (got 'no', which YAML reads"
        " as False)",
        "PolicyError",
    ),
    HeldoutCase(
        "heldout-label-rate-quoted",
        _policy("{id: labels, type: label_quality, max_rate: '0.02'}"),
        2,
        "ERROR",
        "rule 'labels' (line 4): max_rate: Input should be a valid number, not a string: a quoted number is text,"
        " write it without quotes (got '0.02')",
        "PolicyError",
    ),
    HeldoutCase(
        "heldout-label-rate-one",
        _policy("{id: labels, type: label_quality, max_rate: 1}"),
        2,
        "ERROR",
        "rule 'labels' (line 4): max_rate 1 is a rate and must be in [0, 1)",
        "PolicyError",
    ),
    HeldoutCase(
        "heldout-label-quality-nothing-to-judge",
        _policy("{id: labels, type: label_quality, margin: false}"),
        2,
        "ERROR",
        "rule 'labels' (line 4): needs `max_rate`, `margin: true` or `min_support` (or several)",
        "PolicyError",
    ),
    HeldoutCase(
        "heldout-label-quality-no-margin-to-compare",
        _policy("{id: labels, type: label_quality}"),
        0,
        "PASS",
        "no blocking metric rule has a margin to compare with",
    ),
    HeldoutCase(
        "heldout-duplicates-radius-huge",
        _policy("{id: dups, type: heldout_duplicates, max_hamming: 64, conflicts: 0}"),
        2,
        "ERROR",
        "rule 'dups' (line 4): max_hamming: Input should be less than or equal to 24",
        "PolicyError",
    ),
    HeldoutCase(
        "heldout-duplicates-no-limit",
        _policy("{id: dups, type: heldout_duplicates, max_hamming: 4}"),
        2,
        "ERROR",
        "rule 'dups' (line 4): needs `max_rate`, `conflicts` or both",
        "PolicyError",
    ),
    HeldoutCase(
        "heldout-duplicates-conflicts-negative",
        _policy("{id: dups, type: heldout_duplicates, conflicts: -1}"),
        2,
        "ERROR",
        "rule 'dups' (line 4): conflicts: Input should be greater than or equal to 0",
        "PolicyError",
    ),
    HeldoutCase(
        "heldout-duplicates-not-images",
        _policy("{id: dups, type: heldout_duplicates, conflicts: 0}"),
        2,
        "ERROR",
        "heldout_duplicates rules compare the held-out images by perceptual hash, and dataset 'pets' holds samples"
        " of shape (1,), which are not images ((H, W), (H, W, C) or (C, H, W) with C in 1, 3, 4)",
        "DatasetError",
    ),
    HeldoutCase(
        "heldout-selective-threshold-above-one",
        _policy("{id: abstain, type: selective, threshold: 1.5, min_coverage: 0.9}"),
        2,
        "ERROR",
        "rule 'abstain' (line 4): threshold: Input should be less than or equal to 1",
        "PolicyError",
    ),
    HeldoutCase(
        "heldout-selective-no-floor",
        _policy("{id: abstain, type: selective, threshold: 0.8}"),
        2,
        "ERROR",
        "rule 'abstain' (line 4): needs `min_coverage`, `min_accuracy`, `min_recall` or `classes` (or several)",
        "PolicyError",
    ),
    HeldoutCase(
        "heldout-selective-unknown-class",
        _policy("{id: abstain, type: selective, threshold: 0.5, classes: {cow: 0.9}}"),
        2,
        "ERROR",
        "rule 'abstain' (line 4): unknown class 'cow'; the dataset's classes are cat, dog, rabbit",
        "PolicyError",
    ),
    HeldoutCase(
        "heldout-top-6-accuracy",
        _policy("{id: top, type: metric, metric: top_6_accuracy, min: 0.9}"),
        2,
        "ERROR",
        "rule 'top' (line 4): unknown metric 'top_6_accuracy' (did you mean 'top_5_accuracy'?)",
        "PolicyError",
    ),
]


def _gate_eval(capsys: pytest.CaptureFixture[str], inputs: Inputs) -> tuple[int, dict[str, Any]]:
    argv = ["eval", "--format", "json", "--provider", "cpu", "--model", str(inputs.model)]
    code = main([*argv, "--dataset", str(inputs.dataset), "--policy", str(inputs.policy), "--no-cache"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_gate_eval_answers_each_held_out_attack_exactly(
    case: HeldoutCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = case.breaks(baseline(tmp_path))
    code, verdict = _gate_eval(capsys, inputs)
    assert (code, verdict["verdict"]) == (case.code, case.verdict), verdict.get("error")
    if case.verdict == "ERROR":
        assert verdict["error"]["type"] == case.error
        assert case.message in verdict["error"]["message"]
    else:
        assert verdict["error"] is None
        assert case.message in " ".join(r["message"] for r in verdict["rules"])


def doc_expectations() -> dict[str, tuple[str, ...]]:
    """Each case of this module: the fragments its row in the doc must hold."""
    return {c.id: tuple(x for x in (f"{c.code} {c.verdict}", c.error) if x) for c in CASES}
