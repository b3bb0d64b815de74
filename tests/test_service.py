"""The gate service end to end: a real server on a free port, the real client and CLI,
real model files, real SQLite. No mocks."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gate._proto.gate.v1 import gate_pb2 as pb
from gate._proto.gate.v1 import gate_pb2_grpc as pb_grpc
from gate.cli import main
from gate.client import GateClientError
from gate.inference import cuda_runs
from gate.store import AuditStore
from tests.conftest import ROOT, Served
from tests.models import lookup_model, slow_lookup_model

DEFAULT_POLICY = ROOT / "policies" / "default.yaml"
VOLATILE = ("started_at", "duration_s", "evaluation_id", "labels")


def _cli_json(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, dict[str, Any]]:
    code = main([str(a) for a in argv])
    return code, json.loads(capsys.readouterr().out)


def test_health_serving_and_reflection(serve: Callable[..., Served]) -> None:
    s = serve()
    with grpc.insecure_channel(s.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "gate.v1.GateService"):
            assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == (
                health_pb2.HealthCheckResponse.SERVING
            )
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        reply = next(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
        names = {svc.name for svc in reply.list_services_response.service}
        assert {"gate.v1.GateService", "grpc.health.v1.Health"} <= names


def test_upload_evaluate_and_history_match_gate_eval(
    serve: Callable[..., Served], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = serve()
    model = tmp_path / "slow.onnx"
    model.write_bytes(slow_lookup_model(3))
    assert model.stat().st_size > 4 << 20  # a multi-chunk upload: five 1 MiB chunks

    with s.client() as client:
        ref = client.upload_model(model.read_bytes(), filename="slow.onnx")
        assert ref.sha256 == hashlib.sha256(model.read_bytes()).hexdigest() and not ref.already_present
        assert client.upload_model(model.read_bytes()).already_present  # idempotent
        progress: list[tuple[int, int]] = []
        evaluation = client.evaluate(
            ref.sha256,
            "pets-large",
            policy_name="default",
            batch_size=8,
            labels={"pipeline_id": "ci-42", "git_sha": "abc123", "extra": {"team": "vision"}},
            on_progress=lambda done, total: progress.append((done, total)),
        )
    assert progress and progress[-1] == (3000, 3000)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    assert evaluation.verdict.decision == pb.PASS
    assert evaluation.document["labels"] == {"pipeline_id": "ci-42", "git_sha": "abc123", "extra": {"team": "vision"}}
    # the structured message carries what the JSON carries
    v = evaluation.verdict
    assert v.metrics.values["accuracy"] == evaluation.document["metrics"]["accuracy"] == 0.9
    assert [list(r.counts) for r in v.metrics.confusion_matrix] == [[1000, 40, 60], [80, 900, 20], [40, 60, 800]]
    assert [r.id for r in v.rules] == [r["id"] for r in evaluation.document["rules"]]
    assert v.runtime.provider == evaluation.document["runtime"]["provider"]

    # `gate check` prints the same verdict JSON as `gate eval` on the same inputs
    spec = s.root / "datasets" / "pets.yaml"
    code_check, checked = _cli_json(
        capsys,
        "check",
        "--server",
        s.address,
        "--model",
        model,
        "--dataset",
        "pets",
        "--policy",
        "default",
        "--format",
        "json",
        "--label",
        "pipeline_id=ci-43",
        "--provider",
        "cpu",
    )
    code_eval, evaluated = _cli_json(
        capsys,
        "eval",
        "--model",
        model,
        "--dataset",
        spec,
        "--policy",
        DEFAULT_POLICY,
        "--format",
        "json",
        "--provider",
        "cpu",
    )
    assert code_check == code_eval == 0
    assert checked["labels"] == {"pipeline_id": "ci-43"} and len(checked["evaluation_id"]) == 32
    for doc in (checked, evaluated):
        for key in VOLATILE:
            doc.pop(key)
        doc["dataset"].pop("source")  # the server resolves its own path to the same file
        doc["runtime"].pop("cache")  # what each process had already done differs
    assert checked == evaluated

    with s.client() as client:
        records = client.list_verdicts(model_sha256=ref.sha256)
        assert [r.dataset for r in records] == ["pets", "pets-large"]
        assert all(r.state == "done" and r.verdict.decision == pb.PASS for r in records)
        assert client.list_verdicts(decision="FAIL") == []
        again = client.get_verdict(evaluation.evaluation_id)
        assert json.loads(again.verdict.verdict_json)["metrics"] == evaluation.document["metrics"]
    code = main(["history", "--server", s.address, "--format", "json"])
    listed = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["evaluation_id"] for r in listed][1] == evaluation.evaluation_id
    code = main(["history", "--data-dir", str(s.root / "data")])
    table = capsys.readouterr().out.splitlines()
    assert code == 0 and table[0].split() == [
        "created",
        "(UTC)",
        "evaluation",
        "verdict",
        "model",
        "dataset",
        "policy",
        "labels",
    ]
    assert any(
        evaluation.evaluation_id[:12] in line and "PASS" in line and "pipeline_id=ci-42" in line for line in table
    )


def _status(fn: Callable[[], object]) -> tuple[str, str]:
    with pytest.raises(GateClientError) as exc:
        fn()
    return exc.value.code, exc.value.details


def test_bad_requests_get_their_status_and_are_recorded(serve: Callable[..., Served]) -> None:
    s = serve(max_model_bytes=1 << 20)
    good = lookup_model(3)
    with s.client() as c:
        sha = c.upload_model(good).sha256
        stub = pb_grpc.GateServiceStub(grpc.insecure_channel(s.address))

        def mismatched() -> object:
            try:
                return stub.UploadModel(iter([pb.ModelChunk(sha256="0" * 64, total_size=len(good), data=good)]))
            except grpc.RpcError as e:
                raise GateClientError(e.code().name, e.details() or "") from e

        code, details = _status(mismatched)
        assert code == "INVALID_ARGUMENT" and f"sha256 mismatch: the upload hashes to {sha}" in details
        corrupt = c.upload_model(b"\x08\x01 not a model", filename="corrupt.onnx").sha256
        code, details = _status(lambda: c.evaluate(corrupt, "pets", policy_name="default", model_name="corrupt.onnx"))
        assert code == "INVALID_ARGUMENT" and details.startswith("cannot load model corrupt.onnx: ")
        code, details = _status(lambda: c.upload_model(b"x" * (2 << 20)))
        assert code == "RESOURCE_EXHAUSTED" and "exceeds this server's limit of 1048576 bytes" in details
        stored = sorted(p.name for p in (s.root / "data" / "models").iterdir())
        assert stored == sorted([f"{sha}.onnx", f"{corrupt}.onnx"])  # nothing partial or mismatched

        code, details = _status(lambda: c.evaluate(sha, "no-such-set", policy_name="default"))
        assert (
            code == "NOT_FOUND"
            and details == "unknown dataset 'no-such-set'; this server has: pets, pets-huge, pets-large"
        )
        code, details = _status(lambda: c.evaluate(sha, "pets", policy_name="no-such-policy"))
        assert code == "NOT_FOUND" and "unknown policy 'no-such-policy'" in details
        code, details = _status(lambda: c.evaluate(sha, "pets", policy_yaml="version: 1\nname: x\nrules: []\n"))
        assert code == "INVALID_ARGUMENT" and "the rule list is empty" in details
        bad_class = "version: 1\nname: x\nrules:\n  - {id: r, type: per_class, metric: recall, classes: {rabit: 0.9}}\n"
        code, details = _status(lambda: c.evaluate(sha, "pets", policy_yaml=bad_class))
        assert code == "INVALID_ARGUMENT" and "unknown class 'rabit' (did you mean 'rabbit'?)" in details
        code, details = _status(lambda: c.evaluate("f" * 64, "pets", policy_name="default"))
        assert code == "NOT_FOUND" and "no model with sha256 ffff" in details
        code, details = _status(lambda: c.evaluate("nothex", "pets", policy_name="default"))
        assert code == "INVALID_ARGUMENT"
        code, details = _status(lambda: c.get_verdict("nope"))
        assert code == "NOT_FOUND"

        # a model that runs but does not fit the set: an ERROR verdict, recorded
        wrong_k = c.upload_model(lookup_model(4)).sha256
        evaluation = c.evaluate(wrong_k, "pets", policy_name="default")
        assert evaluation.verdict.decision == pb.ERROR
        assert evaluation.document["error"]["type"] == "ModelError"

        # still serving
        assert c.health() == "SERVING"
        assert c.evaluate(sha, "pets", policy_name="default").verdict.decision == pb.PASS
        errors = c.list_verdicts(decision="ERROR")
    assert len(errors) == 8
    kinds = sorted(json.loads(r.verdict.verdict_json)["error"]["type"] for r in errors)
    assert kinds == sorted(
        [
            "ModelError",
            "NotFoundError",
            "NotFoundError",
            "PolicyError",
            "PolicyError",
            "NotFoundError",
            "RequestError",
            "ModelError",
        ]
    )


def test_validate_and_list(serve: Callable[..., Served]) -> None:
    s = serve()
    with s.client() as c:
        datasets = {d.name: d for d in c.list_datasets()}
        assert list(datasets) == ["pets", "pets-huge", "pets-large"]
        assert list(datasets["pets"].support) == [55, 50, 45] and list(datasets["pets"].classes) == [
            "cat",
            "dog",
            "rabbit",
        ]
        policies = {p.name: p for p in c.list_policies()}
        assert {"default", "recall-critical", "precision-critical"} <= set(policies)
        assert policies["default"].yaml == DEFAULT_POLICY.read_text()
        ok = c.validate_policy(DEFAULT_POLICY.read_text(), dataset="pets")
        assert ok.valid and ok.name == "default" and ok.sha256 == policies["default"].sha256
        bad = c.validate_policy((ROOT / "tests" / "policies" / "invalid" / "many-problems.yaml").read_text())
        assert not bad.valid and len(bad.problems) == 5
        wrong = c.validate_policy((ROOT / "policies" / "recall-critical.yaml").read_text(), dataset="pets")
        assert not wrong.valid and any("unknown class 'scratch'" in p for p in wrong.problems)


def test_eight_simultaneous_evaluations(serve: Callable[..., Served]) -> None:
    s = serve(max_concurrent_evaluations=2, max_queued_evaluations=6)
    with s.client() as c:
        sha = c.upload_model(lookup_model(3)).sha256
    results: dict[int, Any] = {}
    strict = "version: 1\nname: strict\nrules:\n  - {id: r, type: per_class, metric: recall, min: 0.9}\n"

    def one(i: int) -> None:
        with s.client() as client:
            if i % 2:
                results[i] = client.evaluate(sha, "pets-large", policy_yaml=strict, batch_size=16)
            else:
                results[i] = client.evaluate(sha, "pets-large", policy_name="default", batch_size=16)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(results) == list(range(8))
    for i, evaluation in results.items():
        assert evaluation.verdict.decision == (pb.FAIL if i % 2 else pb.PASS)
        assert evaluation.document["metrics"]["confusion_matrix"] == [[1000, 40, 60], [80, 900, 20], [40, 60, 800]]
    assert len({e.evaluation_id for e in results.values()}) == 8


def _wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.01)


def test_beyond_the_queue_is_resource_exhausted(serve: Callable[..., Served]) -> None:
    s = serve(max_concurrent_evaluations=1, max_queued_evaluations=1)
    with s.client() as c:
        sha = c.upload_model(slow_lookup_model(3)).sha256
    stub = pb_grpc.GateServiceStub(grpc.insecure_channel(s.address))
    request = pb.EvaluateRequest(
        model_sha256=sha, dataset="pets-huge", policy_name="default", batch_size=1, provider=pb.PROVIDER_CPU
    )
    running = stub.Evaluate(request)
    assert next(running).WhichOneof("event") == "accepted"
    assert next(running).WhichOneof("event") == "progress"  # it is running
    queued = stub.Evaluate(request)
    _wait_for(lambda: s.server.servicer.admission.waiting == 1)
    with s.client() as c:
        code, details = _status(lambda: c.evaluate(sha, "pets", policy_name="default"))
    assert code == "RESOURCE_EXHAUSTED"
    assert details == "server busy: 1 evaluations running and 1 queued (limits 1 and 1); retry later"
    running.cancel()
    queued.cancel()
    with AuditStore(s.root / "data" / "audit.sqlite3") as store:
        _wait_for(lambda: all(r.state == "done" for r in store.list()))
        errors = sorted(r.verdict["error"]["type"] for r in store.list() if r.verdict)
    assert errors == ["CancelledError", "CancelledError", "OverloadedError"]


def test_an_evaluation_past_its_time_limit_is_error(serve: Callable[..., Served]) -> None:
    s = serve(evaluation_timeout_s=0.3)
    with s.client() as c:
        sha = c.upload_model(slow_lookup_model(3)).sha256
        evaluation = c.evaluate(sha, "pets-large", policy_name="default", batch_size=1, provider="cpu")
        assert evaluation.verdict.decision == pb.ERROR
        assert evaluation.document["error"] == {
            "type": "EvaluationTimeoutError",
            "message": "evaluation exceeded the server's limit of 0.3 s",
        }
        assert c.evaluate(c.upload_model(lookup_model(3)).sha256, "pets", policy_name="default").verdict.decision == (
            pb.PASS
        )


def test_gate_check_exit_codes(
    serve: Callable[..., Served], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = serve()
    model = tmp_path / "m.onnx"
    model.write_bytes(lookup_model(3))
    strict = tmp_path / "strict.yaml"
    strict.write_text("version: 1\nname: strict\nrules:\n  - {id: r, type: per_class, metric: recall, min: 0.9}\n")
    base = ["check", "--server", s.address, "--model", model, "--dataset", "pets", "--format", "json"]
    code, doc = _cli_json(capsys, *base, "--policy", "default")
    assert code == 0 and doc["verdict"] == "PASS" and doc["model"]["path"] == str(model)
    code, doc = _cli_json(capsys, *base, "--policy", strict)  # a local file goes inline
    assert code == 1 and doc["policy"]["name"] == "strict"
    assert doc["rules"][0]["message"] == "rabbit: recall 0.889 < 0.900 (40/45)"
    code, doc = _cli_json(capsys, *base, "--policy", "nope")
    assert code == 2 and doc["verdict"] == "ERROR"
    assert doc["error"] == {
        "type": "ServiceError",
        "message": "NOT_FOUND: unknown policy 'nope'; this server has: default, precision-critical, recall-critical",
    }
    code, out, _ = main([str(a) for a in [*base[:-2], "--policy", "default"]]), *capsys.readouterr()
    assert code == 0 and out.splitlines()[-1] == "VERDICT: PASS: all 6 blocking rules passed"
    code = main(
        [
            "check",
            "--server",
            "127.0.0.1:1",
            "--model",
            str(model),
            "--dataset",
            "pets",
            "--policy",
            "default",
            "--format",
            "json",
            "--timeout",
            "5",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 2 and doc["error"]["message"].startswith("UNAVAILABLE")


def test_a_restart_records_unfinished_evaluations_as_error(serve: Callable[..., Served]) -> None:
    s = serve()
    s.server.store.record_accepted(
        evaluation_id="e" * 32,
        model_sha256="0" * 64,
        model_name=None,
        dataset="pets",
        policy="default",
        labels={},
        requested_provider="auto",
    )
    s.server.stop(grace=None)
    from gate.config import load_config
    from gate.server import create_server

    again, port = create_server(load_config(s.root / "gate.yaml"))
    try:
        with Served(again, f"127.0.0.1:{port}", s.root).client() as c:
            record = c.get_verdict("e" * 32)
        assert record.state == "interrupted" and record.verdict.decision == pb.ERROR
        assert "stopped before the evaluation completed" in record.verdict.error.message
    finally:
        again.stop(grace=None)


class _BrokenStore:
    """Stands in for an audit store whose disk failed in an unforeseen way."""

    def list(self, **_: object) -> list[object]:
        raise RuntimeError("disk on fire")


def test_status_for_not_ready_cuda_and_the_unexpected(
    serve: Callable[..., Served], caplog: pytest.LogCaptureFixture
) -> None:
    s = serve()
    with s.client() as c:
        sha = c.upload_model(lookup_model(3)).sha256
        if not cuda_runs():
            code, details = _status(lambda: c.evaluate(sha, "pets", policy_name="default", provider="cuda"))
            assert code == "FAILED_PRECONDITION" and "CUDA execution provider cannot run on this server" in details
            recorded = c.list_verdicts(decision="ERROR")
            assert json.loads(recorded[0].verdict.verdict_json)["error"]["type"] == "ProviderError"
        registry, s.server.servicer.registry = s.server.servicer.registry, None
        code, details = _status(lambda: c.list_datasets())
        assert code == "UNAVAILABLE" and "still loading" in details
        s.server.servicer.registry = registry
        store, s.server.servicer.store = s.server.servicer.store, _BrokenStore()  # type: ignore[assignment]
        try:
            code, details = _status(lambda: c.list_verdicts())
        finally:
            s.server.servicer.store = store
        assert code == "INTERNAL" and details.startswith("internal error (incident ") and "disk" not in details
        assert "disk on fire" in caplog.text  # the traceback is in the server's log
        assert c.health() == "SERVING"


def test_upload_hash_declared_first_last_never_or_twice(serve: Callable[..., Served]) -> None:
    s = serve()
    data = lookup_model(3)
    sha = hashlib.sha256(data).hexdigest()
    stub = pb_grpc.GateServiceStub(grpc.insecure_channel(s.address))

    def upload(*chunks: pb.ModelChunk) -> Any:
        try:
            return stub.UploadModel(iter(chunks))
        except grpc.RpcError as e:
            return e.code().name, e.details()

    half = len(data) // 2
    late = upload(
        pb.ModelChunk(total_size=len(data), data=data[:half]),
        pb.ModelChunk(data=data[half:]),
        pb.ModelChunk(sha256=sha),
    )
    assert late.sha256 == sha and not late.already_present
    early = upload(pb.ModelChunk(total_size=len(data), sha256=sha, data=data))
    assert early.already_present
    assert upload(pb.ModelChunk(total_size=len(data), data=data)) == (
        "INVALID_ARGUMENT",
        "the upload declared no sha256 (in its first or its last chunk)",
    )
    assert upload(pb.ModelChunk(total_size=len(data), sha256="a" * 64, data=data), pb.ModelChunk(sha256="b" * 64)) == (
        "INVALID_ARGUMENT",
        "the upload declared two different sha256 values",
    )
    assert upload(pb.ModelChunk(total_size=len(data) + 1, data=data), pb.ModelChunk(sha256=sha)) == (
        "INVALID_ARGUMENT",
        f"upload ended after {len(data)} of the declared {len(data) + 1} bytes",
    )
    assert sorted(p.name for p in (s.root / "data" / "models").iterdir()) == [f"{sha}.onnx"]


def test_the_wire_conversions_keep_their_old_module() -> None:
    """They moved to gate.wire (the client imports nothing from gate.server); the old
    spelling stays an alias."""
    from gate import wire
    from gate.server import convert

    for name in convert.__all__:
        assert getattr(convert, name) is getattr(wire, name)
    assert convert.labels_to_dict(convert.labels_to_pb({"pipeline_id": "ci-1"})) == {"pipeline_id": "ci-1"}
