"""What gets hashed: every image file under a training directory (``gate fingerprint``),
and every sample of a held-out dataset, hashed on a pool of threads.

Training directories
--------------------

Any tree works (an ImageFolder ``class/xxx.jpg`` or not): files with the extensions
gate's datasets accept are hashed in sorted relative-path order, other files are
ignored, hidden files and folders are left out, and directory links are followed (a
directory reached twice is refused).

What :func:`hash_dataset` hashes
--------------------------------

* Image datasets (ImageFolder, manifests): each sample's original file, before the
  dataset's resize/crop/normalisation, checked against the SHA-256 taken when the
  dataset was loaded (a file changed since then is a :class:`DatasetError`).
* ``.npz`` datasets: each tensor, read as an image. Sample shape ``(H, W)`` is grey;
  ``(H, W, C)`` or ``(C, H, W)`` with ``C`` in 1, 3, 4 (channels last is tried first;
  3 channels are taken as RGB, a fourth as alpha). Values: ``uint8`` as they are;
  floats within [0, 1] times 255; other values within [0, 255] as they are; anything
  else (e.g. mean/std-normalised tensors) stretched per sample from its min..max to
  0..255, then rounded. The AC bits are unchanged by such affine maps, so a tensor
  that is ``a * pixels + b`` (one ``a > 0`` for all channels) hashes like the image's
  pixels up to the DC bit and resampling round-off. Other shapes (flat feature
  vectors, video, ...) are not images: a :class:`DatasetError`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from gate.datasets import images as image_io
from gate.errors import DatasetError
from gate.leakage.fileformat import Fingerprints, save_fingerprints
from gate.leakage.phash import Hashes, hash_bytes, phash_many, read_image

if TYPE_CHECKING:
    from gate.datasets.dataset import Dataset

log = logging.getLogger(__name__)

#: Files hashed per task on the worker pool.
_FILES_PER_TASK: Final = 32


def _workers(workers: int | None) -> int:
    if workers is None:
        return max(1, min(32, os.cpu_count() or 1))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    return workers


def _image_files(root: Path) -> tuple[list[str], list[Path], int]:
    """Image files under ``root`` (recursively, following directory links, hidden
    entries left out): sorted relative paths, the files, and how many other files were
    ignored."""
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "not found"
        raise DatasetError(f"training directory {root} {what}")
    found: list[tuple[str, Path]] = []
    ignored = 0
    seen: set[Path] = set()
    stack = [root]
    while stack:
        directory = stack.pop()
        real = directory.resolve()
        if real in seen:
            rel = directory.relative_to(root).as_posix()
            raise DatasetError(f"{root}: directory '{rel}' is reached twice through symbolic links")
        seen.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise DatasetError(f"cannot list {directory}: {exc.strerror or exc}") from exc
        for entry in entries:
            if entry.name.startswith("."):
                continue
            p = Path(entry.path)
            if entry.is_dir():
                stack.append(p)
            elif p.suffix.lower() in image_io.IMAGE_EXTENSIONS:
                # a broken link or unreadable file is reported when it is hashed
                found.append((p.relative_to(root).as_posix(), p))
            else:
                ignored += 1
    found.sort(key=lambda item: item[0])
    return [rel for rel, _ in found], [p for _, p in found], ignored


@dataclass(frozen=True)
class _Job:
    file: Path
    name: str
    #: The SHA-256 (hex) the file must still have, or None.
    sha256: str | None


def _hash_jobs(jobs: list[_Job], workers: int, skip_unreadable: bool) -> list[int | None]:
    """Hashes of the files in order; None for an unreadable one when skipping, else the
    first unreadable file (in order) is raised."""

    def one(job: _Job) -> int | None:
        try:
            data = read_image(job.file, job.name)
            if job.sha256 is not None and hashlib.sha256(data).hexdigest() != job.sha256:
                raise DatasetError(f"image {job.name} ({job.file}) changed after the dataset was loaded; reload it")
            return hash_bytes(data, job.name)
        except DatasetError as exc:
            if not skip_unreadable:
                raise
            log.warning("left out unreadable image: %s", exc)
            return None

    def chunk(start: int) -> list[int | None]:
        return [one(job) for job in jobs[start : start + _FILES_PER_TASK]]

    starts = range(0, len(jobs), _FILES_PER_TASK)
    if workers == 1 or len(jobs) <= _FILES_PER_TASK:
        return [h for s in starts for h in chunk(s)]
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gate-fingerprint")
    try:
        # map yields in order, so the error raised is that of the first bad file
        return [h for hashes in pool.map(chunk, starts) for h in hashes]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def fingerprint_directory(
    root: str | os.PathLike[str], *, workers: int | None = None, skip_unreadable: bool = False
) -> Fingerprints:
    """Hash every image file under ``root``, in sorted relative-path order.

    Any tree works (an ImageFolder ``class/xxx.jpg`` or not); files with the extensions
    gate's datasets accept are hashed, other files are ignored (and counted in the
    log), hidden files and folders are left out. ``workers`` threads hash in parallel
    (default: one per core). An image that cannot be read or decoded is a
    :class:`DatasetError` naming it, unless ``skip_unreadable``, which leaves it out and
    counts it in :attr:`Fingerprints.skipped`. A tree without images is a
    :class:`DatasetError`.
    """
    base = Path(root)
    names, files, ignored = _image_files(base)
    if ignored:
        log.info("fingerprint %s: ignored %d file(s) without an image extension", base, ignored)
    if not files:
        raise DatasetError(
            f"training directory {base} holds no image files "
            f"(extensions: {', '.join(sorted(image_io.IMAGE_EXTENSIONS))})"
        )
    results = _hash_jobs(
        [_Job(f, n, None) for f, n in zip(files, names, strict=True)], _workers(workers), skip_unreadable
    )
    kept = [i for i, h in enumerate(results) if h is not None]
    if not kept:
        raise DatasetError(f"training directory {base}: none of its {len(files)} image file(s) could be read")
    hashes = np.array([results[i] for i in kept], dtype=np.uint64)
    return Fingerprints(hashes=hashes, paths=tuple(names[i] for i in kept), skipped=len(files) - len(kept))


def fingerprint_command(train_dir: Path, output: Path, workers: int | None) -> Fingerprints:
    """``gate fingerprint TRAIN_DIR -o OUTPUT``: fingerprint a directory strictly (an
    unreadable image is a :class:`DatasetError`) and write the file atomically."""
    fingerprints = fingerprint_directory(train_dir, workers=workers)
    save_fingerprints(fingerprints, output)
    log.info(
        "fingerprinted %d image(s) under %s into %s (sha256 %s)",
        len(fingerprints),
        train_dir,
        output,
        fingerprints.sha256,
    )
    return fingerprints


def hash_dataset(dataset: Dataset, *, workers: int | None = None) -> Hashes:
    """The hash of every sample of a held-out dataset, in sample order.

    Image files are hashed as they are stored (before the dataset's preprocessing) and
    checked against the digest taken when the dataset was loaded; ``.npz`` tensors are
    read as images (see the module docstring). Problems are :class:`DatasetError`.
    """
    source = dataset.pixel_source
    if source is not None:
        # The files, names and load-time digests the evaluation itself reads.
        jobs = [_Job(f, n, d) for f, n, d in source.stored_files()]
        results = _hash_jobs(jobs, _workers(workers), skip_unreadable=False)
        return np.array(results, dtype=np.uint64)
    layout = _tensor_layout(dataset.sample_shape, dataset.name)
    out = np.empty(len(dataset), dtype=np.uint64)
    done = 0
    for batch in dataset.batches(256):
        out[done : done + len(batch)] = phash_many(_tensor_pixels(sample, layout) for sample in batch)
        done += len(batch)
    return out


def _tensor_layout(shape: tuple[int, ...], name: str) -> str:
    if len(shape) == 2:
        return "HW"
    if len(shape) == 3 and shape[2] in (1, 3, 4):
        return "HWC"
    if len(shape) == 3 and shape[0] in (1, 3, 4):
        return "CHW"
    raise DatasetError(
        f"dataset '{name}': samples of shape {shape} are not images ((H, W), (H, W, C) or (C, H, W) with C "
        "in 1, 3, 4), so they cannot be compared with training images for leakage"
    )


def _tensor_pixels(sample: npt.NDArray[Any], layout: str) -> npt.NDArray[np.uint8]:
    """One ``.npz`` sample as 8-bit pixels (H, W[, C])."""
    if layout == "CHW":
        sample = np.moveaxis(sample, 0, -1)
    if sample.dtype == np.uint8:
        return sample
    values = sample.astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    if sample.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        values = values * 255.0
    elif not (lo >= 0.0 and hi <= 255.0):
        values = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    pixels: npt.NDArray[np.uint8] = np.rint(values).astype(np.uint8)
    return pixels
