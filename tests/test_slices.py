"""Slices end to end: a manifest set whose camera b misses otters, judged by ``gate eval``
and ``gate check`` with real models and a real server; metadata sidecars for ImageFolder
and .npz sets; missing values; numeric bins; unknown columns; the verdict's
``metrics.slices``; the local and Ray engines giving the same slices."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gate.cli import main
from gate.datasets import load_dataset
from gate.evaluation import evaluate
from tests.conftest import ROOT, Served
from tests.models import linear_softmax_model, lookup_model, predictions_for

CLASSES = ["cat", "dog", "otter", "rabbit"]
DEFAULT_POLICY = ROOT / "policies" / "default.yaml"
SHADE = 60  # pixel (0, 0) of an image is SHADE times the class the model answers


def _policy(root: Path, *rules: str, name: str = "slices") -> Path:
    path = root / f"{name}.yaml"
    path.write_text(f"version: 1\nname: {name}\nrules:\n" + "".join(f"  - {r}\n" for r in rules))
    return path


CAMERA_RECALL = (
    "{id: camera-recall, type: per_slice, slice: camera, metric: recall, per_class: true, min: 0.80, min_support: 30}"
)
CAMERA_GAP = "{id: camera-gap, type: slice_gap, slice: camera, metric: recall, max_gap: 0.1}"


def image_model() -> bytes:
    """Answers class j for an image whose pixel (0, 0) is SHADE·j: score_j = −(x − c_j)² + x²
    for x the first pixel (0…1) and c_j = SHADE·j/255, linear in x."""
    centres = np.arange(len(CLASSES), dtype=np.float32) * SHADE / 255
    weights = np.zeros((4, len(CLASSES)), np.float32)
    weights[0] = 2 * centres
    return linear_softmax_model(weights, (-(centres**2)).astype(np.float32), input_shape=["N", 1, 2, 2])


def _image(path: Path, answer: int, serial: int) -> None:
    """A 2×2 grey image the model reads as class ``answer``; ``serial`` makes its bytes unique."""
    pixels = np.array([[SHADE * answer, serial % 256], [serial // 256, 7]], np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode="L").save(path)


def camera_rows() -> list[tuple[str, int, str]]:
    """(label, answer, camera) per sample: otters at cameras a and c (90 each) all found,
    at camera b 15 of 30 taken for cats; 20 cats, dogs and rabbits per camera, all right."""
    rows = []
    for camera in "abc":
        for c, name in enumerate(CLASSES):
            if name != "otter":
                rows += [(name, c, camera)] * 20
    rows += [("otter", 2, "a")] * 90 + [("otter", 2, "c")] * 90
    rows += [("otter", 2, "b")] * 15 + [("otter", 0, "b")] * 15
    return rows


def camera_set(root: Path, *, extra: str = "") -> Path:
    """The camera set as a manifest (path,label,camera) and its spec; returns the spec."""
    lines = ["path,label,camera"]
    for i, (label, answer, camera) in enumerate(camera_rows()):
        _image(root / "imgs" / label / f"{i}.png", answer, i)
        lines.append(f"{label}/{i}.png,{label},{camera}")
    (root / "imgs" / "list.csv").write_text("\n".join(lines) + "\n")
    spec = root / "cameras.yaml"
    spec.write_text(
        f"name: cameras\nsource: imgs/list.csv\nclasses: {json.dumps(CLASSES)}\npreprocess: {{channels: L}}\n{extra}"
    )
    (root / "model.onnx").write_bytes(image_model())
    return spec


def _eval(capsys: pytest.CaptureFixture[str], model: Path, dataset: Path, policy: Path) -> tuple[int, dict[str, Any]]:
    args = ["eval", "--format", "json", "--provider", "cpu", "--model", model, "--dataset", dataset]
    code = main([str(a) for a in [*args, "--policy", policy]])
    return code, json.loads(capsys.readouterr().out)


def _rule(verdict: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in verdict["rules"] if r["id"] == rule_id)


@pytest.fixture(scope="module")
def cameras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return camera_set(tmp_path_factory.mktemp("cameras"))


def test_the_default_policy_passes_a_set_whose_camera_b_misses_otters(
    cameras: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, verdict = _eval(capsys, cameras.parent / "model.onnx", cameras, DEFAULT_POLICY)
    assert (code, verdict["verdict"]) == (0, "PASS")
    assert round(verdict["metrics"]["per_class"]["otter"]["recall"], 2) == 0.93
    # the verdict still shows the weak camera, which no rule guards
    weakest = verdict["metrics"]["slices"]["weakest"]
    assert weakest[0] == {
        "slice": "camera=b",
        "column": "camera",
        "value": "b",
        "metric": "accuracy",
        "observed": 75 / 90,
        "support": 90,
        "guarded": False,
    }
    camera_b = verdict["metrics"]["slices"]["columns"]["camera"]["b"]
    assert camera_b["support"] == 90 and camera_b["accuracy"] == 75 / 90
    assert camera_b["per_class"]["otter"] == {
        "support": 30,
        "predicted": 15,
        "tp": 15,
        "precision": 1.0,
        "recall": 0.5,
        "f1": 30 / 45,
    }
    assert camera_b["per_class"]["cat"]["precision"] == 20 / 35
    assert camera_b["balanced_accuracy"] == pytest.approx((1 + 1 + 0.5 + 1) / 4)


def test_per_slice_fails_naming_the_camera_the_class_and_the_counts(
    cameras: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, verdict = _eval(capsys, cameras.parent / "model.onnx", cameras, _policy(tmp_path, CAMERA_RECALL))
    assert (code, verdict["verdict"]) == (1, "FAIL")
    rule = _rule(verdict, "camera-recall")
    assert rule["status"] == "fail"
    assert rule["message"] == "camera=b, otter: recall 0.500 (15/30) < 0.800"
    cells = {c["class"]: c for c in rule["classes"]}
    assert cells["camera=b, otter"]["status"] == "fail"
    assert (cells["camera=b, otter"]["numerator"], cells["camera=b, otter"]["denominator"]) == (15, 30)
    # 20 cats at camera a are too few for min_support 30: inconclusive, not judged
    assert cells["camera=a, cat"]["status"] == "inconclusive"
    assert cells["camera=a, cat"]["message"] == "camera=a, cat: not enough evidence: 20 samples < 30"
    assert cells["camera=a, otter"]["status"] == "pass"
    assert verdict["metrics"]["slices"]["weakest"][0]["guarded"] is True


def test_slice_gap_fails_naming_the_worst_and_best_cameras(
    cameras: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, verdict = _eval(capsys, cameras.parent / "model.onnx", cameras, _policy(tmp_path, CAMERA_GAP))
    assert (code, verdict["verdict"]) == (1, "FAIL")
    rule = _rule(verdict, "camera-gap")
    assert rule["message"] == "otter: recall 0.500 at camera=b (15/30) vs 1.000 at camera=a (90/90): gap 0.500 > 0.100"
    against_all = _policy(tmp_path, CAMERA_GAP.replace("max_gap: 0.1", "max_gap: 0.1, against: all"), name="all")
    code, verdict = _eval(capsys, cameras.parent / "model.onnx", cameras, against_all)
    assert code == 1
    assert _rule(verdict, "camera-gap")["message"] == (
        "otter: recall 0.500 at camera=b (15/30) vs 0.929 on the whole set (195/210): gap 0.429 > 0.100"
    )


def test_corrected_intervals_say_so_in_the_message(
    cameras: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = CAMERA_RECALL.replace("min_support: 30", "min_support: 30, confidence: 0.95, correction: holm")
    code, verdict = _eval(capsys, cameras.parent / "model.onnx", cameras, _policy(tmp_path, rule))
    assert code == 1
    message = _rule(verdict, "camera-recall")["message"]
    # three otter cells have 30 or more samples: camera b is the strongest evidence, rank 0 of 3
    assert message == (
        "camera=b, otter: recall 0.500 (15/30) < 0.800; 98.33% (95% holm-corrected for 3 cells)"
        " interval [0.300, 0.700] wholly below the floor"
    )


def test_a_column_the_set_lacks_is_an_error_listing_its_columns(
    cameras: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _policy(tmp_path, CAMERA_RECALL.replace("slice: camera", "slice: [camera, site]"))
    code, verdict = _eval(capsys, cameras.parent / "model.onnx", cameras, policy)
    assert (code, verdict["verdict"]) == (2, "ERROR")
    assert (
        "rule 'camera-recall' (per_slice): metadata column 'site' does not exist; the set's columns: camera"
        in (verdict["error"]["message"])
    )


def test_gate_check_judges_the_registered_sets_metadata(
    serve: Callable[..., Served], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "registered"
    spec = camera_set(data)
    s = serve(datasets=[str(data)])
    policy = _policy(tmp_path, CAMERA_RECALL, CAMERA_GAP)
    args = ["check", "--server", s.address, "--model", data / "model.onnx", "--dataset", "cameras"]
    code = main([str(a) for a in [*args, "--format", "json", "--policy-file", policy]])
    verdict = json.loads(capsys.readouterr().out)
    assert (code, verdict["verdict"]) == (1, "FAIL"), verdict["error"]
    assert _rule(verdict, "camera-recall")["message"] == "camera=b, otter: recall 0.500 (15/30) < 0.800"
    assert verdict["metrics"]["slices"]["columns"]["camera"]["b"]["support"] == 90
    listed = {d.name: d for d in s.client().list_datasets()}
    assert spec.stem in listed
    columns = {c.name: [(v.value, v.count) for v in c.values] for c in listed["cameras"].metadata}
    assert columns == {"camera": [("a", 150), ("c", 150), ("b", 90)]}  # most common first
    assert [c.distinct_values for c in listed["cameras"].metadata] == [3]


def test_list_datasets_lists_at_most_200_values_of_a_column(serve: Callable[..., Served], tmp_path: Path) -> None:
    """A column of per-sample ids must not make ListDatasets grow with the set."""
    root = tmp_path / "ids"
    root.mkdir()
    # 500 samples, each its own id but for 3 that share one: 498 distinct values
    ids = [f"id-{i:03d}" for i in range(497)] + ["shared"] * 3
    _npz_set(root, "index,sample\n" + "".join(f"{i},{v}\n" for i, v in enumerate(ids)), cm=[[250, 0], [0, 250]])
    (root / "ids.yaml").write_text("name: ids\nsource: set.npz\nmetadata: meta.csv\n")
    s = serve(datasets=[str(root)])
    [column] = {d.name: d for d in s.client().list_datasets()}["ids"].metadata
    assert column.distinct_values == 498 and len(column.values) == 200
    assert (column.values[0].value, column.values[0].count) == ("shared", 3)  # most common first


# -- sidecars, missing values, bins ------------------------------------------------------------


def _npz_set(root: Path, meta: str, *, name: str = "meta.csv", cm: list[list[int]] | None = None) -> Path:
    x, y = predictions_for(cm or [[40, 0], [10, 30]])
    np.savez(root / "set.npz", x=x, y=y, classes=np.array(["cat", "dog"]))
    (root / name).write_text(meta)
    (root / "model.onnx").write_bytes(lookup_model(2))
    spec = root / "set.yaml"
    spec.write_text(f"name: tensors\nsource: set.npz\nmetadata: {name}\n")
    return spec


def test_an_npz_sidecar_keyed_by_index_with_missing_values(tmp_path: Path) -> None:
    rows = "index,site,age\n" + "".join(f"{i},{'north' if i % 2 else ''},{i}\n" for i in range(60))
    ds = load_dataset(_npz_set(tmp_path, rows))
    assert ds.metadata is not None and ds.metadata[1] == {"site": "north", "age": "1"}
    verdict = evaluate(
        tmp_path / "model.onnx", ds, _policy(tmp_path, "{id: a, type: metric, metric: accuracy, min: 0.5}")
    )
    columns = verdict.metrics["slices"]["columns"] if verdict.metrics else {}
    assert columns["site"]["north"]["support"] == 30 and columns["site"]["<missing>"]["support"] == 50
    # samples 60..79 have no row: every column is missing for them
    assert columns["age"]["<missing>"]["support"] == 20


def test_metadata_enters_the_dataset_hash(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = load_dataset(_npz_set(tmp_path / "one", "index,site\n0,north\n"))
    two = load_dataset(_npz_set(tmp_path / "two", "index,site\n0,south\n"))
    assert one.sha256 != two.sha256


def test_numeric_bins(tmp_path: Path) -> None:
    rows = "index,age\n" + "".join(f"{i},{i}\n" for i in range(79)) + "79,\n"
    policy = _policy(
        tmp_path, "{id: by-age, type: per_slice, slice: age, metric: accuracy, min: 0.9, bins: {age: [20, 50]}}"
    )
    verdict = evaluate(tmp_path / "model.onnx", _npz_set(tmp_path, rows), policy)
    rule = verdict.rules[0]
    assert {c.name for c in rule.classes} == {"age=< 20", "age=[20, 50)", "age=>= 50", "age=<missing>"}
    assert rule.status.value == "fail"
    bad = tmp_path / "bad"
    bad.mkdir()
    verdict = evaluate(bad / "model.onnx", _npz_set(bad, "index,age\n0,old\n"), policy)
    assert verdict.decision.value == "ERROR" and verdict.error is not None
    assert verdict.error["message"].endswith(
        "rule 'by-age' (per_slice): metadata column 'age' holds 'old', which is not a number to put in a bin"
    )


def test_an_image_folder_sidecar_keyed_by_path(tmp_path: Path) -> None:
    rows = ["path,camera"]
    for i, (label, answer, camera) in enumerate(camera_rows()):
        _image(tmp_path / "folder" / label / f"{i}.png", answer, i)
        rows.append(f"{label}/{i}.png,{camera}")
    (tmp_path / "cams.jsonl").write_text(
        "\n".join(json.dumps({"path": r.split(",")[0], "camera": r.split(",")[1]}) for r in rows[1:]) + "\n"
    )
    spec = tmp_path / "folder.yaml"
    spec.write_text("name: folder\nsource: folder\npreprocess: {channels: L}\nmetadata: cams.jsonl\n")
    (tmp_path / "model.onnx").write_bytes(image_model())
    verdict = evaluate(tmp_path / "model.onnx", spec, _policy(tmp_path, CAMERA_RECALL))
    assert verdict.decision.value == "FAIL"
    assert verdict.rules[0].message == "camera=b, otter: recall 0.500 (15/30) < 0.800"


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ("index,site\n0,a\n0,b\n", "meta.csv, line 3: index '0' is also on line 2"),
        ("index,site\n99,a\n", "meta.csv, line 2: index '99' is not a sample of the set"),
        ("index,site\n-1,a\n", "meta.csv, line 2: index '-1' is not a sample index"),
        ("site\na\n", "meta.csv, line 2: no 'index' column"),
    ],
)
def test_a_bad_sidecar_is_refused_naming_the_line(tmp_path: Path, meta: str, message: str) -> None:
    verdict = evaluate(tmp_path / "model.onnx", _npz_set(tmp_path, meta), DEFAULT_POLICY)
    assert verdict.decision.value == "ERROR" and verdict.error is not None
    assert message in verdict.error["message"]


def test_the_ray_engine_gives_the_same_slices(cameras: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    policy = _policy(tmp_path, CAMERA_RECALL, CAMERA_GAP)
    local = evaluate(cameras.parent / "model.onnx", cameras, policy, provider="cpu")
    ray = evaluate(cameras.parent / "model.onnx", cameras, policy, provider="cpu", engine="ray")
    assert ray.error is None, ray.error
    assert local.metrics is not None and ray.metrics is not None
    assert ray.metrics["slices"] == local.metrics["slices"]
    assert [r.to_dict() for r in ray.rules] == [r.to_dict() for r in local.rules]
