"""The bundled demo (examples/digits) gives the verdicts the README promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gate.cli import main

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "examples" / "digits"


@pytest.mark.parametrize(("model", "code"), [("good", 0), ("bad", 1)])
def test_bundled_demo(model: str, code: int, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["eval", "--model", str(DIGITS / f"{model}.onnx"), "--dataset", str(DIGITS / "heldout.yaml")]
    argv += ["--policy", str(ROOT / "policies" / "default.yaml"), "--format", "json"]
    assert main(argv) == code
    v = json.loads(capsys.readouterr().out)
    assert v["dataset"]["samples"] == 540 and v["dataset"]["name"] == "digits-heldout"
    failing = [r["message"] for r in v["rules"] if r["status"] == "fail" and r["severity"] == "block"]
    if model == "good":
        assert failing == [] and v["metrics"]["accuracy"] > 0.95
    else:
        assert failing == ["eight: recall 0.115 < 0.800 (6/52)"]
        assert v["metrics"]["accuracy"] > 0.89
