"""`gate eval`, `gate policy validate` and `gate check`'s policy options end to end: real
ONNX models, real files, a real server, exit codes and output as a CD step sees them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import precision_recall_fscore_support

from gate import demo
from gate.cli import main
from tests.conftest import Served
from tests.models import linear_softmax_model, lookup_model, predictions_for

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = ROOT / "policies" / "default.yaml"
INVALID = Path(__file__).parent / "policies" / "invalid"
PETS = ["cat", "dog", "rabbit"]
TUTORIAL = [[50, 2, 3], [4, 45, 1], [2, 3, 40]]
# 5,000 samples, rabbit the rare class of 100: accuracy 4,900/5,000 = 0.980, rabbit recall 12/100
RARE = [[2444, 6, 0], [6, 2444, 0], [44, 44, 12]]


def _write_set(tmp: Path, cm: list[list[int]], name: str = "set") -> tuple[Path, Path]:
    x, y = predictions_for(cm)
    data, model = tmp / f"{name}.npz", tmp / f"{name}.onnx"
    np.savez(data, x=x, y=y, classes=np.array(PETS))
    model.write_bytes(lookup_model(len(cm)))
    return data, model


def _policy(tmp: Path, rules: str, name: str = "p") -> Path:
    p = tmp / f"{name}.yaml"
    p.write_text(f"version: 1\nname: {name}\nrules:\n{rules}")
    return p


def gate(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def gate_json(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, dict[str, Any]]:
    code, out, _ = gate(capsys, "eval", "--format", "json", "--provider", "cpu", *argv)
    return code, json.loads(out)  # stdout is exactly one JSON document


def test_tutorial_matrix_through_gate_eval_equals_sklearn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, model = _write_set(tmp_path, TUTORIAL)
    code, v = gate_json(capsys, "--model", model, "--dataset", data, "--policy", DEFAULT_POLICY)
    assert v["schema"] == "gate.verdict/v1"
    assert v["metrics"]["confusion_matrix"] == TUTORIAL
    assert v["dataset"]["classes"] == PETS and v["dataset"]["samples"] == 150
    assert v["runtime"]["provider"] == "CPUExecutionProvider"
    raw = np.load(data)
    p, r, f, s = precision_recall_fscore_support(raw["y"], raw["x"].ravel().astype(int), labels=[0, 1, 2])
    for i, name in enumerate(PETS):
        pc = v["metrics"]["per_class"][name]
        assert (pc["precision"], pc["recall"], pc["f1"], pc["support"]) == (p[i], r[i], f[i], s[i])
    assert v["metrics"]["per_class"]["cat"]["precision"] == 50 / 56
    assert v["metrics"]["per_class"]["cat"]["recall"] == 50 / 55
    assert code == {"PASS": 0, "FAIL": 1}[v["verdict"]]


def test_98_percent_accuracy_12_percent_recall_is_blocked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, model = _write_set(tmp_path, RARE)
    code, v = gate_json(capsys, "--model", model, "--dataset", data, "--policy", DEFAULT_POLICY)
    assert v["metrics"]["accuracy"] == 0.98 and v["dataset"]["samples"] == 5000
    assert v["metrics"]["per_class"]["rabbit"]["recall"] == 0.12
    assert code == 1 and v["verdict"] == "FAIL"
    recall = next(r for r in v["rules"] if r["id"] == "recall-floor")
    assert recall["status"] == "fail"
    assert recall["message"] == "rabbit: recall 0.120 < 0.800 (12/100)"
    imbalance = next(r for r in v["rules"] if r["id"] == "imbalance-guard")
    assert imbalance["message"] == (
        "support ratio 24.5 (cat 2450 / rabbit 100) > 3; rabbit: recall 0.120 < 0.850 (12/100)."
        " Accuracy paradox: accuracy (0.980) hides this, because 'rabbit' is only 2.0% of the set"
    )
    # accuracy alone is not enough: the same model passes an accuracy-only policy
    only_accuracy = _policy(tmp_path, "  - {id: accuracy, type: metric, metric: accuracy, min: 0.95}\n")
    code, v = gate_json(capsys, "--model", model, "--dataset", data, "--policy", only_accuracy)
    assert code == 0 and v["verdict"] == "PASS"
    assert v["rules"][0]["message"] == "accuracy 0.980 >= 0.950"


def test_text_report_for_people(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, model = _write_set(tmp_path, RARE)
    code, out, err = gate(
        capsys, "eval", "--model", model, "--dataset", data, "--policy", DEFAULT_POLICY, "--provider", "cpu"
    )
    lines = out.splitlines()
    assert code == 1
    assert lines[-1] == "VERDICT: FAIL: 3 blocking rules failed: recall-floor, balanced-accuracy, imbalance-guard"
    assert "  class   support  predicted  precision  recall     f1" in lines
    assert "  rabbit      100         12      1.000   0.120  0.214" in lines
    assert "  ✗ FAIL  recall-floor       rabbit: recall 0.120 < 0.800 (12/100)" in lines
    assert any(line.startswith("  ✓ pass  enough-evidence") for line in lines)
    assert "Confusion matrix (rows: actual, columns: predicted)" in lines
    assert "  rabbit    44    44      12" in lines
    assert err == ""


@pytest.mark.parametrize(
    ("fixture", "culprit"),
    [
        ("unknown-key.yaml", "unknown key 'mni'"),
        ("unknown-rule-type.yaml", "unknown rule type 'metrc'"),
        ("unknown-metric.yaml", "rule 'acc' (line 4): unknown metric 'acuracy'"),
        ("duplicate-ids.yaml", "rule 'floor' (line 5): duplicate rule id"),
        ("min-above-max.yaml", "rule 'band' (line 4): min 0.9 > max 0.8"),
        ("threshold-out-of-range.yaml", "rule 'recall-floors' (line 4): min 80 is outside"),
        ("empty-rules.yaml", "the rule list is empty"),
        ("unknown-class.yaml", "rule 'recall-floors' (line 4): unknown class 'rabit' (did you mean 'rabbit'?)"),
    ],
)
def test_policy_errors_exit_2_naming_the_culprit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fixture: str, culprit: str
) -> None:
    data, model = _write_set(tmp_path, TUTORIAL)
    code, v = gate_json(capsys, "--model", model, "--dataset", data, "--policy", INVALID / fixture)
    assert code == 2 and v["verdict"] == "ERROR" and v["metrics"] is None and v["rules"] == []
    assert v["error"]["type"] == "PolicyError" and culprit in v["error"]["message"]
    code, out, err = gate(capsys, "policy", "validate", INVALID / fixture, "--dataset", data)
    assert code == 2 and out == "" and culprit in err


def test_policy_validate_accepts_a_good_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = _write_set(tmp_path, TUTORIAL)
    code, out, _ = gate(capsys, "policy", "validate", DEFAULT_POLICY, "--dataset", data)
    assert code == 0
    assert out.splitlines()[0].startswith(
        f"policy 'default' ({DEFAULT_POLICY}) is valid against dataset 'set' (3 classes): 7 rules, sha256 "
    )


def _bad_image_set(tmp: Path) -> Path:
    root = tmp / "imgs"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((2, 2), 40 * i, np.uint8), mode="L").save(root / name / f"{i}.png")
    (root / "b" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    spec = tmp / "imgs.yaml"
    spec.write_text("name: imgs\nsource: imgs\npreprocess: {channels: L}\n")
    return spec


@pytest.mark.parametrize(
    ("case", "kind", "message"),
    [
        ("corrupt", "ModelError", "cannot load model {model}"),
        ("missing-model", "ModelError", "model file not found: {model}"),
        ("missing-dataset", "DatasetError", "{data}"),
        ("wrong-k", "ModelError", "outputs 4 classes; the dataset has 3 (cat, dog, rabbit)"),
        ("nan", "ModelError", "output holds NaN for sample x[3] (index 3)"),
        ("unreadable-image", "DatasetError", "b/2.png"),
    ],
)
def test_bad_inputs_exit_2_naming_what_is_wrong(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, kind: str, message: str
) -> None:
    data, model = _write_set(tmp_path, TUTORIAL)
    if case == "corrupt":
        model.write_bytes(model.read_bytes()[: len(model.read_bytes()) // 2])
    elif case == "missing-model":
        model = tmp_path / "absent.onnx"
    elif case == "missing-dataset":
        data = tmp_path / "absent.npz"
    elif case == "wrong-k":
        model.write_bytes(lookup_model(4))
    elif case == "nan":
        raw = dict(np.load(data))
        raw["x"][3, 0] = -1.0
        np.savez(data, **raw)
        model.write_bytes(lookup_model(3, nan_below_zero=True))
    elif case == "unreadable-image":
        data = _bad_image_set(tmp_path)
        model.write_bytes(
            linear_softmax_model(np.zeros((4, 2), np.float32), np.zeros(2, np.float32), input_shape=["N", 1, 2, 2])
        )
    code, v = gate_json(capsys, "--model", model, "--dataset", data, "--policy", DEFAULT_POLICY)
    assert code == 2 and v["verdict"] == "ERROR"
    assert v["error"]["type"] == kind
    assert message.format(model=model, data=data) in v["error"]["message"]


def test_digits_from_png_imagefolder_equal_the_arrays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a real model trained on scikit-learn's digits; its held-out split as PNGs through a
    # dataset spec (decode, greyscale, scale), and the same split as arrays in an .npz
    split = demo.load_split()
    model = tmp_path / "digits.onnx"
    model.write_bytes(demo.train(split.x_train, split.y_train))
    spec = demo.write_imagefolder(tmp_path / "png", split.x_test, split.y_test)
    arrays = tmp_path / "digits.npz"
    np.savez(arrays, x=split.x_test, y=split.y_test, classes=np.array(demo.CLASSES))
    code_png, from_png = gate_json(capsys, "--model", model, "--dataset", spec, "--policy", DEFAULT_POLICY)
    code_arr, from_arrays = gate_json(capsys, "--model", model, "--dataset", arrays, "--policy", DEFAULT_POLICY)
    assert from_png["error"] is None and from_arrays["error"] is None
    assert from_png["dataset"]["samples"] == from_arrays["dataset"]["samples"] == len(split.y_test)
    assert from_png["metrics"] == from_arrays["metrics"]
    assert from_png["metrics"]["accuracy"] > 0.9  # a real model, not a constant
    assert code_png == code_arr == 0
    assert [r["message"] for r in from_png["rules"]] == [r["message"] for r in from_arrays["rules"]]


def test_output_file_is_written_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, model = _write_set(tmp_path, TUTORIAL)
    out = tmp_path / "reports" / "verdict.json"
    code, stdout, err = gate(
        capsys,
        "eval",
        "--model",
        model,
        "--dataset",
        data,
        "--policy",
        DEFAULT_POLICY,
        "--format",
        "json",
        "--output",
        out,
        "--provider",
        "cpu",
    )
    assert stdout == "" and f"written to {out}" in err
    verdict = json.loads(out.read_text())["verdict"]
    assert code == {"PASS": 0, "FAIL": 1}[verdict]
    assert [p.name for p in out.parent.iterdir()] == ["verdict.json"]  # no temporary left behind


def test_console_script_exit_codes_and_clean_stdout(tmp_path: Path) -> None:
    data, model = _write_set(tmp_path, RARE)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "gate",
            "eval",
            "--model",
            str(model),
            "--dataset",
            str(data),
            "--policy",
            str(DEFAULT_POLICY),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert json.loads(run.stdout)["verdict"] == "FAIL"
    bad = subprocess.run(
        [sys.executable, "-m", "gate", "eval", "--model", "x"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "--dataset" in bad.stderr


def test_eval_policy_file_is_the_policy_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, model = _write_set(tmp_path, RARE)
    code_old, old = gate_json(capsys, "--model", model, "--dataset", data, "--policy", DEFAULT_POLICY)
    code_new, new = gate_json(capsys, "--model", model, "--dataset", data, "--policy-file", DEFAULT_POLICY)
    assert code_old == code_new == 1
    assert new["policy"] == old["policy"] and new["rules"] == old["rules"]


STRICT = "version: 1\nname: strict\nrules:\n  - {id: r, type: per_class, metric: recall, min: 0.9}\n"
DEPRECATED = "gate check: --policy with a file is deprecated; use --policy-file "


def _check(s: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str], *policy: str | Path) -> tuple[int, Any, str]:
    """`gate check` of the lookup model on the server's pets set: exit code, verdict JSON, stderr."""
    model = tmp_path / "m.onnx"
    model.write_bytes(lookup_model(3))
    argv = ["check", "--server", s.address, "--model", model, "--dataset", "pets", "--format", "json", *policy]
    code, out, err = gate(capsys, *argv)
    return code, json.loads(out), err


@pytest.fixture
def strict(tmp_path: Path) -> Path:
    """A local policy that the lookup model on the pets set fails (rabbit recall 40/45)."""
    path = tmp_path / "strict.yaml"
    path.write_text(STRICT)
    return path


def test_check_policy_file_goes_inline(
    serve: Callable[..., Served], strict: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = serve()
    code, doc, err = _check(s, tmp_path, capsys, "--policy-file", strict)
    assert code == 1 and doc["policy"]["name"] == "strict"
    assert doc["rules"][0]["message"] == "rabbit: recall 0.889 < 0.900 (40/45)"
    assert DEPRECATED not in err
    code, doc, err = _check(s, tmp_path, capsys, "--policy", "default")  # a registered name
    assert code == 0 and doc["policy"]["name"] == "default" and DEPRECATED not in err


def test_check_policy_with_a_file_still_works_with_a_note(
    serve: Callable[..., Served], strict: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The old form: --policy naming a local file sends it inline, and says to use --policy-file."""
    s = serve()
    code, old, err = _check(s, tmp_path, capsys, "--policy", strict)
    assert code == 1 and old["policy"]["name"] == "strict"
    assert [line for line in err.splitlines() if "deprecated" in line] == [f"{DEPRECATED}{strict}"]
    _, new, _ = _check(s, tmp_path, capsys, "--policy-file", strict)
    assert (new["policy"], new["rules"]) == (old["policy"], old["rules"])


def test_check_policy_options_exclude_each_other(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["check", "--server", "127.0.0.1:1", "--model", str(tmp_path / "m.onnx"), "--dataset", "pets"]
    for policy in (["--policy", "default", "--policy-file", str(DEFAULT_POLICY)], []):
        with pytest.raises(SystemExit) as exited:
            main([*base, *policy])
        assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --policy-file: not allowed with argument --policy" in err
    assert "one of the arguments --policy --policy-file is required" in err


def test_check_unreadable_policy_file_is_error_naming_it(
    serve: Callable[..., Served], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = serve()
    missing = tmp_path / "missing.yaml"
    code, doc, _ = _check(s, tmp_path, capsys, "--policy-file", missing)
    assert code == 2 and doc["verdict"] == "ERROR"
    assert doc["error"] == {"type": "RequestError", "message": f"cannot read {missing}: No such file or directory"}
