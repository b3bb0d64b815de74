"""The predictions table: one inference pass, every number of the verdict from it, and the
table exported as CSV and Parquet that pandas reads back without gate."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gate import demo
from gate.cache import Caches, stored_predictions
from gate.cli import main
from gate.evaluation import evaluate
from gate.inference import confidences
from gate.policy import parse_policy
from gate.predictions import PredictionTable, probabilities, top_k, write_predictions
from gate.verdict import Decision
from tests.models import lookup_model, predictions_for, table_model

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = ROOT / "policies" / "default.yaml"
PETS = ["cat", "dog", "rabbit"]
PETS_CM = [[50, 2, 3], [4, 45, 1], [2, 3, 40]]
LOOSE = parse_policy("version: 1\nname: loose\nrules:\n  - {id: acc, type: metric, metric: accuracy, min: 0.5}\n")


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> demo.DemoFiles:
    return demo.build(tmp_path_factory.mktemp("digits"))


def _pets(tmp: Path) -> Path:
    x, y = predictions_for(PETS_CM)
    path = tmp / "pets.npz"
    np.savez(path, x=x, y=y, classes=np.array(PETS))
    return path


# --------------------------------------------------------------------------- top k


def test_top_k_ranks_by_score_ties_to_the_lower_class_and_scores_are_probabilities() -> None:
    logits = np.array([[1.0, 3.0, 3.0, -2.0, 0.5, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
    probs = np.array([[0.1, 0.6, 0.3, 0.0, 0.0, 0.0], [0.2, 0.2, 0.2, 0.2, 0.1, 0.1]], np.float32)
    classes, scores = top_k(logits, 5)
    assert classes.tolist() == [[1, 2, 5, 0, 4], [0, 1, 2, 3, 4]]  # ties: the lower index first, as argmax
    softmax = np.exp(logits[0] - 3.0) / np.exp(logits[0] - 3.0).sum()
    np.testing.assert_allclose(scores[0], softmax[[1, 2, 5, 0, 4]], rtol=1e-6)
    classes, scores = top_k(probs, 3)
    assert classes.tolist() == [[1, 2, 0], [0, 1, 2]]
    np.testing.assert_array_equal(scores, np.float32([[0.6, 0.3, 0.1], [0.2, 0.2, 0.2]]))  # taken as they are
    for y in (logits, probs):
        first_class, first_score = top_k(y, 1)
        np.testing.assert_array_equal(first_class[:, 0], np.argmax(y, axis=1))
        np.testing.assert_array_equal(first_score[:, 0], confidences(y))
    np.testing.assert_allclose(probabilities(logits).sum(axis=1), 1.0)


# --------------------------------------------------------------------------- exported files


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        frame = pd.read_csv(path, dtype={"sample_id": str, "label": str, "predicted": str})
        frame["top_k"] = [json.loads(cell) for cell in frame["top_k"]]
        return frame
    frame = pd.read_parquet(path)
    frame["top_k"] = [[[entry["class"], entry["score"]] for entry in cell] for cell in frame["top_k"]]
    return frame


def _check_file(path: Path, verdict: dict[str, Any], expected_ids: list[str]) -> pd.DataFrame:
    """The exported table agrees with the verdict it came with, row by row and as a whole."""
    frame = _read(path)
    classes = verdict["dataset"]["classes"]
    assert list(frame.columns[:5]) == ["sample_id", "label", "predicted", "confidence", "top_k"]
    assert len(frame) == verdict["dataset"]["samples"] and frame["sample_id"].tolist() == expected_ids
    counts = pd.crosstab(frame["label"], frame["predicted"]).reindex(index=classes, columns=classes, fill_value=0)
    assert counts.to_numpy().tolist() == verdict["metrics"]["confusion_matrix"]
    k = min(5, len(classes))
    for row in frame.itertuples():
        ranked = row.top_k
        assert len(ranked) == k and len({c for c, _ in ranked}) == k
        scores = [s for _, s in ranked]
        assert scores == sorted(scores, reverse=True)
        assert ranked[0][0] == row.predicted and ranked[0][1] == pytest.approx(row.confidence, abs=1e-7)
        assert row.top1_class == row.predicted and row.top1_score == pytest.approx(row.confidence, abs=1e-7)
    return frame


def _gate_eval(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["eval", *argv, "--format", "json", "--quiet", "--provider", "cpu"])
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return code, document


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_gate_eval_predictions_out_on_the_demo_set_agrees_with_the_verdict(
    digits: demo.DemoFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    from gate.datasets import load_dataset

    ids = list(load_dataset(digits.heldout_spec).sample_ids)
    argv = ["--model", str(digits.bad_model), "--dataset", str(digits.heldout_spec), "--policy", str(DEFAULT_POLICY)]
    argv += ["--cache-dir", str(tmp_path / "cache")]
    first, again = tmp_path / f"p{suffix}", tmp_path / f"again{suffix}"
    code, cold = _gate_eval(capsys, *argv, "--predictions-out", str(first))
    assert code == 1 and cold["verdict"] == "FAIL", cold["error"]
    frame = _check_file(first, cold, ids)
    assert "three" in set(frame["label"]) and frame["sample_id"].iloc[0].endswith(".png")
    # served from the results cache: the very same table, without running the model
    code, warm = _gate_eval(capsys, *argv, "--predictions-out", str(again))
    assert code == 1 and warm["runtime"]["cache"]["results"] == "hit" and "session" not in warm["runtime"]["cache"]
    pd.testing.assert_frame_equal(_read(again), frame)
    good = ["--model", str(digits.good_model), *argv[2:], "--predictions-out", str(tmp_path / f"good{suffix}")]
    code, passed = _gate_eval(capsys, *good)
    assert code == 0 and passed["verdict"] == "PASS"
    assert not _check_file(tmp_path / f"good{suffix}", passed, ids).equals(frame)


def test_predictions_are_written_for_pass_and_never_for_error(tmp_path: Path) -> None:
    data, out = _pets(tmp_path), tmp_path / "out" / "p.csv"
    passed = evaluate(lookup_model(3), data, LOOSE, provider="cpu", predictions_out=out)
    assert passed.decision is Decision.PASS
    with out.open() as f:
        assert sum(1 for _ in f) == 150 + 1  # a header and one row per sample
    out.unlink()
    failed = evaluate(b"not onnx", data, LOOSE, provider="cpu", predictions_out=out)
    assert failed.decision is Decision.ERROR and not out.exists()
    assert list(out.parent.iterdir()) == []  # nothing half-written either


def test_a_predictions_file_gate_cannot_write_is_refused_before_inference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _pets(tmp_path)
    seen: list[int] = []
    odd = evaluate(
        lookup_model(3),
        data,
        LOOSE,
        provider="cpu",
        predictions_out=tmp_path / "p.xlsx",
        progress=lambda d, t: seen.append(d),
    )
    assert odd.decision is Decision.ERROR and odd.error is not None and odd.error["type"] == "RequestError"
    assert "p.xlsx" in odd.error["message"] and ".csv or .parquet" in odd.error["message"]
    assert seen == [] and odd.metrics is None
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # what `import pyarrow` meets where it is not installed
    missing = evaluate(lookup_model(3), data, LOOSE, provider="cpu", predictions_out=tmp_path / "p.parquet")
    assert missing.error is not None and missing.error["type"] == "RequestError"
    assert "'pyarrow'" in missing.error["message"] and "p.parquet" in missing.error["message"]
    assert not (tmp_path / "p.parquet").exists()


def test_metadata_columns_follow_the_table_columns(tmp_path: Path) -> None:
    rows = np.float32([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    classes, scores = top_k(rows, 3)
    table = PredictionTable(
        classes=("cat", "dog", "rabbit"),
        sample_id=np.array(["a.png", "b.png"]),
        label=np.array([0, 1]),
        predicted=classes[:, 0].copy(),
        confidence=scores[:, 0].copy(),
        top_k_class=classes,
        top_k_score=scores,
        metadata={"camera": np.array(["cam0", "cam1"])},
    )
    write_predictions(table, tmp_path / "m.csv")
    frame = pd.read_csv(tmp_path / "m.csv")
    assert list(frame.columns) == [
        "sample_id", "label", "predicted", "confidence", "top_k",
        "top1_class", "top1_score", "top2_class", "top2_score", "top3_class", "top3_score", "camera",
    ]  # fmt: skip
    assert frame["camera"].tolist() == ["cam0", "cam1"] and frame["predicted"].tolist() == ["cat", "rabbit"]
    assert json.loads(frame["top_k"][1]) == [
        ["rabbit", pytest.approx(0.8)],
        ["cat", pytest.approx(0.1)],
        ["dog", pytest.approx(0.1)],
    ]


# --------------------------------------------------------------------------- the results cache is the store


def test_the_results_cache_holds_the_whole_table(tmp_path: Path) -> None:
    rows = np.float32([[0.1, 0.5, 0.4], [3.0, -1.0, 2.0]] * 75)  # probabilities and logits, alternately
    x = np.arange(150, dtype=np.float32).reshape(-1, 1)
    y = np.resize([1, 2], 150)
    np.savez(tmp_path / "rows.npz", x=x, y=y, classes=np.array(PETS))
    model = table_model(rows)
    caches = Caches.at(tmp_path / "cache")
    assert stored_predictions(caches, hashlib.sha256(model).hexdigest(), "0" * 64, "cpu") is None
    verdict = evaluate(model, tmp_path / "rows.npz", LOOSE, provider="cpu", caches=caches)
    table = stored_predictions(caches, verdict.model["sha256"], verdict.dataset["sha256"], "cpu")
    assert table is not None and table.classes == tuple(PETS) and len(table) == 150
    assert table.sample_id[:2].tolist() == ["x[0]", "x[1]"] and table.label[:2].tolist() == [1, 2]
    assert table.top_k_class[:2].tolist() == [[1, 2, 0], [0, 2, 1]]
    np.testing.assert_allclose(table.top_k_score[0], [0.5, 0.4, 0.1], rtol=1e-6)
    assert table.metrics().to_dict() == verdict.metrics
    # the same entry by the provider's own name
    assert stored_predictions(caches, verdict.model["sha256"], verdict.dataset["sha256"], "CPUExecutionProvider")


# --------------------------------------------------------------------------- each model read and hashed once


@pytest.mark.parametrize("champion", [False, True])
@pytest.mark.parametrize("cached", [False, True])
def test_each_model_is_read_once_and_hashed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, champion: bool, cached: bool
) -> None:
    data = _pets(tmp_path)
    model, baseline = tmp_path / "m.onnx", tmp_path / "champion.onnx"
    model.write_bytes(lookup_model(3))
    baseline.write_bytes(lookup_model(3, probabilities=True))
    contents = {model.read_bytes(): "model", baseline.read_bytes(): "champion"}
    hashed: list[str] = []
    read: list[str] = []
    real_sha256, real_read = hashlib.sha256, Path.read_bytes

    def counting_sha256(*args: Any, **kwargs: Any) -> Any:
        if args and bytes(args[0]) in contents:
            hashed.append(contents[bytes(args[0])])
        return real_sha256(*args, **kwargs)

    def counting_read(self: Path) -> bytes:
        if self in (model, baseline):
            read.append(self.name)
        return real_read(self)

    monkeypatch.setattr(hashlib, "sha256", counting_sha256)
    monkeypatch.setattr(Path, "read_bytes", counting_read)
    extra: dict[str, Any] = {"baseline": baseline} if champion else {}
    if cached:
        extra["caches"] = Caches.at(tmp_path / "cache")
    verdict = evaluate(model, data, LOOSE, provider="cpu", **extra)
    assert verdict.decision is Decision.PASS, verdict.error
    assert sorted(hashed) == (["champion", "model"] if champion else ["model"])
    assert sorted(read) == (["champion.onnx", "m.onnx"] if champion else ["m.onnx"])


def test_a_model_that_changed_on_disk_is_refused(tmp_path: Path) -> None:
    data, model = _pets(tmp_path), tmp_path / "m.onnx"
    model.write_bytes(lookup_model(3))
    expected = hashlib.sha256(model.read_bytes()).hexdigest()
    assert evaluate(model, data, LOOSE, provider="cpu", model_sha256=expected).decision is Decision.PASS
    model.write_bytes(lookup_model(4))  # replaced after the caller computed its hash
    v = evaluate(model, data, LOOSE, provider="cpu", model_sha256=expected)
    assert v.decision is Decision.ERROR and v.error is not None and v.error["type"] == "ModelError"
    assert f"model file {model} changed or damaged on disk" in v.error["message"] and expected in v.error["message"]
    champion = evaluate(lookup_model(3), data, LOOSE, provider="cpu", baseline=model, baseline_sha256=expected)
    assert champion.error is not None and f"baseline model file {model} changed or damaged" in champion.error["message"]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_polars_and_duckdb_read_the_file_without_gate(
    digits: demo.DemoFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    """The two other readers the column contract names: each recomputes the verdict's
    confusion matrix from the file on its own."""
    polars = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    path = tmp_path / f"p{suffix}"
    argv = ["--model", str(digits.bad_model), "--dataset", str(digits.heldout_spec), "--policy", str(DEFAULT_POLICY)]
    code, verdict = _gate_eval(capsys, *argv, "--predictions-out", str(path))
    assert code == 1
    classes = verdict["dataset"]["classes"]
    expected = verdict["metrics"]["confusion_matrix"]

    frame = polars.read_parquet(path) if suffix == ".parquet" else polars.read_csv(path)
    assert frame.columns[:5] == ["sample_id", "label", "predicted", "confidence", "top_k"]
    counts = frame.group_by(["label", "predicted"]).len()
    from_polars = [[0] * len(classes) for _ in classes]
    for label, predicted, n in counts.iter_rows():
        from_polars[classes.index(label)][classes.index(predicted)] = n
    assert from_polars == expected

    reader = "read_parquet" if suffix == ".parquet" else "read_csv_auto"
    rows = duckdb.sql(f"SELECT label, predicted, count(*) FROM {reader}('{path}') GROUP BY ALL").fetchall()
    from_duckdb = [[0] * len(classes) for _ in classes]
    for label, predicted, n in rows:
        from_duckdb[classes.index(label)][classes.index(predicted)] = n
    assert from_duckdb == expected
