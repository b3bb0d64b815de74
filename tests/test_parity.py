"""``provider_parity`` rules: CPU vs CUDA where CUDA runs (inconclusive with the reason
where it does not), and a half-precision candidate against its FP32 source, on the CPU."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from onnx import TensorProto

from gate.evaluation import evaluate
from gate.inference import cuda_runs
from gate.verdict import Decision, Status
from tests.conftest import write_pets
from tests.models import linear_softmax_model, lookup_model, one_hot_rows, table_model, typed_lookup_model


def _policy(root: Path, rule: str) -> Path:
    text = "version: 1\nname: parity\nrules:\n  - {id: accuracy, type: metric, metric: accuracy, min: 0.5}\n"
    path = root / "policy.yaml"
    path.write_text(text + f"  - {rule}\n")
    return path


def test_without_cuda_cpu_vs_cuda_is_inconclusive_with_the_reason(tmp_path: Path) -> None:
    if cuda_runs():
        pytest.skip("CUDA runs here: the comparison is made (see the gpu test)")
    (tmp_path / "m.onnx").write_bytes(lookup_model(3))
    policy = _policy(tmp_path, "{id: parity, type: provider_parity, max_disagreement: 0.001}")
    verdict = evaluate(tmp_path / "m.onnx", write_pets(tmp_path), policy)
    rule = verdict.rules[1]
    assert rule.status is Status.INCONCLUSIVE and verdict.decision is Decision.FAIL
    assert rule.message.startswith("inconclusive: the CUDA execution provider cannot run on this machine")
    assert verdict.metrics is not None and "unavailable" in verdict.metrics["parity"]["parity"]


@pytest.mark.gpu
def test_cpu_vs_cuda_is_compared_on_every_sample(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    weights, bias = rng.normal(size=(1, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)
    (tmp_path / "m.onnx").write_bytes(linear_softmax_model(weights, bias, input_shape=["N", 1]))
    policy = _policy(tmp_path, "{id: parity, type: provider_parity, max_disagreement: 0.001, max_prob_diff: 0.001}")
    verdict = evaluate(tmp_path / "m.onnx", write_pets(tmp_path, repeat=20), policy, provider="cpu")
    run = verdict.metrics["parity"]["parity"] if verdict.metrics else {}
    assert (run["left"], run["right"], run["samples"]) == ("CPUExecutionProvider", "CUDAExecutionProvider", 3000)
    assert verdict.rules[1].status is Status.PASS, verdict.rules[1].message


def _fp16_pair(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "model-fp32.onnx").write_bytes(lookup_model(3))
    (tmp_path / "model-fp16.onnx").write_bytes(typed_lookup_model(3, elem_type=TensorProto.FLOAT16))
    return tmp_path / "model-fp16.onnx", tmp_path / "model-fp32.onnx"


def test_an_fp16_candidate_is_compared_with_its_fp32_source_on_the_cpu(tmp_path: Path) -> None:
    candidate, _ = _fp16_pair(tmp_path)
    rule = "{id: fp16, type: provider_parity, reference: model-fp32.onnx, max_disagreement: 0, max_prob_diff: 0.01}"
    verdict = evaluate(candidate, write_pets(tmp_path), _policy(tmp_path, rule), provider="cpu")
    assert verdict.decision is Decision.PASS, verdict.to_dict()
    run = verdict.metrics["parity"]["fp16"] if verdict.metrics else {}
    assert run["left"] == "candidate (CPUExecutionProvider)" and run["right"] == "reference model-fp32.onnx"
    assert run["samples"] == 150 and run["disagreements"] == 0
    # integers and their squares are exact in half precision: the same scores, to the bit
    assert run["max_prob_diff"] == 0.0
    assert "0 of 150 samples (0.000) change class <= 0.000" in verdict.rules[1].message


def test_a_reference_that_answers_otherwise_fails_naming_the_share(tmp_path: Path) -> None:
    candidate, _ = _fp16_pair(tmp_path)
    # a reference that answers cat where the candidate answers dog, and dog for rabbit
    rule = "{id: fp16, type: provider_parity, reference: ref.onnx, max_disagreement: 0.001}"
    (tmp_path / "ref.onnx").write_bytes(table_model(one_hot_rows([0, 0, 1], 3)))
    verdict = evaluate(candidate, write_pets(tmp_path), _policy(tmp_path, rule), provider="cpu")
    assert verdict.decision is Decision.FAIL
    run = verdict.metrics["parity"]["fp16"] if verdict.metrics else {}
    assert run["disagreements"] > 0 and run["examples"]
    assert (
        f"{run['disagreements']} of 150 samples" in verdict.rules[1].message and "> 0.001" in verdict.rules[1].message
    )


def test_a_missing_reference_file_is_an_error_naming_it(tmp_path: Path) -> None:
    candidate, _ = _fp16_pair(tmp_path)
    rule = "{id: fp16, type: provider_parity, reference: nowhere.onnx, max_disagreement: 0.001}"
    verdict = evaluate(candidate, write_pets(tmp_path), _policy(tmp_path, rule), provider="cpu")
    assert verdict.decision is Decision.ERROR and verdict.error is not None
    assert "reference model file not found" in verdict.error["message"] and "nowhere.onnx" in verdict.error["message"]


def test_an_inline_policy_does_not_read_reference_files(tmp_path: Path) -> None:
    from gate.policy import parse_policy

    candidate, _ = _fp16_pair(tmp_path)
    text = _policy(tmp_path, "{id: fp16, type: provider_parity, reference: model-fp32.onnx, max_disagreement: 0}")
    verdict = evaluate(candidate, write_pets(tmp_path), parse_policy(text.read_text()))
    assert verdict.decision is Decision.ERROR and verdict.error is not None
    assert "needs its reference model 'model-fp32.onnx'" in verdict.error["message"]


def test_the_verdict_records_the_sha256_of_the_reference_it_compared_with(tmp_path: Path) -> None:
    candidate, _ = _fp16_pair(tmp_path)
    rule = "{id: fp16, type: provider_parity, reference: model-fp32.onnx, max_disagreement: 0}"
    verdict = evaluate(candidate, write_pets(tmp_path), _policy(tmp_path, rule), provider="cpu")
    run = verdict.metrics["parity"]["fp16"] if verdict.metrics else {}
    assert run["reference_sha256"] == hashlib.sha256((tmp_path / "model-fp32.onnx").read_bytes()).hexdigest()


@pytest.mark.parametrize("how", ["copy", "symlink"])
def test_a_reference_with_the_candidates_own_bytes_is_an_error(tmp_path: Path, how: str) -> None:
    candidate, _ = _fp16_pair(tmp_path)
    reference = tmp_path / "model-fp32.onnx"
    reference.unlink()
    if how == "copy":
        reference.write_bytes(candidate.read_bytes())
    else:
        reference.symlink_to(candidate)
    rule = "{id: fp16, type: provider_parity, reference: model-fp32.onnx, max_disagreement: 0}"
    verdict = evaluate(candidate, write_pets(tmp_path), _policy(tmp_path, rule), provider="cpu")
    assert verdict.decision is Decision.ERROR and verdict.error is not None, verdict.to_dict()
    assert verdict.error["type"] == "RequestError"
    assert "reference model model-fp32.onnx is the candidate itself" in verdict.error["message"]
