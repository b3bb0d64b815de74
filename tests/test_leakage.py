"""Leakage end to end: `gate fingerprint` on a training ImageFolder, then `gate eval
--fingerprint` with a `leakage` rule on a held-out ImageFolder and a real ONNX model."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gate.cli import main
from tests.models import linear_softmax_model

CLASSES = ["a", "b"]
SIZE = 48


def _image(rng: np.random.Generator) -> Image.Image:
    """A structured picture: smooth random blobs (upscaled noise) over a random gradient."""
    coarse = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
    blobs = np.asarray(Image.fromarray(coarse).resize((SIZE, SIZE), Image.Resampling.BICUBIC), dtype=np.float64)
    ramp = np.linspace(0, rng.uniform(-80, 80), SIZE)[None, :, None]
    return Image.fromarray(np.clip(blobs + ramp, 0, 255).astype(np.uint8))


def _write(path: Path, image: Image.Image, fmt: str = "PNG", **options: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    path.write_bytes(buffer.getvalue())


def _folders(tmp: Path, *, leaked: int) -> tuple[Path, Path, list[str]]:
    """A 100-image training set and a 100-image held-out set; ``leaked`` held-out images
    are training images resized (to 40 or 61 pixels) and re-encoded as JPEG."""
    rng = np.random.default_rng(11)
    train_images = [_image(rng) for _ in range(100)]
    for i, img in enumerate(train_images):
        _write(tmp / "train" / CLASSES[i % 2] / f"t{i:03d}.png", img)
    copies = []
    for i in range(100):
        if i < leaked:
            side = 40 if i % 2 else 61
            img = train_images[7 * i].resize((side, side), Image.Resampling.BILINEAR)
            name = f"held/{CLASSES[i % 2]}/h{i:03d}.jpg"
            _write(tmp / name, img, "JPEG", quality=80)
            copies.append(f"{CLASSES[i % 2]}/h{i:03d}.jpg")
        else:
            _write(tmp / f"held/{CLASSES[i % 2]}/h{i:03d}.png", _image(rng))
    return tmp / "train", tmp / "held", copies


def _setup(tmp: Path, leaked: int) -> tuple[Path, Path, Path, list[str]]:
    _train, _held, copies = _folders(tmp, leaked=leaked)
    spec = tmp / "held.yaml"
    spec.write_text(f"name: held\nsource: held\npreprocess: {{resize: [{SIZE}, {SIZE}]}}\n")
    model = tmp / "m.onnx"
    w = np.random.default_rng(0).normal(size=(3 * SIZE * SIZE, 2)).astype(np.float32) * 0.01
    model.write_bytes(linear_softmax_model(w, np.zeros(2, np.float32), input_shape=["N", 3, SIZE, SIZE]))
    policy = tmp / "p.yaml"
    policy.write_text(
        "version: 1\nname: p\nrules:\n  - {id: no-leaks, type: leakage, max_hamming: 8, max_overlap: 0}\n"
    )
    return spec, model, policy, copies


def _run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _eval(
    capsys: pytest.CaptureFixture[str], model: Path, spec: Path, policy: Path, *extra: str | Path
) -> tuple[int, str, str]:
    return _run(
        capsys,
        "eval",
        "--format",
        "json",
        "--provider",
        "cpu",
        "--model",
        model,
        "--dataset",
        spec,
        "--policy",
        policy,
        *extra,
    )


def test_a_held_out_set_with_five_percent_copies_is_caught(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, model, policy, copies = _setup(tmp_path, leaked=5)
    prints = tmp_path / "train.fp"
    code, out, err = _run(capsys, "fingerprint", tmp_path / "train", "-o", prints)
    assert code == 0, err
    assert out.startswith("100 images fingerprinted into")

    code, out, err = _eval(capsys, model, spec, policy, "--fingerprint", prints)
    v = json.loads(out)
    assert code == 1 and v["verdict"] == "FAIL", v["error"]
    rule = v["rules"][0]
    assert rule["status"] == "fail"
    assert rule["message"].startswith("5 of 100 held-out images (5.00%) nearly duplicate training images")
    found = sorted(e["sample"] for e in rule["details"]["examples"])
    assert found == sorted(copies)  # every copy, and nothing else
    assert all(e["distance"] <= 8 for e in rule["details"]["examples"])
    # each copy is matched with the training image it was made from
    for e in rule["details"]["examples"]:
        i = int(Path(e["sample"]).stem[1:])
        assert e["train"] == f"{CLASSES[(7 * i) % 2]}/t{7 * i:03d}.png"

    # a rate allows some overlap: 5 % > 4 % fails, 5 % <= 6 % passes
    for rate, expected in ((0.04, 1), (0.06, 0)):
        policy.write_text(
            f"version: 1\nname: p\nrules:\n  - {{id: no-leaks, type: leakage, max_hamming: 8, max_overlap: {rate}}}\n"
        )
        code, out, _ = _eval(capsys, model, spec, policy, "--fingerprint", prints)
        assert code == expected, json.loads(out)["rules"][0]["message"]


def test_a_clean_held_out_set_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, model, policy, _ = _setup(tmp_path, leaked=0)
    prints = tmp_path / "train.fp"
    assert _run(capsys, "fingerprint", tmp_path / "train", "-o", prints)[0] == 0
    code, out, _ = _eval(capsys, model, spec, policy, "--fingerprint", prints)
    v = json.loads(out)
    assert code == 0, v["rules"]
    assert v["rules"][0]["message"].startswith("0 of 100 held-out images (0.00%) nearly duplicate training images")

    # the held-out hashes are kept per dataset content; a damaged copy is hashed again
    [kept] = (Path(os.environ["GATE_CACHE_DIR"]) / "hashes").glob("*/*.npy")
    hashes = np.load(kept)
    assert hashes.shape == (100,) and hashes.dtype == np.uint64
    kept.write_bytes(b"damaged")
    code, out, _ = _eval(capsys, model, spec, policy, "--fingerprint", prints)
    assert code == 0 and json.loads(out)["rules"][0]["observed"] == 0.0
    assert np.array_equal(np.load(kept), hashes)


def test_leakage_needs_a_fingerprint_and_a_readable_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, model, policy, _ = _setup(tmp_path, leaked=0)
    code, out, _ = _eval(capsys, model, spec, policy)
    assert code == 2 and "needs a fingerprint file of the training images" in json.loads(out)["error"]["message"]
    bad = tmp_path / "bad.fp"
    bad.write_bytes(b"\x00" * 64)
    code, out, _ = _eval(capsys, model, spec, policy, "--fingerprint", bad)
    v = json.loads(out)
    assert code == 2 and "bad.fp" in v["error"]["message"]
    # an unreadable training image: nothing is written, exit 2 naming the file
    (tmp_path / "train" / "a" / "broken.png").write_bytes(b"not a png")
    code, _, err = _run(capsys, "fingerprint", tmp_path / "train", "-o", tmp_path / "new.fp")
    assert code == 2 and "broken.png" in err and not (tmp_path / "new.fp").exists()
