"""Champion vs challenger and leakage through a real gate server (port 0) and `gate check`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gate.cli import main
from gate.client import GateClientError
from tests.conftest import Served
from tests.models import lookup_model, one_hot_rows, table_model

PETS = ["cat", "dog", "rabbit"]
NO_RABBIT_DROP = (
    "version: 1\nname: no-regression\nrules:\n"
    "  - {id: recall-kept, type: baseline, metric: recall, per_class: true, max_drop: 0.10}\n"
)


def _check(capsys: pytest.CaptureFixture[str], s: Served, *argv: str | Path) -> tuple[int, dict[str, Any]]:
    code = main(
        ["check", "--server", s.address, "--dataset", "pets", "--format", "json", "--provider", "cpu"]
        + [str(a) for a in argv]
    )
    out, _ = capsys.readouterr()
    return code, json.loads(out)


def test_gate_check_with_a_baseline(
    serve: Callable[..., Served], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = serve()
    champion = tmp_path / "champion.onnx"
    champion.write_bytes(lookup_model(3))
    # the challenger calls every rabbit a cat: rabbit recall 40/45 -> 0
    challenger = tmp_path / "challenger.onnx"
    challenger.write_bytes(table_model(one_hot_rows([0, 1, 0], 3)))
    policy = tmp_path / "no-regression.yaml"
    policy.write_text(NO_RABBIT_DROP)

    code, v = _check(capsys, s, "--model", challenger, "--policy", policy, "--baseline", champion)
    assert code == 1 and v["verdict"] == "FAIL"
    assert v["rules"][0]["message"] == "rabbit: recall 0.000 vs champion 0.889: drop 0.889 > 0.100"
    assert v["baseline"]["model"]["sha256"] == hashlib.sha256(champion.read_bytes()).hexdigest()
    assert v["baseline"]["comparison"]["mcnemar"]["challenger_worse"] == 40

    code, v = _check(capsys, s, "--model", champion, "--policy", policy, "--baseline", champion)
    assert code == 0 and v["verdict"] == "PASS"

    # what the server recorded is what the client got
    with s.client() as client:
        records = client.list_verdicts(limit=5)
    assert [r.verdict.decision for r in records[:2]] == [1, 2]  # newest first: PASS, then FAIL
    assert "baseline" in json.loads(records[1].verdict.verdict_json)


def test_the_service_refuses_what_a_policy_cannot_use(serve: Callable[..., Served], tmp_path: Path) -> None:
    s = serve()
    model = lookup_model(3)
    sha = hashlib.sha256(model).hexdigest()
    with s.client() as client:
        client.upload_model(model, filename="m.onnx")
        with pytest.raises(GateClientError) as exc:
            client.evaluate(sha, "pets", policy_yaml=NO_RABBIT_DROP)
        assert exc.value.code == "INVALID_ARGUMENT"
        assert "rule 'recall-kept' (baseline) needs a champion model" in exc.value.details
        with pytest.raises(GateClientError) as exc:
            client.evaluate(sha, "pets", policy_yaml=NO_RABBIT_DROP, baseline_sha256="0" * 64)
        assert exc.value.code == "NOT_FOUND"
        with pytest.raises(GateClientError) as exc:
            client.evaluate(sha, "pets", policy_name="default", fingerprint=b"not a fingerprint file")
        assert exc.value.code == "INVALID_ARGUMENT"
        # each refusal is in the audit log as ERROR
        records = client.list_verdicts(limit=3)
    assert [r.verdict.decision for r in records] == [3, 3, 3]


def test_a_registered_dataset_with_a_training_sample(
    serve: Callable[..., Served], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the same lookup model is right on every training sample and on 80 % of the held-out ones
    sets = tmp_path / "registered"
    sets.mkdir()
    labels = np.array([c for c in range(3) for _ in range(50)])
    held = labels.copy()
    held[::5] = (held[::5] + 1) % 3
    np.savez(sets / "train.npz", x=labels.astype(np.float32).reshape(-1, 1), y=labels, classes=np.array(PETS))
    np.savez(sets / "held.npz", x=held.astype(np.float32).reshape(-1, 1), y=labels, classes=np.array(PETS))
    (sets / "pets-gap.yaml").write_text("name: pets-gap\nsource: held.npz\ntrain_sample: train.npz\n")
    s = serve(datasets=[str(sets)])
    model = tmp_path / "m.onnx"
    model.write_bytes(lookup_model(3))
    policy = tmp_path / "gap.yaml"
    policy.write_text(
        "version: 1\nname: gap\nrules:\n  - {id: gap, type: train_test_gap, metric: accuracy, max_gap: 0.1}\n"
    )
    code = main(
        [
            "check",
            "--server",
            s.address,
            "--dataset",
            "pets-gap",
            "--format",
            "json",
            "--provider",
            "cpu",
            "--model",
            str(model),
            "--policy",
            str(policy),
        ]
    )
    v = json.loads(capsys.readouterr()[0])
    assert code == 1, v["error"]
    assert v["rules"][0]["message"].startswith(
        "accuracy on the training sample 1.000 (150 samples) vs held-out 0.800: gap 0.200 > 0.100"
    )
    assert v["train_sample"]["samples"] == 150
