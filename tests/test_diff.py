"""`gate diff A B`: two real evaluations of a good model and of one that answers cat for
every dog, compared by evaluation id (audit database and server) and as verdict files."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gate.cli import main
from gate.diff import diff_verdicts
from tests.conftest import Served
from tests.models import lookup_model, one_hot_rows, table_model


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _two(s: Served, tmp_path: Path) -> tuple[str, str]:
    with s.client() as client:
        ids = []
        for name, model in (
            ("good.onnx", lookup_model(3)),
            ("dog-blind.onnx", table_model(one_hot_rows([0, 0, 2], 3))),
        ):
            sha = client.upload_model(model, filename=name).sha256
            evaluation = client.evaluate(sha, "pets", policy_name="default", model_name=name)
            (tmp_path / f"{name}.json").write_text(json.dumps(evaluation.document))
            client.save_predictions(evaluation.evaluation_id, tmp_path / f"{name}.csv")
            ids.append(evaluation.evaluation_id)
    return ids[0], ids[1]


def _check(doc: dict[str, Any]) -> None:
    per_class = {d["name"]: d for d in doc["per_class"]}
    assert per_class["dog/recall"]["a"] == pytest.approx(0.9) and per_class["dog/recall"]["b"] == 0.0
    assert per_class["dog/recall"]["change"] == pytest.approx(-0.9)
    rules = {r["id"]: (r["a"], r["b"]) for r in doc["rules"]}
    assert rules["recall-floor"] == ("pass", "fail")
    # the 45 dogs A found are now cats; the 2 cats A called dogs are now right
    assert len(doc["newly_wrong"]) == 45 and {s["label"] for s in doc["newly_wrong"]} == {"dog"}
    assert {(s["a"], s["b"]) for s in doc["newly_wrong"]} == {("dog", "cat")}
    assert [(s["label"], s["a"], s["b"]) for s in doc["newly_right"]] == [("cat", "dog", "cat")] * 2
    assert doc["samples_note"] is None


def test_diff_by_id_from_the_audit_database_and_the_server(
    serve: Callable[..., Served], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = serve()
    a, b = _two(s, tmp_path)
    code, out, err = _cli(capsys, "diff", a, b, "--data-dir", str(s.root / "data"), "--format", "json")
    assert code == 0, err
    _check(json.loads(out))
    code, out, err = _cli(capsys, "diff", a, b, "--server", s.address, "--format", "json")
    assert code == 0, err
    _check(json.loads(out))
    code, text, _ = _cli(capsys, "diff", a, b, "--server", s.address)
    assert (
        "dog/recall" in text
        and "-0.9000" in text
        and "Newly wrong (45)" in text
        and re.search(r"recall-floor +pass +fail", text)
    )
    code, markdown, _ = _cli(capsys, "diff", a, b, "--server", s.address, "--format", "markdown")
    assert "### Newly right (2)" in markdown and "| recall-floor | pass | fail |" in markdown
    code, html, _ = _cli(capsys, "diff", a, b, "--data-dir", str(s.root / "data"), "--format", "html")
    assert "<h2>Newly wrong (45)</h2>" in html and "<td>dog/recall</td>" in html and "Content-Security-Policy" in html


def test_diff_of_verdict_files_with_their_predictions_and_slices(
    serve: Callable[..., Served], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = serve()
    _two(s, tmp_path)
    good, blind = tmp_path / "good.onnx.json", tmp_path / "dog-blind.onnx.json"
    code, out, err = _cli(
        capsys,
        "diff",
        str(good),
        str(blind),
        "--predictions-a",
        str(tmp_path / "good.onnx.csv"),
        "--predictions-b",
        str(tmp_path / "dog-blind.onnx.csv"),
        "--format",
        "json",
    )
    assert code == 0, err
    _check(json.loads(out))
    code, out, _ = _cli(capsys, "diff", str(good), str(blind), "--format", "json")
    assert json.loads(out)["samples_note"] == "the predictions tables of both evaluations are needed to compare samples"
    code, _, err = _cli(capsys, "diff", "no-such-id", str(blind))
    assert code == 2 and "give --server, --data-dir or --config" in err

    # slices: whatever their shape, numbers at the same path are compared
    a, b = json.loads(good.read_text()), json.loads(blind.read_text())
    a["metrics"]["slices"] = {
        "site": {"north": {"accuracy": 0.9, "samples": 40, "bins": [1, 2]}, "south": {"accuracy": 0.8}},
        "weakest": [{"slice": "site=south", "observed": 0.8}],  # a ranking: its places are not comparable
    }
    b["metrics"]["slices"] = {
        "site": {"north": {"accuracy": 0.7, "samples": 40, "bins": [1, 3]}, "east": {"accuracy": 0.5}},
        "weakest": [{"slice": "site=east", "observed": 0.5}],
    }
    found = diff_verdicts(a, b)
    assert [(d.name, d.change) for d in found.slices] == [
        ("site/north/accuracy", pytest.approx(-0.2)),
        ("site/north/samples", 0.0),
        ("site/north/bins[0]", 0.0),
        ("site/north/bins[1]", 1.0),
    ]
