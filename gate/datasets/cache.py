"""The preprocessed tensor cache: each image dataset's pixels after decode, resize and
crop, stored once as 8-bit (N, H, W, C) in an ``.npy`` file named by the dataset's
SHA-256, and normalised to float32 batch by batch when read. Entries live in the
directory of the cache's version (:mod:`gate.cache_version`), so pixels decoded by
other code (another gate, numpy or Pillow version, or another :data:`TENSORS_FORMAT`)
are never served.

The dataset SHA-256 covers every file's bytes, the labels, the class list and the
preprocessing, so a changed image or spec is a different key: nothing stale is ever
read. An entry is written to a temporary file while the first evaluation decodes, and
renamed into place only when every sample is in it (:mod:`gate.atomic`); a failed or
abandoned build leaves nothing behind. Reads use plain positioned reads rather than a memory map, so a warm
evaluation of a large set keeps only a batch in memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from gate.atomic import atomic_file
from gate.cache_version import cache_version
from gate.datasets.dataset import Dataset

log = logging.getLogger(__name__)

#: The tensor cache's code version: bump when the stored layout or the decoded pixels
#: change (decoding, colour or bit-depth conventions, EXIF, resize, crop).
TENSORS_FORMAT = "v2"


@dataclass
class TensorCacheUse:
    """One evaluation's use of the cache: ``status`` is hit, built, off or failed."""

    status: str = "off"
    path: Path | None = None
    details: dict[str, Any] = field(default_factory=dict)


class TensorCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.version = cache_version("tensors", TENSORS_FORMAT)

    def path_for(self, ds: Dataset) -> Path:
        return self.version.directory(self.root) / f"{ds.sha256}.npy"

    def batches(
        self, ds: Dataset, batch_size: int, use: TensorCacheUse, *, pixels: bool = False
    ) -> Iterator[npt.NDArray[Any]]:
        """Model-input batches of ``ds``: from the cache when present, else decoded
        (and cached on the way). Datasets that are already tensors bypass the cache.
        ``pixels``: the 8-bit (B, H, W, C) pixels instead, for a model that normalises
        them itself (:mod:`gate.preprocess_graph`); an image set only."""
        source = ds.pixel_source
        if source is None:
            use.status = "off"
            yield from ds.batches(batch_size)
            return
        path = self.path_for(ds)
        use.path = path
        shape = (len(ds), *source.pixel_shape)
        finish = _as_pixels if pixels else source.normalise
        offset = _valid_entry(path, shape)
        if offset is not None:
            use.status = "hit"
            touch(path)
            yield from _read(path, offset, shape, batch_size, finish)
            return
        use.status = "built"
        yield from self._build(ds, path, shape, batch_size, use, finish)

    def _build(
        self,
        ds: Dataset,
        path: Path,
        shape: tuple[int, ...],
        batch_size: int,
        use: TensorCacheUse,
        finish: Callable[[npt.NDArray[np.uint8]], npt.NDArray[Any]],
    ) -> Iterator[npt.NDArray[Any]]:
        source = ds.pixel_source
        assert source is not None
        phase = "open"  # then "stream" while batches go out, then "commit"
        try:
            with atomic_file(path, fsync=True) as f:
                np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": shape})
                phase = "stream"
                writable = True
                for pixels in source.iter_pixel_batches(batch_size):
                    if writable:
                        writable = _append(f, pixels)
                    yield finish(pixels)
                phase = "commit"
                if not writable:
                    raise _Incomplete
            self.version.mark(self.root)
        except _Incomplete:
            use.status = "failed"
        except OSError as e:
            if phase == "stream":
                raise  # the dataset's own read failed, not the cache
            # a read-only or full disk must not stop the evaluation
            log.warning("tensor cache unavailable at %s: %s", self.root, e)
            use.status = "failed"
            if phase == "open":
                yield from map(finish, source.iter_pixel_batches(batch_size))


def _as_pixels(pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return pixels


def touch(path: Path) -> None:
    """Mark an entry as used now: ``gate cache prune --older-than`` drops entries by the
    time they were last used, which is their modification time."""
    with contextlib.suppress(OSError):  # a read-only cache still serves
        os.utime(path)


class _Incomplete(Exception):
    """The entry could not be written in full: it is dropped, never renamed into place."""


def _append(f: BinaryIO, pixels: npt.NDArray[Any]) -> bool:
    """Write a batch of pixels to the entry being built; False when the disk refused it."""
    try:
        f.write(pixels.tobytes())
    except OSError as e:
        log.warning("tensor cache write failed (%s); continuing without it", e)
        return False
    return True


def _valid_entry(path: Path, shape: tuple[int, ...]) -> int | None:
    """The data offset of a complete cache file of ``shape``, or None."""
    try:
        with path.open("rb") as f:
            if np.lib.format.read_magic(f) != (1, 0):
                return None
            header = np.lib.format.read_array_header_1_0(f)
            offset = f.tell()
        size = path.stat().st_size
    except (OSError, ValueError):
        return None
    stored_shape, fortran, dtype = header
    if tuple(stored_shape) != shape or fortran or dtype != np.uint8:
        return None
    if size != offset + int(np.prod(shape)):
        return None
    return offset


def _read(
    path: Path, offset: int, shape: tuple[int, ...], batch_size: int, normalise: Any
) -> Iterator[npt.NDArray[Any]]:
    n, per_sample = shape[0], int(np.prod(shape[1:]))
    with path.open("rb", buffering=0) as f:
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            buf = np.empty((count, *shape[1:]), dtype=np.uint8)
            f.seek(offset + start * per_sample)
            if f.readinto(buf.data.cast("B")) != buf.nbytes:
                raise OSError(f"tensor cache file {path} is shorter than its header says")
            yield normalise(buf)
