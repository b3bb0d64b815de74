"""``model_contract`` rules and ``gate contract``: each mismatch between what the serving
code expects and what the model file declares is its own failed check, naming the field,
what was expected and what was found; a broken contract stops the evaluation before the
model runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from onnx import TensorProto, helper

from gate.cli import main
from gate.evaluation import evaluate
from gate.verdict import Decision
from tests.conftest import PETS, write_pets
from tests.models import IR_VERSION, lookup_model, typed_lookup_model

CONTRACT = """version: 1
name: serving
rules:
  - {id: accuracy, type: metric, metric: accuracy, min: 0.5}
  - id: contract
    type: model_contract
    inputs: [{name: x, dtype: float32, shape: [N, 1]}]
    outputs: [{name: scores, dtype: float32, shape: [N, 3]}]
    opset_max: {ai.onnx: 17}
    max_size_mb: 1
"""


def _write(tmp_path: Path, model: bytes, policy: str = CONTRACT) -> tuple[Path, Path, Path]:
    (tmp_path / "model.onnx").write_bytes(model)
    (tmp_path / "policy.yaml").write_text(policy)
    return tmp_path / "model.onnx", write_pets(tmp_path), tmp_path / "policy.yaml"


def _failed(verdict: Any) -> list[dict[str, Any]]:
    [rule] = [r for r in verdict.rules if r.type == "model_contract"]
    return [c for c in rule.details["checks"] if c["status"] == "fail"]


def test_a_model_that_meets_its_contract_passes_and_is_run(tmp_path: Path) -> None:
    verdict = evaluate(*_write(tmp_path, lookup_model(3)))
    assert verdict.decision is Decision.PASS, verdict.to_dict()
    assert [r.status.value for r in verdict.rules] == ["pass", "pass"]
    assert verdict.metrics is not None and verdict.metrics["accuracy"] == pytest.approx(0.9)
    assert "the model meets its contract (9 checks)" in verdict.rules[1].message


def test_a_renamed_input_fails_naming_both_names(tmp_path: Path) -> None:
    policy = CONTRACT.replace("name: x,", "name: pixels,")
    verdict = evaluate(*_write(tmp_path, typed_lookup_model(3, input_name="images"), policy))
    assert verdict.decision is Decision.FAIL
    [check] = _failed(verdict)
    assert check["field"] == "inputs[0].name" and check["expected"] == "pixels" and check["found"] == ["images"]
    assert "inputs[0].name: expected 'pixels', found 'images'" in verdict.rules[1].message


def test_dtype_fixed_batch_and_opset_are_each_their_own_failed_check(tmp_path: Path) -> None:
    model = typed_lookup_model(3, elem_type=TensorProto.FLOAT16, batch=8, opset=18)
    verdict = evaluate(*_write(tmp_path, model))
    assert verdict.decision is Decision.FAIL
    found = {c["field"]: (c["expected"], c["found"]) for c in _failed(verdict)}
    assert found == {
        "inputs[0] 'x'.dtype": ("float32", "float16"),
        "inputs[0] 'x'.shape[0]": ("N", 8),
        "outputs[0] 'scores'.dtype": ("float32", "float16"),
        "outputs[0] 'scores'.shape[0]": ("N", 8),
        "opset_max['ai.onnx']": (17, 18),
    }
    message = verdict.rules[1].message
    assert message.startswith("5 of 9 contract checks failed")
    assert "inputs[0] 'x'.shape[0]: expected a symbolic dimension (N), found fixed 8" in message
    assert "opset_max['ai.onnx']: expected <= 17, found 18" in message
    # the model was not run: the other rules say why they were not evaluated
    assert verdict.metrics is None
    assert verdict.rules[0].status.value == "inconclusive"
    assert "the model breaks its contract (rule 'contract')" in verdict.rules[0].message


def test_class_metadata_in_another_order_fails_naming_both_orders(tmp_path: Path) -> None:
    policy = CONTRACT + "    require_class_metadata: true\n"
    verdict = evaluate(*_write(tmp_path, lookup_model(3, classes=["dog", "cat", "rabbit"]), policy))
    assert verdict.decision is Decision.FAIL and verdict.error is None
    [check] = _failed(verdict)
    assert check["expected"] == PETS and check["found"] == ["dog", "cat", "rabbit"]
    assert "expected the dataset's order [cat, dog, rabbit], found [dog, cat, rabbit]" in check["message"]


def test_missing_class_metadata_fails_when_required(tmp_path: Path) -> None:
    policy = CONTRACT + "    require_class_metadata: true\n"
    verdict = evaluate(*_write(tmp_path, lookup_model(3), policy))
    [check] = _failed(verdict)
    assert check["message"] == "metadata.classes: expected a JSON list of class names, found none"


def test_a_file_over_its_size_limit_fails(tmp_path: Path) -> None:
    verdict = evaluate(*_write(tmp_path, lookup_model(3), CONTRACT.replace("max_size_mb: 1", "max_size_mb: 0.0001")))
    [check] = _failed(verdict)
    assert check["field"] == "max_size_mb" and "MB > 0.0001 MB" in check["message"]


def test_onnx_checker_full_check_failure_is_a_failed_check(tmp_path: Path) -> None:
    # the output is declared with 5 classes, the graph computes 3: strict shape inference objects
    nodes = [helper.make_node("Identity", ["x"], ["scores"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 5])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    policy = "version: 1\nname: c\nrules:\n  - {id: contract, type: model_contract}\n"
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())
    (tmp_path / "p.yaml").write_text(policy)
    code = main(["contract", "--model", str(tmp_path / "m.onnx"), "--policy", str(tmp_path / "p.yaml")])
    assert code == 1


def test_gate_contract_needs_no_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, _, policy = _write(tmp_path, typed_lookup_model(3, input_name="images"))
    assert main(["contract", "--model", str(model), "--policy", str(policy), "--format", "json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["verdict"] == "FAIL" and [r["id"] for r in document["rules"]] == ["contract"]
    assert "expected 'x', found 'images'" in document["rules"][0]["message"]
    good = tmp_path / "good.onnx"
    good.write_bytes(lookup_model(3))
    assert main(["contract", "--model", str(good), "--policy", str(policy)]) == 0


def test_gate_contract_compares_class_order_with_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model, spec, policy = _write(
        tmp_path, lookup_model(3, classes=["dog", "cat", "rabbit"]), CONTRACT + "    require_class_metadata: true\n"
    )
    assert main(["contract", "--model", str(model), "--policy", str(policy)]) == 0  # declared, nothing to compare
    assert main(["contract", "--model", str(model), "--policy", str(policy), "--dataset", str(spec)]) == 1
    assert "found [dog, cat, rabbit]" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("model", "policy", "message"),
    [
        (b"not onnx", CONTRACT, "is not a readable ONNX file"),
        (None, CONTRACT, "model file not found"),
        (
            lookup_model(3),
            "version: 1\nname: p\nrules:\n  - {id: a, type: metric, metric: accuracy, min: 0.5}\n",
            "has no model_contract rule",
        ),
    ],
)
def test_gate_contract_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: bytes | None, policy: str, message: str
) -> None:
    (tmp_path / "p.yaml").write_text(policy)
    if model is not None:
        (tmp_path / "m.onnx").write_bytes(model)
    args = ["contract", "--model", str(tmp_path / "m.onnx"), "--policy", str(tmp_path / "p.yaml"), "--format", "json"]
    assert main(args) == 2
    document = json.loads(capsys.readouterr().out)
    assert document["verdict"] == "ERROR" and message in document["error"]["message"]


def test_extra_inputs_the_contract_does_not_name_fail(tmp_path: Path) -> None:
    from tests.models import two_input_model

    policy = CONTRACT.replace("[{name: x, dtype: float32, shape: [N, 1]}]", "[{name: a, shape: [N, 1]}]")
    (tmp_path / "m.onnx").write_bytes(two_input_model(3))
    (tmp_path / "p.yaml").write_text(policy)
    code = main(["contract", "--model", str(tmp_path / "m.onnx"), "--policy", str(tmp_path / "p.yaml")])
    assert code == 1
