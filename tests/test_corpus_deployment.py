"""The bad-input corpus, deployment checks: careless or hostile ``model_contract``,
``latency``, ``memory`` and ``provider_parity`` rules and requests, each run end to end
through ``gate eval`` (or, for the reference models a request hands the service, through
``gate check`` and a real server) with its exact exit code, error type and message;
``docs/bad-input-corpus.md`` lists every case (see ``doc_expectations``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from gate.cli import main
from gate.client import GateClientError
from tests.conftest import Served, write_pets
from tests.models import lookup_model

HEAD = "version: 1\nname: attack\nrules:\n  - {id: accuracy, type: metric, metric: accuracy, min: 0.5}\n"


@dataclass(frozen=True)
class Case:
    id: str
    rule: str
    code: int
    verdict: str
    error: str | None
    message: str


CASES = [
    Case(
        "deploy-latency-max-ms-quoted",
        "{id: lat, type: latency, max_ms: '10'}",
        2,
        "ERROR",
        "PolicyError",
        "max_ms: Input should be a valid number, not a string",
    ),
    Case(
        "deploy-latency-percentile-95",
        "{id: lat, type: latency, percentile: 95, max_ms: 10}",
        2,
        "ERROR",
        "PolicyError",
        "percentile 95 is not measured; use one of 50, 90, 99",
    ),
    Case(
        "deploy-latency-batch-true",
        "{id: lat, type: latency, batch: true, max_ms: 10}",
        2,
        "ERROR",
        "PolicyError",
        "batch: Input should be a valid integer, not a boolean",
    ),
    Case(
        "deploy-latency-no-champion",
        "{id: lat, type: latency, max_vs_baseline: 1.5}",
        2,
        "ERROR",
        "RequestError",
        "rule 'lat' (latency) needs a champion to time against for max_vs_baseline",
    ),
    Case(
        "deploy-contract-shape-fraction",
        "{id: c, type: model_contract, inputs: [{name: x, shape: [N, 1.5]}]}",
        2,
        "ERROR",
        "PolicyError",
        "Input should be a size (an integer) or a symbolic dimension name such as N, not float",
    ),
    Case(
        "deploy-contract-flag-quoted",
        "{id: c, type: model_contract, require_class_metadata: 'yes'}",
        2,
        "ERROR",
        "PolicyError",
        "require_class_metadata: Input should be a valid boolean (true or false), not a string",
    ),
    Case(
        "deploy-contract-unknown-dtype",
        "{id: c, type: model_contract, inputs: [{name: x, dtype: float}]}",
        2,
        "ERROR",
        "PolicyError",
        "inputs[0].dtype: unknown element type 'float'",
    ),
    Case(
        "deploy-parity-rate-over-one",
        "{id: p, type: provider_parity, max_disagreement: 2}",
        2,
        "ERROR",
        "PolicyError",
        "max_disagreement: Input should be less than or equal to 1",
    ),
    Case(
        "deploy-parity-missing-reference",
        "{id: p, type: provider_parity, reference: ../nowhere.onnx, max_disagreement: 0.001}",
        2,
        "ERROR",
        "ModelError",
        "reference model file not found",
    ),
    Case(
        "deploy-contract-checks-nothing",
        "{id: c, type: model_contract, onnx_checker: false}",
        2,
        "ERROR",
        "PolicyError",
        "checks nothing: give `inputs`, `outputs`, `opset_max`, `max_size_mb`",
    ),
    Case(
        "deploy-contract-opset-domain-twice",
        "{id: c, type: model_contract, opset_max: {ai.onnx: 17, '': 13}}",
        2,
        "ERROR",
        "PolicyError",
        "opset_max names the default domain twice ('' and 'ai.onnx' are one domain): keep one",
    ),
    Case(
        "deploy-contract-shape-empty-name",
        "{id: c, type: model_contract, inputs: [{name: x, shape: ['', 1]}]}",
        2,
        "ERROR",
        "PolicyError",
        "a symbolic dimension needs a name (such as N), not an empty string",
    ),
    Case(
        "deploy-parity-reference-is-candidate",
        "{id: p, type: provider_parity, reference: model.onnx, max_disagreement: 0}",
        2,
        "ERROR",
        "RequestError",
        "reference model model.onnx is the candidate itself (the same SHA-256,",
    ),
    Case(
        "deploy-memory-no-bound",
        "{id: m, type: memory, batch: 1}",
        2,
        "ERROR",
        "PolicyError",
        "needs `max_rss_mb`, `max_gpu_mb` or `max_size_mb` (or several)",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_gate_eval_answers_each_bad_deployment_input_exactly(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model.onnx").write_bytes(lookup_model(3))
    (tmp_path / "policy.yaml").write_text(HEAD + f"  - {case.rule}\n")
    spec = write_pets(tmp_path)
    argv = ["eval", "--model", str(tmp_path / "model.onnx"), "--dataset", str(spec)]
    code = main([*argv, "--policy", str(tmp_path / "policy.yaml"), "--format", "json", "--no-cache"])
    document = json.loads(capsys.readouterr().out)
    assert (code, document["verdict"]) == (case.code, case.verdict)
    assert (document["error"] or {}).get("type") == case.error
    assert case.message in (document["error"] or {}).get("message", ""), document["error"]


PARITY = "  - {id: fp16, type: provider_parity, reference: model-fp32.onnx, max_disagreement: 0}\n"


@dataclass(frozen=True)
class ServiceCase:
    """A reference model handed to the service: ``reference`` is what `gate check` is
    given (FILE in the case's folder holds ``content``), or None for no --reference."""

    id: str
    reference: str | None
    content: bytes
    code: int
    verdict: str
    error: str
    message: str


SERVICE_CASES = [
    ServiceCase(
        "deploy-service-reference-not-a-model",
        "model-fp32.onnx",
        b"not an ONNX model",
        2,
        "ERROR",
        "ModelError",
        "reference model model-fp32.onnx: cannot load model model-fp32.onnx",
    ),
    ServiceCase(
        "deploy-service-reference-classes-differ",
        "model-fp32.onnx",
        lookup_model(4),
        2,
        "ERROR",
        "ModelError",
        "reference model model-fp32.onnx: model model-fp32.onnx outputs 4 classes; the dataset has 3",
    ),
    ServiceCase(
        "deploy-service-reference-named-by-no-rule",
        "fp32.onnx=model-fp32.onnx",
        lookup_model(3),
        2,
        "ERROR",
        "ServiceError",
        "INVALID_ARGUMENT: reference model 'fp32.onnx': no provider_parity rule of policy 'attack' names it",
    ),
    ServiceCase(
        "deploy-service-reference-not-given",
        None,
        lookup_model(3),
        2,
        "ERROR",
        "ServiceError",
        "rule 'fp16' (provider_parity) needs its reference model 'model-fp32.onnx'",
    ),
    ServiceCase(
        "deploy-service-reference-is-candidate",
        "model-fp32.onnx",
        lookup_model(3),
        2,
        "ERROR",
        "RequestError",
        "reference model model-fp32.onnx is the candidate itself (the same SHA-256,",
    ),
    ServiceCase(
        "deploy-service-reference-option-empty-name",
        "=model-fp32.onnx",
        lookup_model(3),
        2,
        "ERROR",
        "RequestError",
        "--reference '=model-fp32.onnx' is not valid; it should be FILE or NAME=FILE",
    ),
]


@pytest.mark.parametrize("case", SERVICE_CASES, ids=[c.id for c in SERVICE_CASES])
def test_gate_check_answers_each_bad_reference_exactly(
    case: ServiceCase,
    tmp_path: Path,
    serve: Callable[..., Served],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # --reference names files of this folder
    (tmp_path / "model.onnx").write_bytes(lookup_model(3))
    (tmp_path / "model-fp32.onnx").write_bytes(case.content)
    (tmp_path / "policy.yaml").write_text(HEAD + PARITY)
    argv = ["check", "--server", serve().address, "--model", "model.onnx", "--dataset", "pets"]
    argv += ["--policy-file", "policy.yaml", "--format", "json", "--quiet", "--provider", "cpu"]
    code = main([*argv, *(["--reference", case.reference] if case.reference is not None else [])])
    document = json.loads(capsys.readouterr().out)
    assert (code, document["verdict"], document["error"]["type"]) == (case.code, case.verdict, case.error)
    assert case.message in document["error"]["message"], document["error"]


NEVER_UPLOADED = "deploy-service-reference-never-uploaded"


def test_a_reference_sha_never_uploaded_is_refused_naming_the_reference(
    tmp_path: Path, serve: Callable[..., Served]
) -> None:
    (tmp_path / "model.onnx").write_bytes(lookup_model(3))
    with serve().client() as client:
        model = client.upload_model(tmp_path / "model.onnx").sha256
        with pytest.raises(GateClientError) as refused:
            client.evaluate(model, "pets", policy_yaml=HEAD + PARITY, reference_sha256={"model-fp32.onnx": "e" * 64})
    assert refused.value.code == "INVALID_ARGUMENT"
    assert f"reference model 'model-fp32.onnx': no model with sha256 {'e' * 64} on this server" in refused.value.message


def doc_expectations() -> dict[str, tuple[str, ...]]:
    """Each case of this module: the fragments its row in the doc must hold."""
    found = {c.id: tuple(x for x in (f"{c.code} {c.verdict}", c.error) if x) for c in CASES}
    found.update({c.id: (f"{c.code} {c.verdict}", c.error) for c in SERVICE_CASES})
    found[NEVER_UPLOADED] = ("INVALID_ARGUMENT", "RequestError")
    return found
