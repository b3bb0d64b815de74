"""The verdict JSON of `gate eval` and `gate check` pinned by golden files: the demo's two
models on the demo set, and the 98 %/12 % case. A change of evaluation internals must
leave every verdict field as it was; only what differs per run (times, ids, cache notes,
local paths, versions) is left out of the comparison.

Regenerate (only on purpose, and review the diff): ``GATE_UPDATE_GOLDEN=1 pytest
tests/test_golden_verdicts.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from gate import demo
from gate.cli import main
from gate.config import load_config
from gate.server import create_server
from tests.models import lookup_model, predictions_for

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden" / "verdicts"
DEFAULT_POLICY = ROOT / "policies" / "default.yaml"
# 5,000 samples, rabbit the rare class of 100: accuracy 0.980, rabbit recall 12/100
RARE = [[2444, 6, 0], [6, 2444, 0], [44, 44, 12]]

# fields that differ per run or per machine, not per evaluation
VOLATILE_TOP = ("started_at", "duration_s", "evaluation_id", "labels", "runtime")
VOLATILE_NESTED = {"model": ("path",), "dataset": ("source",), "policy": ("source",)}


def _stable(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def normalised(verdict: dict[str, Any], *, trained_model: bool) -> dict[str, Any]:
    out = {k: v for k, v in verdict.items() if k not in VOLATILE_TOP}
    for section, keys in VOLATILE_NESTED.items():
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k not in keys}
    if trained_model:  # a model trained here: its bytes may differ in the last bits between machines
        out["model"] = {k: v for k, v in out["model"].items() if k not in ("sha256", "bytes")}
    result: dict[str, Any] = _stable(out)
    return result


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, bool]]:
    root = tmp_path_factory.mktemp("golden")
    files = demo.build(root / "demo")
    x, y = predictions_for(RARE)
    np.savez(root / "rare.npz", x=x, y=y, classes=np.array(["cat", "dog", "rabbit"]))
    (root / "rare.yaml").write_text("name: rare\nsource: rare.npz\n")
    (root / "rare.onnx").write_bytes(lookup_model(3))
    return {
        "demo-good": (files.good_model, files.heldout_spec, True),
        "demo-bad": (files.bad_model, files.heldout_spec, True),
        "rare": (root / "rare.onnx", root / "rare.yaml", False),
    }


def _compare(name: str, verdict: dict[str, Any], trained_model: bool) -> None:
    got = normalised(verdict, trained_model=trained_model)
    path = GOLDEN / f"{name}.json"
    if os.environ.get("GATE_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert got == json.loads(path.read_text()), f"verdict differs from {path}"


CASES = ["demo-good", "demo-bad", "rare"]
EXIT = {"demo-good": 0, "demo-bad": 1, "rare": 1}


@pytest.mark.parametrize("name", CASES)
def test_gate_eval_verdict_equals_golden(
    name: str, cases: dict[str, tuple[Path, Path, bool]], capsys: pytest.CaptureFixture[str]
) -> None:
    model, spec, trained = cases[name]
    argv = ["eval", "--model", str(model), "--dataset", str(spec), "--policy", str(DEFAULT_POLICY)]
    code = main([*argv, "--format", "json", "--provider", "cpu", "--no-cache"])
    out, _ = capsys.readouterr()
    assert code == EXIT[name]
    _compare(name, json.loads(out), trained)


def test_gate_check_verdict_equals_golden(
    tmp_path: Path, cases: dict[str, tuple[Path, Path, bool]], capsys: pytest.CaptureFixture[str]
) -> None:
    specs = sorted({str(spec) for _, spec, _ in cases.values()})
    config = {
        "listen": "127.0.0.1:0",
        "data_dir": str(tmp_path / "data"),
        "datasets": specs,
        "policies": [str(ROOT / "policies")],
    }
    (tmp_path / "gate.yaml").write_text(yaml.safe_dump(config))
    server, port = create_server(load_config(tmp_path / "gate.yaml"))
    try:
        for name in CASES:
            model, spec, trained = cases[name]
            dataset = yaml.safe_load(spec.read_text())["name"]
            argv = ["check", "--server", f"127.0.0.1:{port}", "--model", str(model), "--dataset", dataset]
            code = main([*argv, "--policy", str(DEFAULT_POLICY), "--format", "json", "--provider", "cpu"])
            out, _ = capsys.readouterr()
            assert code == EXIT[name], name
            _compare(name, json.loads(out), trained)
    finally:
        server.stop(grace=None)
