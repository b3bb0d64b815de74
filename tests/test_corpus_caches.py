"""Attacks on the caches and `gate cache` (see the section "Attacks: caches" of
docs/bad-input-corpus.md, which lists every case here with its outcome:
`doc_expectations`). Real evaluations, real files."""

from __future__ import annotations

from pathlib import Path

import pytest

import gate.datasets.cache
from gate.cache import Caches
from gate.cache_admin import current_versions
from gate.cache_version import TAG
from gate.cli import main
from gate.evaluation import evaluate
from tests.test_cache_versions import PLAIN, _images, _model


def doc_expectations() -> dict[str, tuple[str, ...]]:
    """Each case of this module: the fragments its row in the doc must hold."""
    return {
        "cache-other-decoder": ("`built`", "never served"),
        "cache-version-dir-is-a-file": ("0 PASS", "`miss`"),
        "cache-prune-link-out": ("0", "the link is removed", "its target is kept"),
        "cache-prune-cache-dir-link": ("0", "skipped", "its target is kept"),
        "cache-prune-foreign-dir": ("0", "kept", "never removed"),
        "cache-prune-bad-age": ("2", "should be a number followed by s, m, h, d or w"),
        "cache-missing-dir": ("2", "no cache directory at"),
    }


def test_cache_other_decoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _images(tmp_path)
    with monkeypatch.context() as m:
        m.setattr(gate.datasets.cache, "TENSORS_FORMAT", "v1")  # pixels of an older decoder
        evaluate(_model(), spec, PLAIN, provider="cpu", caches=Caches.at(tmp_path / "c"))
    again = evaluate(_model(), spec, PLAIN, provider="cpu", caches=Caches.at(tmp_path / "c"))
    assert again.runtime["cache"]["tensors"] == "built" and again.runtime["cache"]["results"] == "miss"


def test_cache_version_dir_is_a_file(tmp_path: Path) -> None:
    spec = _images(tmp_path)
    for cache, version in current_versions().items():
        (tmp_path / "c" / cache).mkdir(parents=True, exist_ok=True)
        (tmp_path / "c" / cache / version.tag).write_text("not a directory")
    for _ in range(2):  # nothing can be stored, so nothing is served either
        v = evaluate(_model(), spec, PLAIN, provider="cpu", caches=Caches.at(tmp_path / "c"))
        assert v.exit_code == 0 and v.runtime["cache"]["results"] == "miss", v.error


def test_cache_prune_link_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "precious"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    stale = tmp_path / "c" / "results" / "v0-000000000000"
    stale.mkdir(parents=True)
    (stale / "entry.npz").symlink_to(target / "keep.txt")
    (tmp_path / "c" / "tensors").mkdir()
    (tmp_path / "c" / "tensors" / "dir-link").symlink_to(target, target_is_directory=True)
    assert main(["cache", "prune", "--cache-dir", str(tmp_path / "c")]) == 0
    assert not stale.exists() and not (tmp_path / "c" / "tensors" / "dir-link").exists()
    assert (target / "keep.txt").read_text() == "keep"


def test_cache_prune_cache_dir_link(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "precious"
    (target / "sub").mkdir(parents=True)
    (target / "keep.txt").write_text("keep")
    (target / "sub" / "keep.txt").write_text("keep")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results").symlink_to(target, target_is_directory=True)
    assert main(["cache", "prune", "--cache-dir", str(tmp_path / "c"), "--older-than", "0s"]) == 0
    assert "skipped results: its directory is a symbolic link" in capsys.readouterr().out
    assert (target / "keep.txt").read_text() == "keep" and (target / "sub" / "keep.txt").read_text() == "keep"
    assert (tmp_path / "c" / "results").is_symlink()


def test_cache_prune_foreign_dir(tmp_path: Path) -> None:
    project = tmp_path / "project"  # a wrong --cache-dir: a folder with a `results` folder of its own
    (project / "results" / "run1").mkdir(parents=True)
    (project / "results" / "run1" / "metrics.csv").write_text("acc\n0.9\n")
    assert main(["cache", "prune", "--cache-dir", str(project)]) == 0
    assert (project / "results" / "run1" / "metrics.csv").read_text() == "acc\n0.9\n"
    assert all(TAG.match(version.tag) for version in current_versions().values())  # what prune does remove


def test_cache_prune_bad_age(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c").mkdir()
    assert main(["cache", "prune", "--cache-dir", str(tmp_path / "c"), "--older-than", "30"]) == 2
    assert "should be a number followed by s, m, h, d or w" in capsys.readouterr().err


def test_cache_missing_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "info", "--cache-dir", str(tmp_path / "nowhere")]) == 2
    assert "no cache directory at" in capsys.readouterr().err
