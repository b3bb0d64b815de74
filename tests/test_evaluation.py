"""`evaluate()`, the transport-neutral path the service will call: bytes in, Verdict out,
and never an exception or a PASS for anything that went wrong."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gate import errors
from gate.cache import Caches, stored_predictions
from gate.datasets import Dataset, load_dataset
from gate.evaluation import evaluate
from gate.metrics import ClassificationMetrics
from gate.policy import Policy, apply_policy, parse_policy
from gate.policy.rules import MetricRule
from gate.report import render_json, render_text
from gate.verdict import Decision, RuleResult, Status
from tests.models import lookup_model, predictions_for

PETS = ["cat", "dog", "rabbit"]
TUTORIAL = [[50, 2, 3], [4, 45, 1], [2, 3, 40]]
POLICY = "version: 1\nname: t\nrules:\n  - {id: acc, type: metric, metric: accuracy, min: 0.85}\n"


def _npz(tmp: Path) -> Path:
    x, y = predictions_for(TUTORIAL)
    path = tmp / "pets.npz"
    np.savez(path, x=x, y=y, classes=np.array(PETS))
    return path


def test_bytes_model_dataset_object_and_parsed_policy(tmp_path: Path) -> None:
    ds = load_dataset(_npz(tmp_path))
    seen: list[int] = []
    v = evaluate(
        lookup_model(3),
        ds,
        parse_policy(POLICY),
        provider="cpu",
        batch_size=32,
        progress=lambda done, total: seen.append(done),
    )
    assert v.decision is Decision.PASS and v.exit_code == 0
    assert v.model["path"] is None and len(v.model["sha256"]) == 64
    assert v.dataset["sha256"] == ds.sha256 and v.policy["name"] == "t"
    assert v.runtime["provider"] == "CPUExecutionProvider" and v.runtime["batch_size"] == 32
    assert seen == [32, 64, 96, 128, 150]
    doc = json.loads(render_json(v))
    assert doc["verdict"] == "PASS" and doc["summary"]["pass"] == 1 and doc["error"] is None
    assert render_text(v).splitlines()[-1] == "VERDICT: PASS: all 1 blocking rules passed"


def test_same_inputs_give_the_same_verdict(tmp_path: Path) -> None:
    data = _npz(tmp_path)
    a = evaluate(lookup_model(3), data, parse_policy(POLICY), provider="cpu").to_dict()
    b = evaluate(lookup_model(3), data, parse_policy(POLICY), provider="cpu").to_dict()
    for volatile in ("started_at", "duration_s"):
        a.pop(volatile), b.pop(volatile)
    assert a == b


class _Exploding(MetricRule):
    """A rule whose evaluation crashes, standing in for a bug in a rule type."""

    def evaluate(self, metrics: ClassificationMetrics) -> RuleResult:
        raise ZeroDivisionError("boom")


def test_a_crashing_rule_is_error_never_pass(tmp_path: Path) -> None:
    rule = _Exploding(id="explodes", type="metric", metric="accuracy", min=0.0)
    policy = Policy(name="crash", rules=(rule,), sha256="0" * 64, source="<test>")
    metrics = ClassificationMetrics.from_confusion(TUTORIAL, PETS)
    (result,) = apply_policy(policy, metrics)
    assert result.status is Status.ERROR and "ZeroDivisionError: boom" in result.message
    v = evaluate(lookup_model(3), _npz(tmp_path), policy, provider="cpu")
    assert v.decision is Decision.ERROR and v.exit_code == 2
    assert v.error == {
        "type": "InternalError",
        "message": "rule 'explodes': rule could not be computed: ZeroDivisionError: boom",
    }


class _BrokenDataset(Dataset):
    """A dataset whose reader crashes midway, standing in for an unforeseen bug."""

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        yield from super().batches(batch_size)
        raise RuntimeError("disk vanished")


def test_an_unexpected_crash_is_an_internal_error(tmp_path: Path) -> None:
    ds = load_dataset(_npz(tmp_path))
    ds.__class__ = _BrokenDataset
    v = evaluate(lookup_model(3), ds, parse_policy(POLICY), provider="cpu")
    assert v.decision is Decision.ERROR and v.metrics is None
    assert v.error == {"type": "InternalError", "message": "internal error: RuntimeError: disk vanished"}
    assert render_text(v).splitlines()[-1] == "VERDICT: ERROR: InternalError"


def test_invalid_batch_size_is_a_request_error(tmp_path: Path) -> None:
    v = evaluate(lookup_model(3), _npz(tmp_path), parse_policy(POLICY), provider="cpu", batch_size=0)
    assert v.decision is Decision.ERROR and v.error is not None
    assert v.error == {"type": "RequestError", "message": "batch_size=0 is not valid; it should be >= 1"}


def test_error_verdict_keeps_what_was_known(tmp_path: Path) -> None:
    v = evaluate(b"not onnx", _npz(tmp_path), parse_policy(POLICY), provider="cpu")
    assert v.decision is Decision.ERROR and v.error is not None and v.error["type"] == "ModelError"
    assert v.dataset["samples"] == 150 and v.policy["name"] == "t" and v.metrics is None and v.rules == []


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("ModelError", errors.ModelError),
        ("DatasetError", errors.DatasetError),
        ("PolicyError", errors.PolicyError),
        ("CancelledError", errors.CancelledError),
        ("EvaluationTimeoutError", errors.EvaluationTimeoutError),
        ("GateError", errors.GateError),
        ("SomethingNew", errors.InternalError),  # never milder than an internal error
        ("ValueError", errors.InternalError),
    ],
)
def test_an_error_is_rebuilt_from_its_kind(kind: str, cls: type[errors.GateError]) -> None:
    rebuilt = errors.GateError.from_kind(kind, "shard 2 of 8: the message as it was")
    assert type(rebuilt) is cls and rebuilt.kind == cls.kind
    assert rebuilt.message == str(rebuilt) == "shard 2 of 8: the message as it was"


def test_the_verdict_numbers_come_from_the_predictions_table(tmp_path: Path) -> None:
    ds = load_dataset(_npz(tmp_path))
    v = evaluate(lookup_model(3), ds, parse_policy(POLICY), provider="cpu", caches=Caches.at(tmp_path / "c"))
    table = stored_predictions(Caches.at(tmp_path / "c"), v.model["sha256"], ds.sha256, "cpu")
    assert table is not None and table.metrics().to_dict() == v.metrics
    assert v.metrics["confusion_matrix"] == TUTORIAL
