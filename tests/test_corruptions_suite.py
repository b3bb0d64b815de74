"""The corrupted view of an image set: what the engines read (batches on the local engine,
sample by sample on the Ray engine's decode stage) is the same pixels, decoded once per
image for every cell, seeded per sample, and cached per cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gate.corruptions.catalogue import corrupt
from gate.corruptions.randomness import sample_rng
from gate.corruptions.suite import Cell, CorruptedSamples, Suite, corrupted_view
from gate.datasets import Dataset, load_dataset
from gate.datasets.dataset import _ImageSamples
from gate.errors import DatasetError

SUITE = Suite((Cell("contrast", 2), Cell("gaussian_noise", 1), Cell("motion_blur", 3)), seed=5)


@pytest.fixture
def photos(tmp_path: Path) -> Dataset:
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "set" / name).mkdir(parents=True)
        for i in range(5):
            pixels = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "set" / name / f"{i}.png")
    return load_dataset(tmp_path / "set")


class CountingSamples(_ImageSamples):
    """The set's own decoder, counting the decodes."""

    def __init__(self, clean: _ImageSamples) -> None:
        self.__dict__.update(clean.__dict__)
        self.decoded: list[int] = []

    def pixels(self, i: int) -> np.ndarray:
        self.decoded.append(i)
        return super().pixels(i)


def _view_samples(view: Dataset) -> CorruptedSamples:
    source = view.pixel_source
    assert isinstance(source, CorruptedSamples)
    return source


def test_the_view_is_every_sample_under_every_cell_from_one_decode(photos: Dataset) -> None:
    view = corrupted_view(photos, SUITE, None)
    samples = _view_samples(view)
    counting = CountingSamples(photos.pixel_source)  # type: ignore[arg-type]
    samples._clean = counting
    batches = list(samples.iter_pixel_batches(4))
    pixels = np.concatenate(batches)
    assert [len(b) for b in batches] == [4, 4, 4, 4, 4, 4, 4, 2]  # 10 samples × 3 cells
    assert sorted(counting.decoded) == list(range(10))  # one decode per image
    assert view.sample_ids[:3] == [f"{photos.sample_ids[0]}#{c}" for c in SUITE.cells]
    assert list(view.labels) == [int(y) for y in photos.labels for _ in SUITE.cells]
    i, j = 7, 2
    clean = photos.pixel_source.pixels(i)  # type: ignore[union-attr]
    rng = sample_rng(photos.sample_ids[i], "motion_blur", 3, 5)
    assert np.array_equal(pixels[i * 3 + j], corrupt(clean, "motion_blur", 3, rng))


def test_sample_by_sample_reads_equal_the_batches(photos: Dataset) -> None:
    samples = _view_samples(corrupted_view(photos, SUITE, None))
    batches = np.concatenate(list(samples.iter_pixel_batches(7)))
    counting = CountingSamples(photos.pixel_source)  # type: ignore[arg-type]
    samples._clean = counting
    one_by_one = np.stack([samples.pixels(k) for k in range(len(samples))])
    assert np.array_equal(batches, one_by_one)
    assert counting.decoded == list(range(10))  # consecutive cells of an image share its decode


def test_cells_are_cached_and_read_back(photos: Dataset, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = np.concatenate(list(_view_samples(corrupted_view(photos, SUITE, cache)).iter_pixel_batches(8)))
    entries = sorted(p.name for p in cache.rglob("*.npy"))
    assert entries == sorted(f"{photos.sha256}.{c.corruption}.{c.severity}.seed5.npy" for c in SUITE.cells)
    samples = _view_samples(corrupted_view(photos, SUITE, cache))
    counting = CountingSamples(photos.pixel_source)  # type: ignore[arg-type]
    samples._clean = counting
    again = np.concatenate(list(samples.iter_pixel_batches(8)))
    assert np.array_equal(first, again) and counting.decoded == []  # all read from the cache
    # a cell not cached yet is computed (one decode per image), the others read
    wider = Suite((*SUITE.cells, Cell("pixelate", 1)), seed=5)
    samples = _view_samples(corrupted_view(photos, wider, cache))
    counting = CountingSamples(photos.pixel_source)  # type: ignore[arg-type]
    samples._clean = counting
    more = np.concatenate(list(samples.iter_pixel_batches(8))).reshape(10, 4, 40, 36, 3)
    assert np.array_equal(more[:, :3].reshape(30, 40, 36, 3), first) and sorted(counting.decoded) == list(range(10))


def test_an_abandoned_pass_leaves_no_cache_entry(photos: Dataset, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    batches = _view_samples(corrupted_view(photos, SUITE, cache)).iter_pixel_batches(4)
    next(batches)
    batches.close()
    assert not list(cache.rglob("*.npy")) and not list(cache.rglob("*.tmp"))


def test_other_seeds_give_other_pixels_and_the_same_seed_the_same(photos: Dataset) -> None:
    def pixels(seed: int) -> np.ndarray:
        suite = Suite((Cell("gaussian_noise", 1),), seed)
        return np.concatenate(list(_view_samples(corrupted_view(photos, suite, None)).iter_pixel_batches(3)))

    assert np.array_equal(pixels(1), pixels(1))
    assert not np.array_equal(pixels(1), pixels(2))


def test_a_tensor_set_has_no_corrupted_view(tmp_path: Path) -> None:
    np.savez(tmp_path / "t.npz", x=np.zeros((2, 3, 8, 8), np.float32), y=np.array([0, 1]), classes=np.array(["a", "b"]))
    with pytest.raises(DatasetError, match="robustness needs image samples"):
        corrupted_view(load_dataset(tmp_path / "t.npz"), SUITE, None)
