"""What gets hashed: every image file under a training directory (``gate fingerprint``),
and every sample of a held-out dataset, hashed on a pool of threads.

Training directories
--------------------

Any tree works (an ImageFolder ``class/xxx.jpg`` or not): files with the extensions
gate's datasets accept are hashed in sorted relative-path order, other files are
ignored, hidden files and folders are left out. The tree is listed by
:func:`gate.datasets.walk.walk_images` with the link policy of ImageFolder datasets
(``inside_root``): links, to files or folders, are followed while their target lies
inside the training directory; a link that leaves it, or a folder reached twice, is a
:class:`DatasetError`. A broken link with an image's name is an unreadable image.

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
from gate.datasets.walk import walk_images
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


def _training_images(root: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """The image files under ``root`` as (relative path, path), sorted, and the
    image-named entries that are broken links or not regular files (unreadable)."""
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "not found"
        raise DatasetError(f"training directory {root} {what}")
    # The policy ImageFolder datasets have: a link that leaves the root is refused, so a
    # fingerprint never covers files the directory does not hold.
    walk = walk_images(root, links="inside_root")
    unreadable = [rel for rel in walk.irregular if Path(rel).suffix.lower() in image_io.IMAGE_EXTENSIONS]
    ignored = len(walk.others) + len(walk.irregular) - len(unreadable)
    if ignored:
        log.info("fingerprint %s: ignored %d file(s) without an image extension", root, ignored)
    if walk.hidden:
        log.info("fingerprint %s: left out %d hidden file(s) and folder(s)", root, len(walk.hidden))
    return walk.images, unreadable


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
    log), hidden files and folders are left out, and a link whose target lies outside
    ``root`` is a :class:`DatasetError`. ``workers`` threads hash in parallel (default:
    one per core). An image that cannot be read or decoded (a broken link included) is
    a :class:`DatasetError` naming it, unless ``skip_unreadable``, which leaves it out
    and counts it in :attr:`Fingerprints.skipped`. A tree without images is a
    :class:`DatasetError`.
    """
    base = Path(root)
    images, unreadable = _training_images(base)
    if not images and not unreadable:
        raise DatasetError(
            f"training directory {base} holds no image files "
            f"(extensions: {', '.join(sorted(image_io.IMAGE_EXTENSIONS))})"
        )
    for rel in unreadable:
        problem = f"cannot read image {rel} ({base / rel}): a broken link or not a regular file"
        if not skip_unreadable:
            raise DatasetError(problem)
        log.warning("left out unreadable image: %s", problem)
    results = _hash_jobs([_Job(p, rel, None) for rel, p in images], _workers(workers), skip_unreadable)
    kept = [i for i, h in enumerate(results) if h is not None]
    total = len(images) + len(unreadable)
    if not kept:
        raise DatasetError(f"training directory {base}: none of its {total} image file(s) could be read")
    hashes = np.array([results[i] for i in kept], dtype=np.uint64)
    return Fingerprints(hashes=hashes, paths=tuple(images[i][0] for i in kept), skipped=total - len(kept))


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
