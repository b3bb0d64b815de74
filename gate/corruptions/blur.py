"""The blur corruptions of ImageNet-C: defocus (a disk kernel), motion (a streak at a
random angle) and zoom (the image averaged with zoomed-in copies of itself), on 8-bit
pixels (H, W, C), in numpy alone: borders are mirrored without repeating the edge pixel,
zooms are bilinear with the corners of the zoomed region on the corners of the output."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from gate.corruptions.noise import to_bytes
from gate.corruptions.randomness import NoiseSource

#: Disk radius and the sigma of the Gaussian that anti-aliases its edge, per severity.
DEFOCUS = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))
#: Streak radius and sigma (the streak's weights fall off as a half Gaussian), per severity.
MOTION = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))
#: The zoom factors averaged with the image, per severity (start, stop, step).
ZOOM = ((1.0, 1.11, 0.01), (1.0, 1.16, 0.01), (1.0, 1.21, 0.02), (1.0, 1.26, 0.02), (1.0, 1.31, 0.03))
#: Half-width of the disk kernel's support when the disk is small.
_MIN_DISK_HALF = 8


def _gaussian_taps(size: int, sigma: float) -> npt.NDArray[np.float64]:
    offsets = np.arange(size) - (size - 1) / 2
    taps = np.exp(-(offsets**2) / (2 * sigma**2))
    out: npt.NDArray[np.float64] = taps / taps.sum()
    return out


def disk_kernel(radius: int, alias_sigma: float) -> npt.NDArray[np.float64]:
    """A normalised disk of ``radius`` whose edge is softened by a small Gaussian (3 taps,
    5 for radii above 8), borders mirrored without repeating the edge."""
    half = max(radius, _MIN_DISK_HALF)
    axis = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(axis, axis)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    disk /= disk.sum()
    taps = _gaussian_taps(3 if radius <= _MIN_DISK_HALF else 5, alias_sigma).astype(np.float32)
    return _smooth(_smooth(disk, taps, 0), taps, 1).astype(np.float64)


def _smooth(image: npt.NDArray[np.float32], taps: npt.NDArray[np.float32], axis: int) -> npt.NDArray[np.float32]:
    """``image`` correlated with ``taps`` along ``axis``, borders mirrored."""
    half = len(taps) // 2
    widths = [(0, 0)] * image.ndim
    widths[axis] = (half, half)
    padded = np.pad(image, widths, mode="reflect")
    n = image.shape[axis]
    out = np.zeros_like(image)
    for k, tap in enumerate(taps):
        out += tap * np.take(padded, np.arange(k, k + n), axis=axis)
    return out


def defocus_blur(pixels: npt.NDArray[np.uint8], severity: int, rng: NoiseSource) -> npt.NDArray[np.uint8]:
    radius, alias_sigma = DEFOCUS[severity - 1]
    kernel = disk_kernel(radius, alias_sigma)
    half = kernel.shape[0] // 2
    # borders mirrored without repeating the edge pixel; the FFT keeps large disks cheap
    padded = np.pad(pixels / 255.0, ((half, half), (half, half), (0, 0)), mode="reflect")
    size = padded.shape[:2]
    spectrum = np.fft.rfft2(padded, axes=(0, 1)) * np.fft.rfft2(kernel, s=size)[:, :, np.newaxis]
    # a circular convolution: past the kernel's width the wrap-around touches nothing
    full = np.fft.irfft2(spectrum, s=size, axes=(0, 1))
    return to_bytes(full[2 * half :, 2 * half :])


def motion_streak(
    image: npt.NDArray[np.uint8] | npt.NDArray[np.float64], radius: int, sigma: float, angle: float
) -> npt.NDArray[np.float64]:
    """The image smeared along ``angle`` (degrees): a weighted sum of copies shifted
    by whole pixels along the streak (the uncovered border filled with the edge), weights
    a half Gaussian of ``sigma``."""
    width = 2 * radius + 1
    weights = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
    weights /= weights.sum()
    along_y, along_x = width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle))
    length = math.hypot(along_y, along_x)
    h, w = image.shape[:2]
    # edge-padded once: every shifted copy is then a view, not a gather
    pad = min(width, max(h, w))
    padded = np.pad(image, ((pad, pad), (pad, pad)) + ((0, 0),) * (image.ndim - 2), mode="edge")
    out = np.zeros(image.shape, dtype=np.float64)
    for i in range(width):
        dy = -math.ceil(i * along_y / length - 0.5)
        dx = -math.ceil(i * along_x / length - 0.5)
        if abs(dy) >= h or abs(dx) >= w:
            break  # the streak has left the image
        out += weights[i] * padded[pad - dy : pad - dy + h, pad - dx : pad - dx + w]
    return out


def motion_blur(pixels: npt.NDArray[np.uint8], severity: int, rng: NoiseSource) -> npt.NDArray[np.uint8]:
    radius, sigma = MOTION[severity - 1]
    angle = float(rng.uniform(-45, 45))
    # clipped in pixel units, not intensities: x / 255 * 255 is not always x again
    return np.clip(motion_streak(pixels, radius, sigma, angle), 0, 255).astype(np.uint8)


def zoomed_centre(image: npt.NDArray[np.floating], factor: float) -> npt.NDArray[np.floating]:
    """The centre 1/``factor`` of ``image`` zoomed back to (about) its size, bilinear."""
    h, w = image.shape[:2]
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    centre = image[top : top + ch, left : left + cw]
    rows = _linear_resize(centre, round(ch * factor), 0)
    return _linear_resize(rows, round(cw * factor), 1).astype(image.dtype)


def _linear_resize(image: npt.NDArray[np.floating], size: int, axis: int) -> npt.NDArray[np.float64]:
    """``image`` resampled to ``size`` along ``axis`` by linear interpolation, the first and
    last output samples on the first and last input samples."""
    n = image.shape[axis]
    where = np.arange(size) * ((n - 1) / (size - 1)) if size > 1 else np.zeros(1)
    low = np.minimum(np.floor(where).astype(np.int64), n - 1)
    high = np.minimum(low + 1, n - 1)
    shape = [1] * image.ndim
    shape[axis] = size
    weight = (where - low).reshape(shape)
    lows, highs = np.take(image, low, axis=axis), np.take(image, high, axis=axis)
    out: npt.NDArray[np.float64] = lows * (1.0 - weight) + highs * weight
    return out


def zoom_blur(pixels: npt.NDArray[np.uint8], severity: int, rng: NoiseSource) -> npt.NDArray[np.uint8]:
    start, stop, step = ZOOM[severity - 1]
    factors = np.arange(start, stop, step)
    x = (pixels / 255.0).astype(np.float32)
    total = np.zeros_like(x)
    h, w = x.shape[:2]
    for factor in factors:
        layer = zoomed_centre(x, float(factor))[:h, :w]
        total[: layer.shape[0], : layer.shape[1]] += layer
    return to_bytes((x + total) / (len(factors) + 1))
