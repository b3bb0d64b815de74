"""Caches never outlive the code that filled them: every on-disk cache is read only at the
version of the code (and of gate, numpy and Pillow) that reads it, the verdict names the
versions, and `gate cache info|prune` show and collect the others. Real evaluations, real
files, a real server."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import gate.cache_version
import gate.datasets.cache
from gate.cache import Caches
from gate.cache_admin import current_versions, inspect, parse_age, prune
from gate.cli import main
from gate.errors import RequestError
from gate.evaluation import evaluate
from gate.policy import parse_policy
from tests.conftest import Served
from tests.models import linear_softmax_model, lookup_model

POLICY = parse_policy(
    "version: 1\nname: p\nrules:\n"
    "  - {id: acc, type: metric, metric: accuracy, min: 0.01}\n"
    "  - {id: leaks, type: leakage, max_hamming: 4, max_overlap: 0.99, severity: warn}\n"
)
PLAIN = parse_policy("version: 1\nname: q\nrules:\n  - {id: acc, type: metric, metric: accuracy, min: 0.01}\n")


def _images(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / "imgs" / c).mkdir(parents=True, exist_ok=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(root / "imgs" / c / f"{i}.png")
    spec = root / "set.yaml"
    spec.write_text("name: s\nsource: imgs\npreprocess: {resize: 8, crop: 8}\n")
    return spec


def _model() -> bytes:
    rng = np.random.default_rng(1)
    return linear_softmax_model(
        rng.normal(size=(192, 2)).astype(np.float32), np.zeros(2, np.float32), input_shape=["N", 3, 8, 8]
    )


def _fingerprint(tmp_path: Path) -> Path:
    train = tmp_path / "train"
    train.mkdir()
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(train / "t.png")
    out = tmp_path / "train.fp"
    assert main(["fingerprint", str(train), "-o", str(out)]) == 0
    return out


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.name != "VERSION.json"}


def _gate(tmp_path: Path, spec: Path, prints: Path) -> dict[str, Any]:
    """One evaluation with fresh caches over tmp_path/cache, as a new process would make them."""
    v = evaluate(_model(), spec, POLICY, provider="cpu", caches=Caches.at(tmp_path / "cache"), fingerprint=prints)
    assert v.decision.value == "PASS", v.error
    return v.to_dict()


def test_another_cache_version_misses_everywhere_and_the_verdict_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, prints = _images(tmp_path), _fingerprint(tmp_path)
    capsys.readouterr()
    cold = _gate(tmp_path, spec, prints)
    filled = _files(tmp_path / "cache")
    assert {p.parts[0] for p in filled} == {"tensors", "results", "hashes", "digests"}
    assert cold["runtime"]["cache"]["results"] == "miss" and cold["runtime"]["cache"]["tensors"] == "built"
    # every cache this evaluation used (the corrupted-pixel cache serves robustness rules only)
    assert cold["runtime"]["cache"]["versions"] == {n: v.tag for n, v in current_versions().items() if n != "corrupted"}

    # the same code again: every cache is served, nothing new is written
    warm = _gate(tmp_path, spec, prints)
    assert warm["runtime"]["cache"]["results"] == "hit"
    assert warm["runtime"]["cache"]["versions"] == cold["runtime"]["cache"]["versions"]
    assert _files(tmp_path / "cache") == filled

    # other code: every cache misses and fills a new version beside the old one
    monkeypatch.setenv(gate.cache_version.EPOCH_VARIABLE, "another")
    moved = _gate(tmp_path, spec, prints)
    assert moved["runtime"]["cache"]["results"] == "miss" and moved["runtime"]["cache"]["tensors"] == "built"
    new_versions = moved["runtime"]["cache"]["versions"]
    assert all(new_versions[n] != cold["runtime"]["cache"]["versions"][n] for n in new_versions)
    added = _files(tmp_path / "cache") - filled
    assert {p.parts[0] for p in added} == {"tensors", "results", "hashes", "digests"}
    assert all(p.parts[1] == new_versions[p.parts[0]] for p in added)
    assert moved["metrics"] == cold["metrics"] and moved["rules"] == cold["rules"]

    # and back: the first version is still served
    monkeypatch.delenv(gate.cache_version.EPOCH_VARIABLE)
    assert _gate(tmp_path, spec, prints)["runtime"]["cache"]["results"] == "hit"


@pytest.mark.parametrize("wrong", ["code", "pillow"])
def test_a_tensor_cache_filled_by_another_decoder_is_never_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wrong: str
) -> None:
    spec = _images(tmp_path)
    with monkeypatch.context() as m:
        if wrong == "code":
            m.setattr(gate.datasets.cache, "TENSORS_FORMAT", "v0-wrong-decoder")
        else:
            m.setattr(gate.cache_version, "pillow_version", lambda: "0.0-not-this-pillow")
        caches = Caches.at(tmp_path / "cache")
        stale = evaluate(_model(), spec, PLAIN, provider="cpu", caches=caches)
        assert stale.runtime["cache"]["tensors"] == "built"
        [entry] = (tmp_path / "cache" / "tensors").glob("*/*.npy")
    # the other decoder's pixels are all black: served, they would change the metrics
    data = entry.read_bytes()
    header = len(data) - 16 * 8 * 8 * 3
    entry.write_bytes(data[:header] + bytes(len(data) - header))
    fresh = evaluate(_model(), spec, PLAIN, provider="cpu", caches=Caches.at(tmp_path / "cache"))
    assert fresh.runtime["cache"]["tensors"] == "built"
    uncached = evaluate(_model(), spec, PLAIN, provider="cpu")
    assert fresh.metrics == uncached.metrics
    assert len(list((tmp_path / "cache" / "tensors").glob("*/*.npy"))) == 2


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _populate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """A cache directory with a stale and a current version of every cache, files from
    before versioning, a link out of it and temporary files young and old."""
    spec, prints = _images(tmp_path), _fingerprint(tmp_path)
    monkeypatch.setenv(gate.cache_version.EPOCH_VARIABLE, "old")
    _gate(tmp_path, spec, prints)
    monkeypatch.delenv(gate.cache_version.EPOCH_VARIABLE)
    _gate(tmp_path, spec, prints)
    root = tmp_path / "cache"
    (root / "results" / "0123.npz").write_bytes(b"x" * 100)  # written before caches had versions
    (root / "tensors" / "abcd.v2.npy").write_bytes(b"y" * 50)
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    [stale_results] = [d for d in (root / "results").iterdir() if d.is_dir() and d.name != _tag("results")]
    (stale_results / "link.npz").symlink_to(outside)
    current = root / "results" / _tag("results")
    (current / ".young.npz.abc.tmp").write_bytes(b"t")
    old_temp = current / ".old.npz.abc.tmp"
    old_temp.write_bytes(b"t")
    os.utime(old_temp, (time.time() - 7200, time.time() - 7200))
    capsys.readouterr()
    return root


def _tag(cache: str) -> str:
    return current_versions()[cache].tag


def test_cache_info_and_prune_on_a_populated_cache_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _populate(tmp_path, monkeypatch, capsys)
    code, out, _ = _cli(capsys, "cache", "info", "--cache-dir", str(root), "--format", "json")
    assert code == 0
    rows = json.loads(out)["versions"]
    states = {(r["cache"], r["state"]) for r in rows}
    assert states == {(c, s) for c in ("tensors", "results", "hashes", "digests") for s in ("current", "stale")}
    current = {r["cache"]: r for r in rows if r["state"] == "current"}
    assert all(current[c]["version"] == _tag(c) and current[c]["entries"] >= 1 for c in current)
    assert current["tensors"]["components"]["pillow"] == gate.cache_version.pillow_version()
    unversioned = [r for r in rows if r["version"] is None]
    assert sorted((r["cache"], r["entries"], r["bytes"]) for r in unversioned) == [
        ("results", 1, 100),
        ("tensors", 1, 50),
    ]
    code, text, _ = _cli(capsys, "cache", "info", "--cache-dir", str(root))
    assert code == 0 and "(unversioned)" in text and _tag("results") in text and "stale" in text

    before = _files(root)
    code, out, _ = _cli(capsys, "cache", "prune", "--cache-dir", str(root), "--dry-run")
    assert code == 0 and out.startswith("would remove") and _files(root) == before

    code, out, _ = _cli(capsys, "cache", "prune", "--cache-dir", str(root), "--format", "json")
    report = json.loads(out)
    assert code == 0 and len(report["removed_versions"]) == 4
    assert {u.current for u in inspect(root)} == {True}
    assert (tmp_path / "precious.txt").read_text() == "keep me"  # the link went, not what it pointed to
    current_results = root / "results" / _tag("results")
    assert (current_results / ".young.npz.abc.tmp").exists() and not (current_results / ".old.npz.abc.tmp").exists()
    # what is left is still served
    assert _gate(tmp_path, tmp_path / "set.yaml", tmp_path / "train.fp")["runtime"]["cache"]["results"] == "hit"

    # entries not used for 30 days go with --older-than; the others stay
    [tensor] = (root / "tensors" / _tag("tensors")).glob("*.npy")
    month_ago = time.time() - 31 * 86400
    os.utime(tensor, (month_ago, month_ago))
    code, out, _ = _cli(capsys, "cache", "prune", "--cache-dir", str(root), "--older-than", "30d")
    assert code == 0 and out.startswith("removed 1 entries")
    assert not tensor.exists() and list((root / "results" / _tag("results")).glob("*.npz"))


def test_prune_refuses_what_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "cache", "prune", "--cache-dir", str(tmp_path / "nowhere"))
    assert code == 2 and "no cache directory at" in err
    (tmp_path / "c").mkdir()
    for age in ("30", "yes", "-1d", "1y", ""):
        code, _, err = _cli(capsys, "cache", "prune", "--cache-dir", str(tmp_path / "c"), f"--older-than={age}")
        assert code == 2 and "should be a number followed by s, m, h, d or w" in err, age
    with pytest.raises(RequestError):
        parse_age("nan")
    assert parse_age("12h") == 43200 and parse_age("2w") == 14 * 86400 and parse_age("1.5d") == 1.5 * 86400
    assert prune(tmp_path / "c").removed_entries == 0  # an empty directory is a valid, empty cache


def test_cache_info_and_prune_on_a_servers_data_dir(
    serve: Callable[..., Served], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = serve()
    model = tmp_path / "m.onnx"
    model.write_bytes(lookup_model(3))
    argv = ["check", "--server", s.address, "--dataset", "pets", "--model", str(model), "--policy", "default"]
    assert _cli(capsys, *argv, "--format", "json")[0] == 0
    data_dir = s.root / "data"
    code, out, _ = _cli(capsys, "cache", "info", "--data-dir", str(data_dir), "--format", "json")
    assert code == 0 and json.loads(out)["cache_dir"] == str(data_dir / "cache")
    [results] = [r for r in json.loads(out)["versions"] if r["cache"] == "results"]
    assert (results["version"], results["state"], results["entries"]) == (_tag("results"), "current", 1)

    every = sum(r["entries"] for r in json.loads(out)["versions"])  # the results entry and the sets' digests
    code, out, _ = _cli(capsys, "cache", "prune", "--data-dir", str(data_dir), "--older-than", "0s")
    assert code == 0 and out.startswith(f"removed {every} entries")
    code, out, _ = _cli(capsys, *argv, "--format", "json")
    again = json.loads(out)
    assert code == 0 and again["runtime"]["cache"]["results"] == "miss"
    assert again["runtime"]["cache"]["versions"]["results"] == _tag("results")


def test_prune_keeps_a_stale_version_while_it_has_a_young_temporary_file(tmp_path: Path) -> None:
    """An older gate still running on the same directory may be about to rename its write:
    the stale version goes once its temporary files are older than the grace period."""
    stale = tmp_path / "c" / "results" / "v0-000000000000"
    stale.mkdir(parents=True)
    (stale / "done.npz").write_bytes(b"x" * 10)
    young = stale / ".next.npz.abc.tmp"
    young.write_bytes(b"t")
    report = prune(tmp_path / "c")
    assert young.exists() and not (stale / "done.npz").exists()
    assert report.removed_entries == 1 and report.removed_versions == []
    later = time.time() + 2 * 3600
    report = prune(tmp_path / "c", now=later)
    assert not stale.exists() and report.removed_versions == ["results/v0-000000000000"]
