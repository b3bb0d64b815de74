"""The bad-input corpus, robustness: ``robustness`` rules and sets a careless or hostile
author may give ``gate eval``, each run end to end with a real model on a real image set,
with its exact exit code and message; ``docs/bad-input-corpus.md`` lists every case (see
``doc_expectations``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gate.cli import main
from tests.test_robustness_rule import CLASSES, intensity_model, write_image_set

GOOD = "{id: robust, type: robustness, corruptions: [contrast], severities: [1], metric: accuracy, min: 0.5"


@dataclass(frozen=True)
class Case:
    id: str
    rule: str  # the rest of the rule after GOOD's fields, or a whole rule
    message: str
    tensors: bool = False  # an .npz set instead of images


CASES = [
    Case("robustness-npz-set", GOOD + "}", "robustness needs image samples", tensors=True),
    Case(
        "robustness-unknown-corruption",
        GOOD.replace("[contrast]", "[gausian_noise]") + "}",
        "unknown corruption 'gausian_noise' (did you mean 'gaussian_noise'?)",
    ),
    Case(
        "robustness-unavailable-corruption",
        GOOD.replace("[contrast]", "[frost]") + "}",
        "corruption 'frost' is not available: it overlays photographs of frost",
    ),
    Case("robustness-severity-out-of-range", GOOD.replace("[1]", "[1, 6]") + "}", "severity 6 is not one of 1..5"),
    Case("robustness-seed-as-text", GOOD + ", seed: '0'}", "Input should be a valid integer, not a string"),
    Case(
        "robustness-floor-as-no",
        GOOD.replace("min: 0.5", "min: no") + "}",
        "Input should be a valid number, not a boolean",
    ),
    Case("robustness-huge-seed", GOOD + ", seed: 100000000000000000000}", "less than or equal to 9223372036854775807"),
    Case(
        "robustness-no-champion",
        GOOD.replace("min: 0.5", "relative_to_baseline: 1.0") + "}",
        "relative_to_baseline needs a champion model",
    ),
]


def doc_expectations() -> dict[str, tuple[str, ...]]:
    """Each case of this module: the fragments its row in the doc must hold."""
    return {case.id: ("2 ERROR", case.message) for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_robustness_attack(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = write_image_set(tmp_path)
    if case.tensors:
        dataset = tmp_path / "tensors.npz"
        np.savez(dataset, x=np.zeros((4, 3, 32, 32), np.float32), y=np.arange(4), classes=np.array(CLASSES))
    model = tmp_path / "m.onnx"
    model.write_bytes(intensity_model(whole_image=True))
    policy = tmp_path / "p.yaml"
    policy.write_text(f"version: 1\nname: attack\nrules:\n  - {case.rule}\n")
    argv = ["eval", "--model", str(model), "--dataset", str(dataset), "--policy", str(policy), "--format", "json"]
    code = main([*argv, "--provider", "cpu"])
    verdict = json.loads(capsys.readouterr().out)
    assert (code, verdict["verdict"]) == (2, "ERROR")
    assert case.message in verdict["error"]["message"], verdict["error"]
    assert not list(tmp_path.rglob("*.tmp"))  # nothing half-written
