"""Perceptual fingerprints of training images, and the search for held-out near-duplicates.

A held-out image that is a resized or re-encoded copy of a training image measures
memory, not generalisation. This module gives every image a 64-bit perceptual hash,
stores a training set's hashes in a fingerprint file, and finds the held-out images
whose hash lies within a Hamming radius of some training image's hash.

Public API::

    phash(pixels) -> int                                   one image's 64-bit hash
    phash_many(images) -> NDArray[uint64]                  several at once
    hash_file(path, name=None) -> int                      an image file, decoded as gate decodes it
    fingerprint_directory(root, *, workers=None, skip_unreadable=False) -> Fingerprints
    fingerprint_command(train_dir, output, workers) -> Fingerprints   `gate fingerprint`
    save_fingerprints(fingerprints, path) / load_fingerprints(path_or_bytes, *, name=None)
    hash_dataset(dataset, *, workers=None) -> NDArray[uint64]   a held-out Dataset's samples
    NearDuplicateIndex(train_hashes).query(held_out, max_hamming) -> NearMatches
    find_leaks(held_out, train, max_hamming, *, held_out_ids=None, max_examples=20) -> LeakageReport

The hash (``gate.phash`` version 1)
-----------------------------------

1. Grey: the image is converted to 8-bit luma with Pillow's ``convert("L")``, ITU-R
   601-2 weights ``L = (299 R + 587 G + 114 B) / 1000``; an alpha channel is ignored,
   a single channel is used as it is.
2. Size: the grey image (as 32-bit floats) is resized to 32x32, aspect ratio ignored,
   with Pillow's ``BICUBIC`` filter and ``reducing_gap=3.0`` (large images are first
   box-reduced by an integer factor, then filtered; Pillow's resampling is area-aware,
   so downscaling averages rather than samples).
3. Frequencies: the 2-D DCT-II (orthonormal, a precomputed 32x32 matrix ``C``, so the
   transform is ``C X Cᵀ``), of which the top-left 8x8 block, the lowest frequencies,
   is kept: 64 coefficients ``F[u, v]``.
4. Bits: the coefficients are rounded to 6 decimals (so that floating-point round-off,
   which differs between machines, never decides a bit). The 63 AC coefficients are
   compared with their median (the 32nd smallest): the bit of ``F[u, v]`` is 1 when it
   is strictly greater, so a flat image has no AC bit set. The DC term stays out of
   that median (it dwarfs the others); its bit is 1 when the mean grey level of the
   32x32 image exceeds 127.5, so overall brightness still carries one bit.
5. Packing: coefficient ``F[u, v]`` (row-major index ``i = 8u + v``) is bit ``63 - i``,
   so ``f"{h:016x}"`` reads the 8x8 block row by row; ``F[0, 0]`` is the top bit.

The hash ignores positive affine changes of brightness and contrast in its 63 AC bits
and changes little under resizing and JPEG re-encoding. The tests measure it: copies
resized by 0.5x to 1.7x and saved as JPEG at quality 70-90 land within 2 bits of the
original (0 in most cases), while distinct synthetic scenes lie 14 bits or more apart
(32 on average); upscaled 8x8 digits of different classes lie 10 bits or more apart.
With exactly 31 AC bits set (no ties), two hashes differ in an even number of AC bits.
It does not survive crops, rotations or flips. Changing any step above, or a Pillow
release that changes its resampling, means a new algorithm version: fingerprint files
record the one they were made with and are refused by a reader of another.

Image files are decoded by :func:`gate.datasets.images.decode`, exactly as an
evaluation decodes them (to RGB; Pillow's mode handling; no EXIF re-orientation, since
the evaluation applies none), so a training file and the same file in a held-out set
hash identically.

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

Fingerprint file (``gate.fingerprint/v1``)
------------------------------------------

All integers little-endian::

    magic    20 bytes   b"gate.fingerprint/v1\\n"
    hlen     uint32     length of the header
    header   hlen bytes UTF-8 JSON object, keys sorted, no whitespace:
                        {"algorithm": "gate.phash", "algorithm_version": 1,
                         "count": N, "paths_bytes": P, "skipped": S}
    hashes   8N bytes   N uint64 hashes
    paths    P bytes    N UTF-8 paths relative to the fingerprinted directory, each
                        followed by one NUL byte, in the order of the hashes
    digest   32 bytes   SHA-256 of everything above

``skipped`` counts images that could not be read and were left out (only with
``skip_unreadable``). The digest, in hex, is :attr:`Fingerprints.sha256`: the file's
identifier, the same for the same hashes, paths and algorithm wherever and whenever
the file was written. A reader refuses (:class:`~gate.errors.DatasetError`, naming the
file and the problem) a wrong magic or version, an unknown or missing header key, an
unknown algorithm, sizes that do not add up (truncation), a digest mismatch (damage),
invalid UTF-8, a wrong number of paths, and empty or repeated paths.

The search
----------

:class:`NearDuplicateIndex` answers "which held-out hashes lie within ``r`` bits of a
training hash, and which training hash is nearest" with multi-index hashing. The 64
bits are cut into ``m`` disjoint substrings. With ``r = q·m + a`` (``0 <= a < m``), a
pair within distance ``r`` agrees within ``q`` bits on one of the first ``a + 1``
substrings or within ``q - 1`` bits on one of the others (otherwise its distance would
be at least ``(a + 1)(q + 1) + (m - a - 1) q = r + 1``); ``m = r + 1`` is the plain
pigeonhole case where some substring matches exactly.

Each substring of the training hashes is indexed: the hashes sorted by its value, and
for narrow substrings a table with, per value, where its run starts, how long it is,
and a padded row holding its first few hashes (so one gather fetches a probe's
candidates); wide substrings are looked up by binary search instead. A query probes
every value within the substring's radius of its own, and each candidate is checked
with a full 64-bit popcount, so the answer is exact. ``m`` is chosen per radius and
training-set size by a cost model (lookups and candidates expected for uniformly spread
hashes, weighed by costs measured on the benchmark machine); brute force (XOR and
popcount against every training hash) is used when the model does not promise an index
at least twice as fast: small training sets, large radii (from 17 bits for 100,000
training hashes, from 9 for 1,000). Everything runs in numpy, in chunks sized for the
processor's caches; ``benchmarks/leakage.py`` times it.

Errors: unreadable images and bad fingerprint files are
:class:`~gate.errors.DatasetError`; a fingerprint file that cannot be written is a
:class:`~gate.errors.UserError`; wrong arguments (a radius outside 0..64, hashes that
are not uint64) are ``ValueError``. Only numpy, Pillow and :mod:`gate.datasets` are
used; a policy rule can take a :class:`LeakageReport` without importing any of them
at run time.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import logging
import math
import os
import struct
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
from PIL import Image

from gate.datasets import images as image_io
from gate.datasets.spec import Preprocess
from gate.errors import DatasetError, UserError

if TYPE_CHECKING:
    from gate.datasets.dataset import Dataset

__all__ = [
    "HASH_ALGORITHM",
    "HASH_ALGORITHM_VERSION",
    "SCHEMA",
    "Fingerprints",
    "LeakExample",
    "LeakageReport",
    "NearDuplicateIndex",
    "NearMatches",
    "find_leaks",
    "fingerprint_command",
    "fingerprint_directory",
    "hash_dataset",
    "hash_file",
    "load_fingerprints",
    "phash",
    "phash_many",
    "save_fingerprints",
]

log = logging.getLogger(__name__)

#: Name and version of the hash; stored in every fingerprint file.
HASH_ALGORITHM: Final = "gate.phash"
HASH_ALGORITHM_VERSION: Final = 1
#: The fingerprint file's schema, the first line of the file.
SCHEMA: Final = "gate.fingerprint/v1"

Hashes = npt.NDArray[np.uint64]

_SIDE = 32  # the image is resized to _SIDE x _SIDE before the DCT
_LOW = 8  # the _LOW x _LOW lowest frequencies make the 64 bits
_RESAMPLE = Image.Resampling.BICUBIC
_REDUCING_GAP = 3.0
#: How gate's evaluation decodes an image file (RGB); the hash converts it to grey.
_DECODE = Preprocess()
#: Files hashed per task on the worker pool.
_FILES_PER_TASK = 32
#: Upper bound on the elements of the temporary arrays of one search step: small
#: enough to stay in the processor's caches, large enough to amortise numpy's calls.
_CHUNK = 1 << 17
#: The same for brute force, whose passes are simpler.
_BRUTE_CHUNK = 1 << 20


# ---------------------------------------------------------------------------- hash


def _dct_matrix(n: int) -> npt.NDArray[np.float64]:
    """The orthonormal DCT-II matrix: ``(C @ x)[k] = s_k Σ_i x[i] cos(π (2i + 1) k / 2n)``."""
    k = np.arange(n, dtype=np.float64)[:, np.newaxis]
    i = np.arange(n, dtype=np.float64)[np.newaxis, :]
    matrix: npt.NDArray[np.float64] = np.sqrt(2.0 / n) * np.cos(np.pi * (2.0 * i + 1.0) * k / (2.0 * n))
    matrix[0] /= np.sqrt(2.0)
    return matrix


#: The rows of the 32-point DCT-II that give the 8 lowest frequencies, (8, 32).
_DCT_LOW: Final = _dct_matrix(_SIDE)[:_LOW].copy()


def _grey(pixels: npt.NDArray[np.uint8]) -> Image.Image:
    """An 8-bit pixel array (H, W) or (H, W, C), C in 1..4, as a Pillow "L" image."""
    if not isinstance(pixels, np.ndarray):
        raise TypeError(f"pixels must be a numpy array, got {type(pixels).__name__}")
    if pixels.dtype != np.uint8:
        raise ValueError(f"pixels must have dtype uint8, got {pixels.dtype}")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] in (2, 3, 4))):
        raise ValueError(f"pixels must have shape (H, W) or (H, W, C) with C in 1..4, got {pixels.shape}")
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError(f"pixels must not be empty, got shape {pixels.shape}")
    # (H, W) is "L", (H, W, 2) "LA", (H, W, 3) "RGB", (H, W, 4) "RGBA"; "L" ignores alpha.
    return Image.fromarray(np.ascontiguousarray(pixels)).convert("L")


def _hash_grey(greys: Sequence[Image.Image]) -> Hashes:
    """Hashes of "L" images: resize, DCT and thresholding, vectorised over the batch."""
    count = len(greys)
    small = np.empty((count, _SIDE, _SIDE), dtype=np.float64)
    for k, grey in enumerate(greys):
        resized = grey.convert("F").resize((_SIDE, _SIDE), _RESAMPLE, reducing_gap=_REDUCING_GAP)
        small[k] = np.asarray(resized, dtype=np.float32)
    low = np.matmul(np.matmul(_DCT_LOW, small), _DCT_LOW.T).reshape(count, _LOW * _LOW)
    # Round-off (about 1e-12 here, and machine-dependent) must not decide a bit: a flat
    # image's AC coefficients are exactly 0 after rounding, so its AC bits are all 0.
    low = np.round(low, 6)
    ac = low[:, 1:]
    bits = np.empty((count, _LOW * _LOW), dtype=bool)
    bits[:, 0] = small.mean(axis=(1, 2)) > 127.5
    bits[:, 1:] = ac > np.median(ac, axis=1, keepdims=True)
    # packbits puts the first bit in the most significant place of each byte; read the
    # 8 bytes big-endian and bit i of the row-major block is bit 63 - i of the hash.
    packed = np.packbits(bits, axis=1)
    hashes: Hashes = packed.view(">u8").reshape(count).astype(np.uint64)
    return hashes


def phash_many(images: Iterable[npt.NDArray[np.uint8]]) -> Hashes:
    """The 64-bit perceptual hashes of 8-bit images, each (H, W) or (H, W, C), C in 1..4.

    ``images`` may be a sequence of arrays of different sizes, or one stacked array
    (N, H, W[, C]). Raises ``ValueError``/``TypeError`` for anything that is not such an
    image.
    """
    greys = [_grey(pixels) for pixels in images]
    if not greys:
        return np.empty(0, dtype=np.uint64)
    return _hash_grey(greys)


def phash(pixels: npt.NDArray[np.uint8]) -> int:
    """The 64-bit perceptual hash of one 8-bit image, (H, W) or (H, W, C), C in 1..4."""
    return int(_hash_grey([_grey(pixels)])[0])


def _hash_bytes(data: bytes, name: str) -> int:
    decoded = image_io.decode(data, _DECODE, name)  # DatasetError naming the file
    return int(_hash_grey([decoded.convert("L")])[0])


def _read(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read image {name} ({path}): {exc.strerror or exc}") from exc


def hash_file(path: str | os.PathLike[str], name: str | None = None) -> int:
    """The hash of an image file, decoded as gate's evaluation decodes it.

    ``name`` is how errors name the file (default: the path). A file that cannot be
    read or decoded is a :class:`DatasetError`.
    """
    file = Path(path)
    return _hash_bytes(_read(file, name or str(file)), name or str(file))


# ---------------------------------------------------------------- fingerprint files


_MAGIC: Final = (SCHEMA + "\n").encode()
_SCHEMA_PREFIX: Final = b"gate.fingerprint/"
_HEADER_KEYS: Final = frozenset({"algorithm", "algorithm_version", "count", "paths_bytes", "skipped"})
_MAX_HEADER: Final = 4096
_DIGEST_SIZE: Final = 32


def _as_hashes(values: npt.ArrayLike | Iterable[int], what: str) -> Hashes:
    """A 1-D contiguous uint64 array, from a uint64 array or an iterable of integers.
    Arrays of another dtype are refused rather than reinterpreted (a negative int64
    would wrap silently, a float would be truncated)."""
    if isinstance(values, np.ndarray):
        if values.dtype != np.uint64:
            raise ValueError(f"{what} must be a uint64 array, got dtype {values.dtype}")
        array = values
    else:
        items = list(values)  # type: ignore[arg-type]
        if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in items):
            raise ValueError(f"{what} must be 64-bit unsigned integers")
        try:
            array = np.array(items, dtype=np.uint64)
        except (OverflowError, TypeError, ValueError) as exc:
            raise ValueError(f"{what} must be 64-bit unsigned integers: {exc}") from exc
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}")
    contiguous: Hashes = np.ascontiguousarray(array)
    return contiguous


@dataclass(frozen=True, eq=False)
class Fingerprints:
    """A training set's hashes and the relative path of each hashed file.

    ``hashes[i]`` is the hash of ``paths[i]``; ``skipped`` counts images that could not
    be read and were left out. :attr:`sha256` identifies the content (see the module
    docstring for the file format). The arrays are read-only.
    """

    hashes: Hashes
    paths: tuple[str, ...]
    skipped: int = 0

    def __post_init__(self) -> None:
        hashes = _as_hashes(self.hashes, "hashes").copy()
        hashes.flags.writeable = False
        object.__setattr__(self, "hashes", hashes)
        paths = tuple(self.paths)
        object.__setattr__(self, "paths", paths)
        problem = _path_problem(paths, len(hashes))
        if problem is not None:
            raise ValueError(problem)
        if isinstance(self.skipped, bool) or not isinstance(self.skipped, int) or self.skipped < 0:
            raise ValueError(f"skipped must be a non-negative integer, got {self.skipped!r}")

    def __len__(self) -> int:
        return len(self.hashes)

    def __repr__(self) -> str:
        return f"Fingerprints(count={len(self)}, skipped={self.skipped}, sha256={self.sha256[:12]}...)"

    @property
    def algorithm(self) -> str:
        """``name/version`` of the hash, e.g. ``gate.phash/1``."""
        return f"{HASH_ALGORITHM}/{HASH_ALGORITHM_VERSION}"

    @functools.cached_property
    def _body(self) -> bytes:
        blob = b"".join(p.encode("utf-8") + b"\0" for p in self.paths)
        header = json.dumps(
            {
                "algorithm": HASH_ALGORITHM,
                "algorithm_version": HASH_ALGORITHM_VERSION,
                "count": len(self.hashes),
                "paths_bytes": len(blob),
                "skipped": self.skipped,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode("utf-8")
        return b"".join([_MAGIC, struct.pack("<I", len(header)), header, self.hashes.astype("<u8").tobytes(), blob])

    @functools.cached_property
    def sha256(self) -> str:
        """SHA-256 (hex) of the file's content: its identifier."""
        return hashlib.sha256(self._body).hexdigest()

    def to_bytes(self) -> bytes:
        """The fingerprint file's bytes."""
        return self._body + bytes.fromhex(self.sha256)


def _path_problem(paths: tuple[str, ...], count: int) -> str | None:
    if len(paths) != count:
        return f"{len(paths)} path(s) for {count} hash(es)"
    seen: set[str] = set()
    for i, p in enumerate(paths):
        if not isinstance(p, str) or not p:
            return f"path {i} is empty or not a string: {p!r}"
        if "\0" in p:
            return f"path {i} contains a NUL character: {p!r}"
        if p in seen:
            return f"path {p!r} appears twice"
        seen.add(p)
    return None


def save_fingerprints(fingerprints: Fingerprints, path: str | os.PathLike[str]) -> None:
    """Write a fingerprint file atomically (a temporary file, then a rename).

    A file that cannot be written is a :class:`~gate.errors.UserError` naming it.
    """
    target = Path(path)
    data = fingerprints.to_bytes()
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise UserError(f"cannot write fingerprint file {target}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def load_fingerprints(source: bytes | str | os.PathLike[str], *, name: str | None = None) -> Fingerprints:
    """Read and validate a fingerprint file, from a path or from its bytes.

    ``name`` is how errors name the file (default: the path, or "fingerprint data" for
    bytes). Anything wrong is a :class:`~gate.errors.DatasetError` that says what.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        label = name or "fingerprint data"
    else:
        file = Path(source)
        label = name or str(file)
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise DatasetError(f"cannot read fingerprint file {label}: {exc.strerror or exc}") from exc
    return _parse(data, label)


def _parse(data: bytes, label: str) -> Fingerprints:
    def bad(what: str) -> DatasetError:
        return DatasetError(f"fingerprint file {label}: {what}")

    if not data.startswith(_SCHEMA_PREFIX):
        raise bad(f"not a gate fingerprint file (it does not start with {SCHEMA!r})")
    if not data.startswith(_MAGIC):
        line = data[: data.find(b"\n")] if b"\n" in data[:64] else data[:40]
        found = line.decode("utf-8", "replace")
        raise bad(f"unsupported schema {found!r}; this gate reads {SCHEMA!r}")
    fixed = len(_MAGIC) + 4
    if len(data) < fixed + _DIGEST_SIZE:
        raise bad(f"truncated: {len(data)} bytes, too short for a header")
    (hlen,) = struct.unpack_from("<I", data, len(_MAGIC))
    if hlen > _MAX_HEADER or fixed + hlen > len(data):
        raise bad(f"damaged or truncated: header length {hlen} does not fit a {len(data)}-byte file")
    try:
        header = json.loads(data[fixed : fixed + hlen].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"damaged header (not UTF-8 JSON): {exc}") from exc
    if not isinstance(header, dict):
        raise bad("damaged header (not a JSON object)")
    missing = sorted(_HEADER_KEYS - header.keys())
    unknown = sorted(header.keys() - _HEADER_KEYS)
    if missing or unknown:
        parts = ([f"lacks {missing}"] if missing else []) + ([f"has unknown {unknown}"] if unknown else [])
        raise bad(f"header {' and '.join(parts)} for {SCHEMA}")
    for key in ("algorithm_version", "count", "paths_bytes", "skipped"):
        value = header[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(f"header '{key}' must be a non-negative integer, got {value!r}")
    if header["algorithm"] != HASH_ALGORITHM or header["algorithm_version"] != HASH_ALGORITHM_VERSION:
        raise bad(
            f"hashes made with {header['algorithm']!r} version {header['algorithm_version']!r}; this gate "
            f"computes {HASH_ALGORITHM!r} version {HASH_ALGORITHM_VERSION}, so they cannot be compared: "
            "fingerprint the training set again"
        )
    count: int = header["count"]
    paths_bytes: int = header["paths_bytes"]
    expected = fixed + hlen + 8 * count + paths_bytes + _DIGEST_SIZE
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise bad(f"{what}: {len(data)} bytes, but its header promises {expected} ({count} hashes)")
    body, digest = data[:-_DIGEST_SIZE], data[-_DIGEST_SIZE:]
    if hashlib.sha256(body).digest() != digest:
        raise bad("damaged: the SHA-256 of its content does not match the one it carries")
    start = fixed + hlen
    hashes = np.frombuffer(data, dtype="<u8", count=count, offset=start).astype(np.uint64)
    blob = data[start + 8 * count : start + 8 * count + paths_bytes]
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad(f"paths are not UTF-8: {exc}") from exc
    if count == 0:
        if text:
            raise bad("paths given for no hashes")
        paths: tuple[str, ...] = ()
    else:
        if not text.endswith("\0"):
            raise bad("the last path is not NUL-terminated")
        paths = tuple(text[:-1].split("\0"))
    problem = _path_problem(paths, count)
    if problem is not None:
        raise bad(problem)
    return Fingerprints(hashes=hashes, paths=paths, skipped=header["skipped"])


# ------------------------------------------------------------- directories, datasets


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
            data = _read(job.file, job.name)
            if job.sha256 is not None and hashlib.sha256(data).hexdigest() != job.sha256:
                raise DatasetError(f"image {job.name} ({job.file}) changed after the dataset was loaded; reload it")
            return _hash_bytes(data, job.name)
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


# ----------------------------------------------------------------------------- search


def _popcount_bytes(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
    """Set bits of each uint64, by a byte lookup table (numpy < 2.0 has no bitwise_count)."""
    contiguous = np.ascontiguousarray(x, dtype=np.uint64)
    as_bytes = contiguous.view(np.uint8).reshape(*contiguous.shape, 8)
    counts: npt.NDArray[np.uint8] = _BYTE_BITS[as_bytes].sum(axis=-1, dtype=np.uint8)
    return counts


_BYTE_BITS: Final = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
    if _HAS_BITWISE_COUNT:
        counts: npt.NDArray[np.uint8] = np.bitwise_count(x)
        return counts
    return _popcount_bytes(x)


_HAS_BITWISE_COUNT: Final = hasattr(np, "bitwise_count")


@dataclass(frozen=True, eq=False)
class NearMatches:
    """Held-out samples within the radius of some training hash, one row each, in
    ascending ``held_out_index``: the nearest training hash (the lowest index among
    equally near ones) and the distance in bits."""

    held_out_index: npt.NDArray[np.int64]
    train_index: npt.NDArray[np.int64]
    distance: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.held_out_index)


@dataclass(frozen=True)
class _Part:
    """A substring of the hash: ``bits`` bits from bit ``offset`` up, searched within
    ``radius`` bits."""

    offset: int
    bits: int
    radius: int


# Costs of the numpy passes per query, in units of one brute-force pair (XOR, popcount,
# compare: 0.7-1 ns on the benchmark machine), fitted to timings there: a lookup in a
# padded table, each slot of its row, a level of binary search, a candidate expanded
# from a sorted run.
_COST_LOOKUP = 20.0
_COST_SLOT = 1.5
_COST_SEARCH_LEVEL = 3.0
_COST_CANDIDATE = 15.0


def _table_ok(bits: int, n: int) -> bool:
    """Whether a padded table (2**bits rows of :func:`_slots` hashes) is small enough
    for ``n`` training hashes: at most 8 per training hash, or 2**18 in all."""
    return bits <= 24 and (1 << bits) * _slots(n, bits) <= max(1 << 18, 8 * n)


def _ball(bits: int, radius: int) -> int:
    return sum(math.comb(bits, k) for k in range(radius + 1))


def _split(m: int, radius: int) -> tuple[_Part, ...]:
    """``m`` substrings covering the 64 bits, with the radii that keep the search exact."""
    base, extra = divmod(64, m)
    q, a = divmod(radius, m)
    parts: list[_Part] = []
    offset = 0
    for j in range(m):
        bits = base + (1 if j < extra else 0)
        r = q if j <= a else q - 1
        if r >= 0:
            parts.append(_Part(offset, bits, r))
        offset += bits
    return tuple(parts)


def _part_cost(n: int, part: _Part) -> float:
    """Expected cost per query of one substring, for uniformly spread hashes."""
    lookups = _ball(part.bits, part.radius)
    if _table_ok(part.bits, n):
        return lookups * (_COST_LOOKUP + _COST_SLOT * _slots(n, part.bits))
    per_lookup = _COST_SEARCH_LEVEL * math.log2(n + 1) + _COST_CANDIDATE * n / 2.0**part.bits
    return lookups * per_lookup


@functools.lru_cache(maxsize=256)
def _plan(n: int, radius: int) -> tuple[_Part, ...] | None:
    """The cheapest substrings for ``n`` training hashes and ``radius``; None: brute force.

    An index must promise half the brute-force cost: the model is rough, and brute force
    needs no tables and does not slow down on unevenly spread hashes."""
    best: tuple[float, tuple[_Part, ...] | None] = (n / 2.0, None)
    for m in range(1, min(radius + 1, 64) + 1):
        parts = _split(m, radius)
        cost = sum(_part_cost(n, part) for part in parts)
        if cost < best[0]:
            best = (cost, parts)
    return best[1]


@functools.lru_cache(maxsize=64)
def _xor_masks(bits: int, radius: int) -> npt.NDArray[np.uint64]:
    """Every ``bits``-bit value with at most ``radius`` bits set."""
    masks = [0]
    for k in range(1, radius + 1):
        masks.extend(sum(1 << b for b in combo) for combo in itertools.combinations(range(bits), k))
    array = np.array(masks, dtype=np.uint64)
    array.flags.writeable = False
    return array


class _Table:
    """One substring of the training hashes, indexed.

    The training hashes are sorted by the substring's value, so each value's hashes
    form a run. Narrow substrings get a counting table (each value's run start and
    length) and a padded copy of the first ``slots`` hashes of every run, which lets a
    lookup gather its candidates as one fixed-width row; longer runs (rare for
    uniformly spread hashes) spill over and are expanded separately. Wide substrings
    keep the sorted values and are looked up by binary search.
    """

    def __init__(self, train: Hashes, part: _Part) -> None:
        keys = (train >> np.uint64(part.offset)) & np.uint64((1 << part.bits) - 1)
        order = np.argsort(keys, kind="stable")
        #: Training index of each hash in run order.
        self.order: npt.NDArray[np.int64] = order.astype(np.int64)
        #: The training hashes in run order.
        self.hashes: Hashes = train[order]
        self.starts: npt.NDArray[np.int64] | None = None
        self.counts: npt.NDArray[np.int32] | None = None
        self.padded: Hashes | None = None
        self.slots = 0
        self._sorted: Hashes | None = None
        if _table_ok(part.bits, len(train)):
            counts = np.bincount(keys.astype(np.intp), minlength=1 << part.bits)
            self.counts = counts.astype(np.int32)
            self.starts = (np.cumsum(counts) - counts).astype(np.int64)
            self.slots = _slots(len(train), part.bits)
            # row v holds the first `slots` hashes of value v's run (zeros pad short runs)
            sorted_keys = keys[order].astype(np.intp)
            ranks = np.arange(len(train), dtype=np.int64) - self.starts[sorted_keys]
            fits = ranks < self.slots
            padded = np.zeros((1 << part.bits, self.slots), dtype=np.uint64)
            padded[sorted_keys[fits], ranks[fits]] = self.hashes[fits]
            self.padded = padded
        else:
            self._sorted = keys[order]

    def runs(self, probes: Hashes) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Start (into :attr:`hashes`) and length of each probe value's run (wide
        substrings: by binary search)."""
        assert self._sorted is not None
        lo = np.searchsorted(self._sorted, probes, side="left")
        hi = np.searchsorted(self._sorted, probes, side="right")
        return lo.astype(np.int64), (hi - lo).astype(np.int64)


def _slots(n: int, bits: int) -> int:
    """Padded row width for runs of mean length ``λ = n / 2**bits``: ``λ + 2√λ`` rounded
    up, so only a few percent of the looked-up runs spill over."""
    mean = n / 2.0**bits
    return max(1, math.ceil(mean + 2.0 * math.sqrt(mean)))


_Found = list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8]]]


class NearDuplicateIndex:
    """Training hashes indexed for Hamming-radius queries (multi-index hashing).

    Build once per training set; each radius's substring tables are built on first use
    and kept. Queries are exact: the tests compare them with brute force.
    """

    def __init__(self, train_hashes: npt.ArrayLike) -> None:
        self._train = _as_hashes(train_hashes, "train_hashes").copy()
        self._train.flags.writeable = False
        self._tables: dict[tuple[int, int], _Table] = {}

    def __len__(self) -> int:
        return len(self._train)

    def _table(self, part: _Part) -> _Table:
        key = (part.offset, part.bits)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = _Table(self._train, part)
        return table

    def query(self, held_out: npt.ArrayLike, max_hamming: int) -> NearMatches:
        """Held-out hashes within ``max_hamming`` bits (0..64) of a training hash, each
        with its nearest training hash."""
        if isinstance(max_hamming, bool) or not isinstance(max_hamming, int) or not 0 <= max_hamming <= 64:
            raise ValueError(f"max_hamming must be an integer from 0 to 64, got {max_hamming!r}")
        held = _as_hashes(held_out, "held_out")
        found: _Found = []
        if len(held) and len(self._train):
            plan = _plan(len(self._train), max_hamming)
            if plan is None:
                self._brute_force(held, max_hamming, found)
            else:
                for part in plan:
                    self._search_part(held, max_hamming, part, found)
        return _nearest(found)

    def _brute_force(self, held: Hashes, radius: int, found: _Found) -> None:
        train = self._train
        step = max(1, _BRUTE_CHUNK // len(train))
        for c0 in range(0, len(held), step):
            distances = _popcount(held[c0 : c0 + step, np.newaxis] ^ train[np.newaxis, :])
            nearest = distances.argmin(axis=1)  # the first, i.e. lowest, index among ties
            best = distances[np.arange(len(nearest)), nearest]
            rows = np.flatnonzero(best <= radius)
            found.append((rows.astype(np.int64) + c0, nearest[rows].astype(np.int64), best[rows]))

    def _search_part(self, held: Hashes, radius: int, part: _Part, found: _Found) -> None:
        """Candidates whose substring ``part`` lies within its radius of the query's,
        checked in chunks small enough for the processor's caches."""
        table = self._table(part)
        masks = _xor_masks(part.bits, part.radius)
        keys = (held >> np.uint64(part.offset)) & np.uint64((1 << part.bits) - 1)
        if table.padded is not None:
            # values below 2**24: plain intp indices, which numpy's take gathers fastest
            masks_i = masks.astype(np.intp)
            keys_i = keys.astype(np.intp)
            step = max(1, _CHUNK // (len(masks) * table.slots))
            for c0 in range(0, len(held), step):
                probes = (keys_i[c0 : c0 + step, np.newaxis] ^ masks_i[np.newaxis, :]).reshape(-1)
                self._check_padded(held, c0, len(masks), probes, table, radius, found)
            return
        step = max(1, _CHUNK // len(masks))
        for c0 in range(0, len(held), step):
            probes_u = (keys[c0 : c0 + step, np.newaxis] ^ masks[np.newaxis, :]).reshape(-1)
            lo, count = table.runs(probes_u)
            rows = np.arange(c0, min(c0 + step, len(held)), dtype=np.int64).repeat(len(masks))
            self._check_runs(held, rows, lo, count, table, radius, found)

    def _check_padded(
        self,
        held: Hashes,
        c0: int,
        n_masks: int,
        probes: npt.NDArray[np.intp],
        table: _Table,
        radius: int,
        found: _Found,
    ) -> None:
        """Each probe's padded row against its query at once, then the spilled runs."""
        assert table.padded is not None and table.starts is not None and table.counts is not None
        slots = table.slots
        queries = held[c0 : c0 + len(probes) // n_masks]
        candidates = np.take(table.padded, probes, axis=0).reshape(len(queries), n_masks, slots)
        distances = _popcount(candidates ^ queries[:, np.newaxis, np.newaxis]).reshape(-1)
        close = np.flatnonzero(distances <= radius)
        count = np.take(table.counts, probes)
        if close.size:
            probe, slot = np.divmod(close, slots)
            real = slot < count[probe]  # padding is not a hash
            probe, slot = probe[real], slot[real]
            train = table.order[table.starts[probes[probe]] + slot]
            found.append(((probe // n_masks).astype(np.int64) + c0, train, distances[close[real]]))
        spill = np.flatnonzero(count > slots)
        if spill.size:
            rows = (spill // n_masks).astype(np.int64) + c0
            start = table.starts[probes[spill]] + slots
            self._check_runs(held, rows, start, (count[spill] - slots).astype(np.int64), table, radius, found)

    def _check_runs(
        self,
        held: Hashes,
        rows: npt.NDArray[np.int64],
        lo: npt.NDArray[np.int64],
        count: npt.NDArray[np.int64],
        table: _Table,
        radius: int,
        found: _Found,
    ) -> None:
        """Check held-out row ``rows[k]`` against the ``count[k]`` training hashes from
        ``lo[k]`` in run order, every k; at most ~_CHUNK candidates at a time."""
        hit = np.flatnonzero(count)
        rows, lo, count = rows[hit], lo[hit], count[hit]
        ends = np.cumsum(count)
        start = 0
        while start < len(count):
            done = int(ends[start - 1]) if start else 0
            end = max(start + 1, int(np.searchsorted(ends, done + _CHUNK, side="right")))
            runs = count[start:end]
            total = int(ends[end - 1]) - done
            # candidate i of run k sits at lo[k] + i - (first candidate of run k)
            shift = lo[start:end] - (ends[start:end] - runs - done)
            position = np.repeat(shift, runs) + np.arange(total, dtype=np.int64)
            candidate_rows = np.repeat(rows[start:end], runs)
            distances = _popcount(table.hashes[position] ^ held[candidate_rows])
            keep = np.flatnonzero(distances <= radius)
            if keep.size:
                found.append((candidate_rows[keep], table.order[position[keep]], distances[keep]))
            start = end


def _nearest(found: _Found) -> NearMatches:
    """One row per held-out sample: the smallest distance, then the lowest train index."""
    if not found:
        empty = np.empty(0, dtype=np.int64)
        return NearMatches(empty, empty.copy(), empty.copy())
    rows = np.concatenate([f[0] for f in found])
    train = np.concatenate([f[1] for f in found])
    distance = np.concatenate([f[2] for f in found]).astype(np.int64)
    order = np.lexsort((train, distance, rows))
    rows, train, distance = rows[order], train[order], distance[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    return NearMatches(rows[first], train[first], distance[first])


# ---------------------------------------------------------------------------- report


@dataclass(frozen=True)
class LeakExample:
    """A held-out sample that nearly duplicates a training image."""

    held_out_index: int
    #: The held-out sample's id (e.g. its path in the dataset) when the caller gave ids.
    held_out_id: str | None
    train_index: int
    train_path: str
    distance: int


@dataclass(frozen=True, eq=False)
class LeakageReport:
    """What :func:`find_leaks` found.

    ``leaked`` held-out samples (``rate`` = leaked / held_out_count) lie within
    ``max_hamming`` bits of a training image; ``examples`` are the closest of them,
    by (distance, held-out index), at most the number asked for; ``matches`` lists
    them all.
    """

    max_hamming: int
    held_out_count: int
    train_count: int
    train_sha256: str
    leaked: int
    rate: float
    examples: tuple[LeakExample, ...]
    matches: NearMatches

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (without the full match list)."""
        return {
            "max_hamming": self.max_hamming,
            "held_out": self.held_out_count,
            "train": self.train_count,
            "train_sha256": self.train_sha256,
            "leaked": self.leaked,
            "rate": self.rate,
            "examples": [
                {
                    "held_out_index": e.held_out_index,
                    "held_out_id": e.held_out_id,
                    "train_index": e.train_index,
                    "train_path": e.train_path,
                    "distance": e.distance,
                }
                for e in self.examples
            ],
        }


def find_leaks(
    held_out: npt.ArrayLike,
    train: Fingerprints,
    max_hamming: int,
    *,
    held_out_ids: Sequence[str] | None = None,
    max_examples: int = 20,
) -> LeakageReport:
    """Held-out hashes (e.g. from :func:`hash_dataset`) within ``max_hamming`` bits of a
    training fingerprint. ``held_out_ids``, when given, names the samples in the
    examples. An empty held-out set is a ``ValueError`` (its rate is undefined)."""
    held = _as_hashes(held_out, "held_out")
    if not len(held):
        raise ValueError("held_out is empty: the leakage rate of no samples is undefined")
    if held_out_ids is not None and len(held_out_ids) != len(held):
        raise ValueError(f"{len(held_out_ids)} held_out_ids for {len(held)} hashes")
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 0:
        raise ValueError(f"max_examples must be a non-negative integer, got {max_examples!r}")
    matches = NearDuplicateIndex(train.hashes).query(held, max_hamming)
    closest = np.lexsort((matches.held_out_index, matches.distance))[:max_examples]
    examples = tuple(
        LeakExample(
            held_out_index=int(matches.held_out_index[k]),
            held_out_id=None if held_out_ids is None else held_out_ids[int(matches.held_out_index[k])],
            train_index=int(matches.train_index[k]),
            train_path=train.paths[int(matches.train_index[k])],
            distance=int(matches.distance[k]),
        )
        for k in closest
    )
    return LeakageReport(
        max_hamming=max_hamming,
        held_out_count=len(held),
        train_count=len(train),
        train_sha256=train.sha256,
        leaked=len(matches),
        rate=len(matches) / len(held),
        examples=examples,
        matches=matches,
    )
