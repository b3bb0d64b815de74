"""``provider_parity`` rules with ``reference:`` through the service: the client uploads
each reference model like the champion, the request names it by SHA-256 under the name the
rule gives it, the server checks it is stored before accepting, and ``gate check`` gives
the parity figures ``gate eval`` gives."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from onnx import TensorProto

from gate.cli import main
from gate.client import GateClientError
from tests.conftest import Served, write_pets
from tests.models import lookup_model, one_hot_rows, table_model, typed_lookup_model

POLICY = """version: 1
name: parity
rules:
  - {id: accuracy, type: metric, metric: accuracy, min: 0.5}
  - {id: fp16, type: provider_parity, reference: model-fp32.onnx, max_disagreement: 0, max_prob_diff: 0.01}
  - {id: other, type: provider_parity, reference: other.onnx, max_disagreement: 0.001}
  - {id: fp16-again, type: provider_parity, reference: model-fp32.onnx, max_disagreement: 0.5}
"""


def _files(root: Path) -> Path:
    """An FP16 candidate, its FP32 source, a reference answering otherwise, and the policy
    naming two of them beside it (where `gate eval` finds them)."""
    (root / "model-fp16.onnx").write_bytes(typed_lookup_model(3, elem_type=TensorProto.FLOAT16))
    (root / "model-fp32.onnx").write_bytes(lookup_model(3))
    (root / "other.onnx").write_bytes(table_model(one_hot_rows([0, 0, 1], 3)))
    (root / "policy.yaml").write_text(POLICY)
    return root / "policy.yaml"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main([*argv, "--format", "json", "--quiet"])
    return code, json.loads(capsys.readouterr().out)


def _judged(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(r["id"], r["status"], r["message"]) for r in document["rules"]]


def test_gate_check_gives_the_parity_figures_gate_eval_gives(
    tmp_path: Path, serve: Callable[..., Served], capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _files(tmp_path)
    candidate = str(tmp_path / "model-fp16.onnx")
    local = ["eval", "--model", candidate, "--dataset", str(write_pets(tmp_path)), "--policy", str(policy)]
    eval_code, evaluated = _run([*local, "--provider", "cpu", "--no-cache"], capsys)
    s = serve()
    remote = ["check", "--server", s.address, "--model", candidate, "--dataset", "pets", "--policy-file", str(policy)]
    # FILE alone is named by its file name; NAME=FILE names it otherwise
    remote += ["--reference", str(tmp_path / "model-fp32.onnx"), "--reference", f"other.onnx={tmp_path / 'other.onnx'}"]
    check_code, checked = _run([*remote, "--provider", "cpu"], capsys)
    assert (eval_code, check_code) == (1, 1)  # `other` answers otherwise: FAIL both ways
    assert checked["metrics"]["parity"] == evaluated["metrics"]["parity"]
    assert _judged(checked) == _judged(evaluated)
    parity = checked["metrics"]["parity"]
    assert parity["fp16"]["samples"] == 150 and parity["fp16"]["disagreements"] == 0
    assert parity["fp16"]["right"] == "reference model-fp32.onnx"
    assert parity["other"]["disagreements"] > 0 and [r[1] for r in _judged(checked)] == ["pass", "pass", "fail", "pass"]


@pytest.mark.parametrize(
    ("references", "message"),
    [
        ({"model-fp32.onnx": "1" * 64}, "reference model 'model-fp32.onnx': no model with sha256 1111"),
        ({"model-fp32.onnx": "not-a-hash"}, "reference model 'model-fp32.onnx': reference_sha256 'not-a-hash' is not"),
        ({"elsewhere.onnx": "stored"}, "reference model 'elsewhere.onnx': no provider_parity rule of policy 'parity'"),
    ],
    ids=["never-uploaded", "not-a-hash", "named-by-no-rule"],
)
def test_a_reference_the_server_cannot_use_is_refused_before_acceptance(
    tmp_path: Path, serve: Callable[..., Served], references: dict[str, str], message: str
) -> None:
    policy = _files(tmp_path)
    with serve().client() as client:
        model = client.upload_model(tmp_path / "model-fp16.onnx").sha256
        stored = client.upload_model(tmp_path / "model-fp32.onnx").sha256
        shas = {name: stored if sha == "stored" else sha for name, sha in references.items()}
        with pytest.raises(GateClientError) as refused:
            client.evaluate(model, "pets", policy_yaml=policy.read_text(), reference_sha256=shas)
    assert refused.value.code == "INVALID_ARGUMENT" and message in refused.value.message


def test_rules_naming_one_reference_share_it_and_an_old_request_still_works(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    _files(tmp_path)
    shared_policy = "\n".join(line for line in POLICY.splitlines() if "id: other" not in line)
    plain_policy = "\n".join(line for line in POLICY.splitlines() if "provider_parity" not in line)
    with serve().client() as client:
        model = client.upload_model(tmp_path / "model-fp16.onnx").sha256
        stored = client.upload_model(tmp_path / "model-fp32.onnx").sha256
        refs = {"model-fp32.onnx": stored}
        shared = client.evaluate(model, "pets", policy_yaml=shared_policy, reference_sha256=refs)
        plain = client.evaluate(model, "pets", policy_yaml=plain_policy)  # a request without the new field
    assert shared.document["verdict"] == "PASS" and plain.document["verdict"] == "PASS"
    parity = shared.document["metrics"]["parity"]
    assert set(parity) == {"fp16", "fp16-again"} and parity["fp16"] == parity["fp16-again"]
