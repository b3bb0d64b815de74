"""The digital corruptions of ImageNet-C: brightness (the HSV value raised), contrast (the
image pulled towards its mean), JPEG compression and pixelation, on 8-bit pixels
(H, W, C). None of them draws a random number."""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
from PIL import Image

from gate.corruptions.noise import to_bytes
from gate.corruptions.randomness import NoiseSource

#: Added to the HSV value (brightness) per severity.
BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)
#: Factor on each pixel's distance from the channel mean per severity.
CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)
#: JPEG quality per severity.
JPEG_QUALITY = (25, 18, 15, 10, 7)
#: Side scale of the coarse image per severity.
PIXELATE = (0.6, 0.5, 0.4, 0.3, 0.25)


def _image(pixels: npt.NDArray[np.uint8]) -> Image.Image:
    return Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)


def _pixels(image: Image.Image, channels: int) -> npt.NDArray[np.uint8]:
    arr = np.asarray(image, dtype=np.uint8)
    return arr[:, :, np.newaxis] if channels == 1 else arr


def rgb_to_hsv(rgb: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Hue, saturation and value (each 0..1) of RGB intensities (0..1)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    value = rgb.max(axis=-1)
    spread = value - rgb.min(axis=-1)
    safe = np.where(spread == 0, 1.0, spread)
    # where channels tie for the maximum, blue's formula wins over green's over red's
    sector = np.select([b == value, g == value], [4.0 + (r - g) / safe, 2.0 + (b - r) / safe], default=(g - b) / safe)
    hue = np.where(spread == 0, 0.0, (sector / 6.0) % 1.0)
    saturation = np.where(spread == 0, 0.0, spread / np.where(value == 0, 1.0, value))
    return np.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(hsv: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """RGB intensities of hue, saturation and value (each 0..1)."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sector = np.floor(h * 6)
    f = h * 6 - sector
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    which = sector.astype(np.int64) % 6
    r = np.choose(which, [v, q, p, p, t, v])
    g = np.choose(which, [t, v, v, q, p, p])
    b = np.choose(which, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-1)


def brightness(pixels: npt.NDArray[np.uint8], severity: int, rng: NoiseSource) -> npt.NDArray[np.uint8]:
    lift = BRIGHTNESS[severity - 1]
    x = pixels / 255.0
    if x.shape[2] == 1:  # the value of a grey pixel is the pixel itself
        return to_bytes(np.clip(x + lift, 0.0, 1.0))
    hsv = rgb_to_hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + lift, 0.0, 1.0)
    return to_bytes(hsv_to_rgb(hsv))


def contrast(pixels: npt.NDArray[np.uint8], severity: int, rng: NoiseSource) -> npt.NDArray[np.uint8]:
    x = pixels / 255.0
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return to_bytes((x - means) * CONTRAST[severity - 1] + means)


def jpeg_compression(pixels: npt.NDArray[np.uint8], severity: int, rng: NoiseSource) -> npt.NDArray[np.uint8]:
    buffer = io.BytesIO()
    _image(pixels).save(buffer, "JPEG", quality=JPEG_QUALITY[severity - 1])
    with Image.open(buffer) as decoded:
        return _pixels(decoded.convert("L" if pixels.shape[2] == 1 else "RGB"), pixels.shape[2])


def pixelate(pixels: npt.NDArray[np.uint8], severity: int, rng: NoiseSource) -> npt.NDArray[np.uint8]:
    scale = PIXELATE[severity - 1]
    h, w = pixels.shape[:2]
    coarse = _image(pixels).resize((int(w * scale), int(h * scale)), Image.Resampling.BOX)
    return _pixels(coarse.resize((w, h), Image.Resampling.NEAREST), pixels.shape[2])
