"""Near-duplicates and label conflicts inside a held-out ImageFolder, from the perceptual
hashes, end to end through `gate eval` with a real ONNX model."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gate.cli import main
from gate.heldout.duplicates import components, find_duplicates, near_pairs
from tests.models import linear_softmax_model

SIZE = 48


def _image(rng: np.random.Generator) -> Image.Image:
    """A structured picture (smooth blobs over a gradient): perceptual hashes tell such
    pictures apart, as they do photographs."""
    coarse = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
    blobs = np.asarray(Image.fromarray(coarse).resize((SIZE, SIZE), Image.Resampling.BICUBIC), dtype=np.float64)
    ramp = np.linspace(0, rng.uniform(-80, 80), SIZE)[None, :, None]
    return Image.fromarray(np.clip(blobs + ramp, 0, 255).astype(np.uint8))


def _encoded(image: Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"{path.parent.name}/{path.name}"


def _held_out(root: Path) -> dict[str, Any]:
    """30 distinct images over classes a and b, plus: one image stored as an 'a' and,
    re-encoded as JPEG, as a 'b' (a conflict), and one image with two copies resized and
    re-encoded as JPEG, all three labelled 'a' (a group of 3). Byte-identical files under
    two labels never get this far: loading the set refuses them (see below)."""
    rng = np.random.default_rng(5)
    for i in range(30):
        _write(root / "held" / "ab"[i % 2] / f"u{i:02d}.png", _encoded(_image(rng)))
    twin = _image(rng)
    conflict = [
        _write(root / "held/a/twin.png", _encoded(twin)),
        _write(root / "held/b/twin.jpg", _encoded(twin, "JPEG", quality=90)),
    ]
    original = _image(rng)
    group = [_write(root / "held/a/orig.png", _encoded(original))]
    for side in (40, 61):
        small = original.resize((side, side), Image.Resampling.BILINEAR)
        group.append(_write(root / f"held/a/copy{side}.jpg", _encoded(small, "JPEG", quality=80)))
    spec = root / "held.yaml"
    spec.write_text(f"name: held\nsource: held\npreprocess: {{resize: [{SIZE}, {SIZE}]}}\n")
    model = root / "m.onnx"
    w = np.random.default_rng(0).normal(size=(3 * SIZE * SIZE, 2)).astype(np.float32) * 0.01
    model.write_bytes(linear_softmax_model(w, np.zeros(2, np.float32), input_shape=["N", 3, SIZE, SIZE]))
    return {"spec": spec, "model": model, "conflict": sorted(conflict), "group": sorted(group)}


def _eval(capsys: pytest.CaptureFixture[str], case: dict[str, Any], policy: str, *extra: str) -> tuple[int, Any]:
    path = case["spec"].parent / "policy.yaml"
    path.write_text(policy)
    argv = ["eval", "--model", str(case["model"]), "--dataset", str(case["spec"]), "--policy", str(path)]
    code = main([*argv, "--provider", "cpu", "--no-cache", *extra])
    out, _ = capsys.readouterr()
    return code, out


def test_copies_with_two_labels_are_a_conflict_and_resized_copies_one_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = _held_out(tmp_path)
    policy = "version: 1\nname: d\nrules:\n  - {id: dups, type: heldout_duplicates, max_hamming: 8, conflicts: 0}\n"
    code, out = _eval(capsys, case, policy, "--format", "json")
    v = json.loads(out)
    assert code == 1 and v["verdict"] == "FAIL", v.get("error")
    section = v["dataset_audit"]["duplicates"]
    groups = {tuple(g["sample_ids"]): g for g in section["groups"]}
    assert set(groups) == {tuple(case["conflict"]), tuple(case["group"])}
    conflict = groups[tuple(case["conflict"])]
    assert conflict["conflict"] is True and conflict["labels"] == ["a", "b"]
    assert groups[tuple(case["group"])]["conflict"] is False and len(case["group"]) == 3
    assert section["conflict_count"] == 1 and section["redundant"] == 3 and section["samples"] == 35
    assert section["groups"][0]["sample_ids"] == case["conflict"]  # conflicts first
    [rule] = v["rules"]
    assert rule["message"].startswith(
        "2 group(s) of near-duplicate held-out images (Hamming distance <= 8): 3 redundant of 35 (8.57%),"
        " 1 with different labels: 1 conflict(s) > 0"
    )
    assert "a/twin.png (a) = b/twin.jpg (b)" in rule["message"]
    assert all(t.startswith("data:image/jpeg;base64,") for g in section["groups"] for t in g["thumbnails"])


def test_a_rate_ceiling_on_redundant_copies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = _held_out(tmp_path)
    code, out = _eval(
        capsys,
        case,
        "version: 1\nname: d\nrules:\n  - {id: dups, type: heldout_duplicates, max_rate: 0.1}\n",
        "--format",
        "json",
    )
    v = json.loads(out)
    assert code == 0 and "(8.57%), 1 with different labels: rate 0.086 <= max_rate 0.100" in v["rules"][0]["message"]


def test_the_html_report_shows_the_groups_with_their_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = _held_out(tmp_path)
    policy = "version: 1\nname: d\nrules:\n  - {id: dups, type: heldout_duplicates, conflicts: 0}\n"
    _eval(capsys, case, policy, "--format", "json", "--report-dir", str(tmp_path / "reports"))
    html = (tmp_path / "reports" / "report.html").read_text()
    assert "<h2>Held-out set</h2>" in html and "CONFLICT a/twin.png (a), b/twin.jpg (b)" in html
    assert html.count('<img class="thumb" src="data:image/jpeg;base64,') == 5


def test_byte_identical_files_under_two_labels_are_refused_when_the_set_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = _held_out(tmp_path)
    (tmp_path / "held/b/twin.png").write_bytes((tmp_path / "held/a/twin.png").read_bytes())
    policy = "version: 1\nname: d\nrules:\n  - {id: dups, type: heldout_duplicates, conflicts: 0}\n"
    code, out = _eval(capsys, case, policy, "--format", "json")
    v = json.loads(out)
    assert code == 2 and v["error"]["type"] == "DatasetError"
    assert v["error"]["message"].startswith("label conflict: a/twin.png (label 'a') and b/twin.png (label 'b')")


def test_identical_tensors_under_two_labels_are_a_conflict_in_an_npz_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(9)
    x = np.stack(
        [np.asarray(_image(rng).resize((16, 16)), dtype=np.float32).transpose(2, 0, 1) / 255 for _ in range(12)]
    )
    x[7] = x[2]  # the same tensor, byte for byte
    y = np.array([0, 1] * 6)
    y[7], y[2] = 1, 0
    np.savez(tmp_path / "set.npz", x=x, y=y, classes=np.array(["a", "b"]))
    model = tmp_path / "m.onnx"
    w = np.random.default_rng(0).normal(size=(3 * 16 * 16, 2)).astype(np.float32) * 0.01
    model.write_bytes(linear_softmax_model(w, np.zeros(2, np.float32), input_shape=["N", 3, 16, 16]))
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nname: d\nrules:\n  - {id: dups, type: heldout_duplicates, conflicts: 0}\n")
    argv = ["eval", "--model", str(model), "--dataset", str(tmp_path / "set.npz"), "--policy", str(policy)]
    code = main([*argv, "--provider", "cpu", "--no-cache", "--format", "json"])
    v = json.loads(capsys.readouterr()[0])
    assert code == 1, v.get("error")
    [group] = v["dataset_audit"]["duplicates"]["groups"]
    assert group == {"sample_ids": ["x[2]", "x[7]"], "labels": ["a", "b"], "conflict": True}


def test_groups_are_chains_of_near_copies_and_match_brute_force() -> None:
    rng = np.random.default_rng(2)
    hashes = rng.integers(0, 2**63, 400, dtype=np.uint64)
    hashes[10] = hashes[3] ^ np.uint64(0b111)  # 3 bits from 3
    hashes[20] = hashes[10] ^ np.uint64(0b111 << 8)  # 3 bits from 10, 6 from 3: one chain
    hashes[30] = hashes[5]
    labels = np.zeros(400, dtype=np.int64)
    labels[30] = 1
    audit = find_duplicates(hashes, labels, 3)
    assert [g.members for g in audit.groups] == [(5, 30), (3, 10, 20)]
    assert [g.conflict for g in audit.groups] == [True, False] and audit.redundant == 3
    first, second = near_pairs(hashes, 12)
    bits = np.array([[bin(int(a) ^ int(b)).count("1") for b in hashes] for a in hashes])
    expected = {(i, j) for i in range(400) for j in range(i + 1, 400) if bits[i, j] <= 12}
    assert set(zip(first.tolist(), second.tolist(), strict=True)) == expected
    assert components(4, np.array([2, 0]), np.array([3, 2])).tolist() == [0, 1, 0, 0]


def test_a_radius_outside_the_hash_is_refused() -> None:
    with pytest.raises(ValueError, match="max_hamming must be an integer from 0 to 64"):
        find_duplicates(np.zeros(2, dtype=np.uint64), [0, 1], 65)


def test_groups_are_the_same_when_the_pairs_are_folded_in_many_small_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pairs are folded into the components a block's worth at a time (memory stays
    bounded on thousands of near-identical frames): tiny blocks, many folds, same groups."""
    from gate.heldout import duplicates

    rng = np.random.default_rng(5)
    base = rng.integers(0, 2**63, 12, dtype=np.uint64)
    flips = np.left_shift(np.uint64(1), rng.integers(0, 64, (600, 2)).astype(np.uint64))
    hashes = base[rng.integers(0, 12, 600)] ^ flips[:, 0] ^ flips[:, 1]  # 12 clusters of near copies
    labels = rng.integers(0, 3, 600)
    whole = find_duplicates(hashes, labels, 4)
    first, _ = near_pairs(np.unique(hashes), 4)
    assert len(first) > 1_000  # enough pairs for many folds below
    monkeypatch.setattr(duplicates, "_BLOCK", 64)
    assert find_duplicates(hashes, labels, 4) == whole and whole.groups
