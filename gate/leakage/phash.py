"""The perceptual hash (``gate.phash`` version 1): 64 bits per image that change little
when an image is resized or re-encoded.

How it is computed
------------------

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
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image

from gate.datasets import images as image_io
from gate.datasets.spec import Preprocess
from gate.errors import DatasetError

#: Name and version of the hash; stored in every fingerprint file.
HASH_ALGORITHM: Final = "gate.phash"
HASH_ALGORITHM_VERSION: Final = 1

#: 64-bit hashes, one per image.
Hashes = npt.NDArray[np.uint64]

_SIDE = 32  # the image is resized to _SIDE x _SIDE before the DCT
_LOW = 8  # the _LOW x _LOW lowest frequencies make the 64 bits
_RESAMPLE = Image.Resampling.BICUBIC
_REDUCING_GAP = 3.0
#: How gate's evaluation decodes an image file (RGB); the hash converts it to grey.
_DECODE = Preprocess()


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


def hash_bytes(data: bytes, name: str) -> int:
    """The hash of an image file's bytes; ``name`` is how a decoding error names the file."""
    decoded = image_io.decode(data, _DECODE, name)  # DatasetError naming the file
    return int(_hash_grey([decoded.convert("L")])[0])


def read_image(path: Path, name: str) -> bytes:
    """An image file's bytes; a file that cannot be read is a :class:`DatasetError` naming it."""
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
    return hash_bytes(read_image(file, name or str(file)), name or str(file))


def as_hashes(values: npt.ArrayLike | Iterable[int], what: str) -> Hashes:
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
