"""An .npz set's SHA-256 reused by file identity: the same hash as computed afresh, not
computed again while the file is unchanged, computed again when it changes; `gate eval
--no-cache` keeps only the digests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from gate.cli import main
from gate.datasets import load_dataset
from tests.conftest import ROOT
from tests.models import linear_softmax_model


def _npz(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.random((40, 1, 4, 4), dtype=np.float32), y=rng.integers(0, 3, 40), classes=["a", "b", "c"])
    return path


def _entry(digests: Path) -> Path:
    (entry,) = digests.rglob("npz-*.json")
    return entry


def test_an_unchanged_npz_is_not_hashed_again(tmp_path: Path) -> None:
    data, digests = _npz(tmp_path / "set.npz"), tmp_path / "digests"
    fresh = load_dataset(data).sha256
    assert load_dataset(data, digest_cache=digests).sha256 == fresh
    entry = _entry(digests)
    # what the entry says is what a load with an unchanged file answers: it is not hashed again
    remembered = json.loads(entry.read_text())
    entry.write_text(json.dumps({**remembered, "sha256": "0" * 64}))
    assert load_dataset(data, digest_cache=digests).sha256 == "0" * 64
    # a new modification time is another identity: hashed again, and remembered anew
    stat = data.stat()
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert load_dataset(data, digest_cache=digests).sha256 == fresh
    assert json.loads(entry.read_text())["sha256"] == fresh


def test_changed_content_or_classes_give_their_own_hash(tmp_path: Path) -> None:
    data, digests = _npz(tmp_path / "set.npz"), tmp_path / "digests"
    first = load_dataset(data, digest_cache=digests).sha256
    _npz(data, seed=1)  # rewritten in place: same path and size, new bytes
    second = load_dataset(data, digest_cache=digests).sha256
    assert second != first and second == load_dataset(data).sha256
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: s\nsource: {data}\nclasses: [c, b, a]\n")
    reordered = load_dataset(spec, digest_cache=digests)
    assert reordered.sha256 == load_dataset(spec).sha256 != second
    assert len(list(digests.rglob("npz-*.json"))) == 2  # one per (file, classes the spec gives)


@pytest.mark.parametrize("damage", ["{not json", '["a list"]', '{"scheme": "other/v0"}'])
def test_a_damaged_entry_is_hashed_again(tmp_path: Path, damage: str) -> None:
    data, digests = _npz(tmp_path / "set.npz"), tmp_path / "digests"
    fresh = load_dataset(data, digest_cache=digests).sha256
    _entry(digests).write_text(damage)
    assert load_dataset(data, digest_cache=digests).sha256 == fresh
    assert json.loads(_entry(digests).read_text())["sha256"] == fresh


def test_no_cache_keeps_only_the_digests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _npz(tmp_path / "set.npz")
    model = tmp_path / "m.onnx"
    weights = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    model.write_bytes(linear_softmax_model(weights, np.zeros(3, np.float32), input_shape=["N", 1, 4, 4]))
    cache = tmp_path / "cache"
    argv = ["eval", "--model", str(model), "--dataset", str(data), "--policy", str(ROOT / "policies" / "default.yaml")]
    runs = []
    for _ in range(2):
        main([*argv, "--format", "json", "--no-cache", "--cache-dir", str(cache), "--provider", "cpu"])
        runs.append(json.loads(capsys.readouterr().out))
    assert [p.name for p in cache.iterdir()] == ["digests"]
    assert runs[0]["dataset"] == runs[1]["dataset"] and runs[0]["dataset"]["sha256"] == load_dataset(data).sha256
    assert runs[0]["metrics"] == runs[1]["metrics"]
    # a session for the evaluation alone: made afresh each time, never reused from another run
    assert [r["runtime"]["cache"].get("session") for r in runs] == ["miss", "miss"]
