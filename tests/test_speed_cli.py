"""`gate eval` loads the dataset on a thread while it imports the rest of gate: the verdict
is the one `evaluate` gives on the path, errors included, in the same order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gate.cli import main
from gate.evaluation import evaluate
from tests.conftest import ROOT
from tests.models import linear_softmax_model

POLICY = ROOT / "policies" / "default.yaml"


def _files(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    data, model = tmp_path / "set.npz", tmp_path / "m.onnx"
    np.savez(data, x=rng.random((30, 1, 4, 4), dtype=np.float32), y=rng.integers(0, 3, 30), classes=["a", "b", "c"])
    weights = rng.normal(size=(16, 3)).astype(np.float32)
    model.write_bytes(linear_softmax_model(weights, np.zeros(3, np.float32), input_shape=["N", 1, 4, 4]))
    return data, model


def _cli(capsys: pytest.CaptureFixture[str], model: Path, data: Path, policy: Path) -> tuple[int, dict[str, object]]:
    argv = ["eval", "--model", str(model), "--dataset", str(data), "--policy", str(policy), "--format", "json"]
    code = main([*argv, "--provider", "cpu", "--no-cache"])
    return code, json.loads(capsys.readouterr().out)


def test_the_verdict_is_the_one_evaluate_gives(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, model = _files(tmp_path)
    code, verdict = _cli(capsys, model, data, POLICY)
    direct = evaluate(model, data, POLICY, provider="cpu").to_dict()
    assert code in (0, 1) and verdict["verdict"] == direct["verdict"]
    for field in ("dataset", "metrics", "rules", "policy"):
        assert verdict[field] == direct[field], field


def test_a_dataset_that_cannot_be_loaded_is_reported_as_evaluate_reports_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, model = _files(tmp_path)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip archive")
    code, verdict = _cli(capsys, model, broken, POLICY)
    assert code == 2 and verdict["error"] == evaluate(model, broken, POLICY, provider="cpu").to_dict()["error"]
    assert "cannot read" in verdict["error"]["message"] and str(broken) in verdict["error"]["message"]
    # a bad policy is still the first error reported, before the dataset's
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nname: p\nrules: [{id: a, type: metric, metric: accuracy, min: yes}]\n")
    code, verdict = _cli(capsys, model, broken, policy)
    assert code == 2 and verdict["error"] == evaluate(model, broken, policy, provider="cpu").to_dict()["error"]
    assert str(policy) in verdict["error"]["message"] and str(broken) not in verdict["error"]["message"]
