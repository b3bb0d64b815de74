"""A dataset's corrupted view: every sample under every (corruption, severity) cell of a
suite, as one more image set that any engine runs like the clean one.

The view holds ``n × cells`` samples, image-major: sample ``i`` under cell ``j`` is
sample ``i * cells + j``, its id ``"<id>#<corruption>@<severity>"``, its label the clean
sample's. So each clean image is decoded once for all its cells, on the local engine
(:meth:`CorruptedSamples.iter_pixel_batches`, on a thread pool a few batches ahead of the
model, which the engine's prefetch thread overlaps with inference) and on the Ray engine,
whose decode stage calls :meth:`CorruptedSamples.pixels` for consecutive samples of a
shard, so corruption is part of its sharded map.

The corrupted 8-bit pixels of each cell are cached per (dataset, which covers the
preprocessing; corruption; severity; seed) by :class:`CorruptedPixelCache`, so a second
model (a champion, the next candidate) is shown the stored pixels without recomputing
them; an entry is renamed into place only once it is complete.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from gate.atomic import atomic_file
from gate.cache_version import cache_version
from gate.corruptions.catalogue import CORRUPTIONS_VERSION, corrupt
from gate.corruptions.randomness import sample_rng
from gate.datasets import Dataset
from gate.datasets.cache import TENSORS_FORMAT
from gate.datasets.dataset import _ImageSamples
from gate.errors import DatasetError

log = logging.getLogger(__name__)

_WORKERS = max(1, min(32, os.cpu_count() or 1))
#: The message (and the test of it) for a set of tensors rather than images.
NOT_IMAGES = "robustness needs image samples"


@dataclass(frozen=True, order=True)
class Cell:
    """One corruption at one severity."""

    corruption: str
    severity: int

    def __str__(self) -> str:
        return f"{self.corruption}@{self.severity}"


@dataclass(frozen=True)
class Suite:
    """The cells a dataset is corrupted under, and the seed of every draw."""

    cells: tuple[Cell, ...]
    seed: int

    def key(self) -> str:
        return ",".join(str(c) for c in self.cells) + f";seed={self.seed};v{CORRUPTIONS_VERSION}"


class CorruptedPixelCache:
    """Corrupted 8-bit pixels (N, H, W, C) of one cell of one dataset, one ``.npy`` each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # the corrupted pixels depend on the decoded ones and on numpy's and Pillow's code
        self.version = cache_version("corrupted", CORRUPTIONS_VERSION, decoder=TENSORS_FORMAT)

    def path_for(self, dataset_sha256: str, cell: Cell, seed: int) -> Path:
        name = f"{dataset_sha256}.{cell.corruption}.{cell.severity}.seed{seed}.npy"
        return self.version.directory(self.root) / name

    def read(self, path: Path, shape: tuple[int, ...]) -> npt.NDArray[np.uint8] | None:
        """The entry at ``path`` when it is complete and of ``shape`` (memory-mapped), else None."""
        try:
            stored = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable corrupted-pixel cache entry %s: %s", path, e)
            return None
        if stored.shape != shape or stored.dtype != np.uint8:
            return None
        out: npt.NDArray[np.uint8] = stored
        return out


class CorruptedSamples(_ImageSamples):
    """The corrupted samples of an image set (see the module docstring)."""

    def __init__(self, clean: _ImageSamples, sample_ids: Sequence[str], suite: Suite, cache: Any) -> None:
        self._clean = clean
        self._ids = list(sample_ids)
        self._suite = suite
        self._cache: tuple[CorruptedPixelCache, str] | None = cache  # the cache and the clean set's hash
        self.sample_shape = clean.sample_shape
        self._preprocess = clean._preprocess
        self._last: tuple[int, npt.NDArray[np.uint8]] | None = None  # the last clean image decoded

    def __len__(self) -> int:
        return len(self._clean) * len(self._suite.cells)

    def stored_files(self) -> list[tuple[Path, str, str]]:
        raise DatasetError("a corrupted view of a dataset has no files of its own")

    def corrupted(self, i: int, clean: npt.NDArray[np.uint8], cell: Cell) -> npt.NDArray[np.uint8]:
        """Clean sample ``i``'s pixels under ``cell``, from its own generator."""
        rng = sample_rng(self._ids[i], cell.corruption, cell.severity, self._suite.seed)
        return corrupt(clean, cell.corruption, cell.severity, rng)

    def pixels(self, k: int) -> npt.NDArray[np.uint8]:
        """Sample ``k`` of the view; the clean image is decoded once for its run of cells."""
        i, j = divmod(k, len(self._suite.cells))
        last = self._last
        if last is None or last[0] != i:
            last = (i, self._clean.pixels(i))
            self._last = last  # a plain assignment: a race only costs a second decode
        return self.corrupted(i, last[1], self._suite.cells[j])

    def _image_cells(self, i: int, stored: list[npt.NDArray[np.uint8] | None]) -> npt.NDArray[np.uint8]:
        """Every cell of clean sample ``i``, (cells, H, W, C): stored ones read, the rest
        computed from one decode."""
        cells = self._suite.cells
        out = np.empty((len(cells), *self.pixel_shape), dtype=np.uint8)
        clean = None
        for j, cell in enumerate(cells):
            entry = stored[j]
            if entry is not None:
                out[j] = entry[i]
                continue
            if clean is None:
                clean = self._clean.pixels(i)
            out[j] = self.corrupted(i, clean, cell)
        return out

    def iter_pixel_batches(self, batch_size: int) -> Iterator[npt.NDArray[np.uint8]]:
        """Batches of the view in order, images corrupted on a pool a few images ahead."""
        with contextlib.ExitStack() as stack:
            stored, writers = self._open_cache(stack)
            images = self._images_ahead(stored)
            pending = np.empty((0, *self.pixel_shape), dtype=np.uint8)
            for block in images:
                for j, writer in writers.items():
                    writer.write(block[j].tobytes())
                pending = np.concatenate([pending, block]) if len(pending) else block
                while len(pending) >= batch_size:
                    yield pending[:batch_size]
                    pending = pending[batch_size:]
            if len(pending):
                yield pending

    def _images_ahead(self, stored: list[npt.NDArray[np.uint8] | None]) -> Iterator[npt.NDArray[np.uint8]]:
        n = len(self._clean)
        pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="gate-corrupt")
        try:
            indices = iter(range(n))
            ahead: collections.deque[Future[npt.NDArray[np.uint8]]] = collections.deque(
                pool.submit(self._image_cells, i, stored) for i in itertools.islice(indices, 2 * _WORKERS)
            )
            while ahead:
                current = ahead.popleft()
                nxt = next(indices, None)
                if nxt is not None:
                    ahead.append(pool.submit(self._image_cells, nxt, stored))
                yield current.result()  # in sample order: the first bad sample is the one reported
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _open_cache(
        self, stack: contextlib.ExitStack
    ) -> tuple[list[npt.NDArray[np.uint8] | None], dict[int, BinaryIO]]:
        """The stored cells (None where missing) and, for each missing one, an entry being written."""
        cells = self._suite.cells
        if self._cache is None:
            return [None] * len(cells), {}
        cache, dataset_sha = self._cache
        cache.version.mark(cache.root)
        shape = (len(self._clean), *self.pixel_shape)
        stored: list[npt.NDArray[np.uint8] | None] = []
        writers: dict[int, BinaryIO] = {}
        for j, cell in enumerate(cells):
            path = cache.path_for(dataset_sha, cell, self._suite.seed)
            stored.append(cache.read(path, shape))
            if stored[-1] is None:
                writer = _cache_writer(stack, path, shape)
                if writer is not None:
                    writers[j] = writer
        return stored, writers


def _cache_writer(stack: contextlib.ExitStack, path: Path, shape: tuple[int, ...]) -> BinaryIO | None:
    """A new cache entry, renamed into place when the whole view has been read; None when
    the cache cannot be written (which only costs time)."""
    try:
        f = stack.enter_context(atomic_file(path, fsync=False))
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": shape})
    except OSError as e:
        log.warning("corrupted-pixel cache unavailable at %s: %s", path.parent, e)
        return None
    return f


def corrupted_view(ds: Dataset, suite: Suite, cache_root: Path | None) -> Dataset:
    """The dataset of ``ds``'s samples under every cell of ``suite`` (see the module docstring)."""
    clean = ds.pixel_source
    if clean is None:
        raise DatasetError(f"{NOT_IMAGES}: dataset '{ds.name}' holds tensors ({ds.source_path})")
    cache = (CorruptedPixelCache(cache_root), ds.sha256) if cache_root is not None else None
    n_cells = len(suite.cells)
    ids = [f"{sid}#{cell}" for sid in ds.sample_ids for cell in suite.cells]
    sha = hashlib.sha256(f"gate.corrupted/v1\0{ds.sha256}\0{suite.key()}".encode()).hexdigest()
    return Dataset(
        spec=ds.spec,
        source_path=ds.source_path,
        classes=list(ds.classes),
        labels=np.repeat(np.asarray(ds.labels), n_cells),
        sample_ids=ids,
        metadata=None,
        sha256=sha,
        samples=CorruptedSamples(clean, ds.sample_ids, suite, cache),
    )
