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


def hue_saturation_value(
    r: npt.NDArray[np.float64], g: npt.NDArray[np.float64], b: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Hue, saturation and value (each 0..1) of the RGB intensity planes (0..1): the
    reference's arithmetic step for step, on whole planes rather than interleaved pixels
    (a reduction over a last axis of three and numpy's float remainder are what made
    the round trip slow)."""
    value = np.maximum(np.maximum(r, g), b)
    spread = value - np.minimum(np.minimum(r, g), b)
    flat = spread == 0
    blue, green = b == value, g == value
    # where channels tie for the maximum, blue's formula wins over green's over red's
    numerator = np.where(blue, r - g, np.where(green, b - r, g - b))
    offset = np.where(blue, 4.0, np.where(green, 2.0, 0.0))
    turn = (offset + numerator / np.where(flat, 1.0, spread)) / 6.0
    # turn lies in [-1/6, 1): there `turn % 1.0` is turn, or turn + 1.0 below zero, exactly
    hue = np.where(flat, 0.0, np.where(turn < 0, turn + 1.0, turn))
    saturation = np.where(flat, 0.0, spread / np.where(value == 0, 1.0, value))
    return hue, saturation, value


def rgb_planes(
    hue: npt.NDArray[np.float64], saturation: npt.NDArray[np.float64], value: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The RGB intensity planes of hue, saturation and value (each 0..1)."""
    turns = hue * 6
    sector = np.floor(turns)
    f = turns - sector
    k = sector.astype(np.int8) % 6
    lowest = value * (1 - saturation)
    # the middle channel: falling (value * (1 - f * s)) in odd sectors, rising in even ones
    middle = value * (1 - np.where(k & 1 == 1, f, 1 - f) * saturation)
    r = np.where((k == 0) | (k == 5), value, np.where((k == 1) | (k == 4), middle, lowest))
    g = np.where((k == 1) | (k == 2), value, np.where((k == 0) | (k == 3), middle, lowest))
    b = np.where((k == 3) | (k == 4), value, np.where((k == 2) | (k == 5), middle, lowest))
    return r, g, b


def brightness(pixels: npt.NDArray[np.uint8], severity: int, rng: NoiseSource) -> npt.NDArray[np.uint8]:
    lift = BRIGHTNESS[severity - 1]
    if pixels.shape[2] == 1:  # the value of a grey pixel is the pixel itself
        return to_bytes(np.clip(pixels / 255.0 + lift, 0.0, 1.0))
    r, g, b = np.ascontiguousarray(pixels.transpose(2, 0, 1)) / 255.0
    hue, saturation, value = hue_saturation_value(r, g, b)
    planes = rgb_planes(hue, saturation, np.minimum(value + lift, 1.0))
    return np.stack([to_bytes(plane) for plane in planes], axis=-1)


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
