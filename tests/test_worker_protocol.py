"""The worker protocol, measured on a real server: models travel to worker processes as
a path and a SHA-256, never as bytes, and each model is hashed once per upload (by the
server) and once per evaluation (by the worker that runs it), never by the server for an
evaluation."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from gate._proto.gate.v1 import gate_pb2 as pb
from gate.server.workers import Done, Failed, LoadJob, ModelFile, Progress
from tests import model_hashes
from tests.conftest import ROOT, Served
from tests.models import linear_softmax_model, lookup_model, slow_lookup_model


@pytest.fixture
def hash_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Path]]:
    """Count the hashes of the models given, here and in worker processes started after."""
    log = tmp_path / "hashes.log"

    def watch(sha256: str) -> Path:
        monkeypatch.setenv("GATE_TEST_HASH_LOG", str(log))
        monkeypatch.setenv("GATE_TEST_HASH_WATCH", sha256)
        path = [str(model_hashes.SITE), str(ROOT), os.environ.get("PYTHONPATH", "")]
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))
        model_hashes.install()
        return log

    yield watch
    model_hashes.uninstall()


def test_models_go_to_workers_by_path_and_are_hashed_once_per_evaluation(
    serve: Callable[..., Served], hash_log: Callable[[str], Path]
) -> None:
    model = slow_lookup_model(3)  # over 4 MiB
    sha = hashlib.sha256(model).hexdigest()
    log = hash_log(sha)
    s = serve(max_concurrent_evaluations=1)
    with s.client() as c:
        assert c.upload_model(model).sha256 == sha
        uploaded = model_hashes.counted(log)
        for _ in range(2):
            evaluation = c.evaluate(sha, "pets", policy_name="default", provider="cpu")
            assert evaluation.verdict.decision == pb.PASS
            assert evaluation.document["model"]["sha256"] == sha
    me = os.getpid()
    # the upload: the client hashes as it streams, the server as it stores
    assert sorted(module for _, module in uploaded) == ["gate.client", "gate.store.models"]
    evaluating = model_hashes.counted(log)[len(uploaded) :]
    assert [pid for pid, _ in evaluating if pid == me] == [], "the server hashed the model for an evaluation"
    assert len(evaluating) == 2, f"hashes of the model for two evaluations: {evaluating}"
    assert {module for _, module in evaluating} == {"gate.engines.base"}  # where evaluate reads a model
    # two evaluations, each a LoadJob and an EvaluateJob: a few kilobytes, not the model's 4 MiB
    assert 0 < s.server.pool.bytes_sent < len(model) // 100


def test_the_protocol_messages_are_frozen_values() -> None:
    model = ModelFile("/models/x.onnx", "0" * 64)
    for message in (
        model,
        LoadJob(model, "cpu", "x.onnx"),
        Progress(1, 2),
        Done({"verdict": "PASS"}),
        Failed("ModelError", "cannot load"),
    ):
        with pytest.raises(AttributeError):
            message.__setattr__(next(iter(message.__dataclass_fields__)), None)
    assert Failed("ModelError", "cannot load").error().kind == "ModelError"
    assert Failed("NoSuchKind", "what").error().kind == "InternalError"


def test_a_stored_model_changed_on_disk_is_refused_and_its_session_forgotten(serve: Callable[..., Served]) -> None:
    """The worker loads the file it is given and the evaluation hashes those very bytes:
    another model put in the stored file's place is refused (ERROR), and the session the
    worker built from it is not reused once the right file is back."""
    s = serve(max_concurrent_evaluations=1)  # one worker: the one that built the session
    good = lookup_model(3)
    always_cat = linear_softmax_model(
        np.zeros((1, 3), np.float32), np.array([1.0, 0.0, 0.0], np.float32), input_shape=["N", 1]
    )
    with s.client() as c:
        sha = c.upload_model(good).sha256
        stored = s.root / "data" / "models" / f"{sha}.onnx"
        stored.write_bytes(always_cat)
        swapped = c.evaluate(sha, "pets", policy_name="default").document
        assert swapped["verdict"] == "ERROR" and swapped["error"]["type"] == "ModelError"
        assert "changed or damaged on disk" in swapped["error"]["message"]
        stored.write_bytes(good)
        restored = c.evaluate(sha, "pets", policy_name="default").document
    assert restored["verdict"] == "PASS" and restored["model"]["sha256"] == sha
