"""The corruptions gate applies, by name: ImageNet-C's definitions and severity parameters
(Hendrycks & Dietterich, ICLR 2019), implemented on numpy, SciPy and Pillow, and the ones
it does not provide with the reason.

:func:`corrupt` applies one corruption at one severity (1..5) to one sample's 8-bit
pixels (H, W, C) after resize and crop, drawing from the generator of
:func:`gate.corruptions.randomness.sample_rng`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gate.corruptions import blur, digital, noise, weather
from gate.corruptions.names import AVAILABLE, GROUPS, NOT_AVAILABLE, SEVERITIES
from gate.corruptions.randomness import NoiseSource

__all__ = ["AVAILABLE", "CORRUPTIONS", "CORRUPTIONS_VERSION", "GROUPS", "NOT_AVAILABLE", "SEVERITIES", "corrupt"]

CorruptionFn = Callable[[npt.NDArray[np.uint8], int, NoiseSource], npt.NDArray[np.uint8]]

#: Bump when any corruption's pixels change: it is part of every corrupted-pixel cache key.
CORRUPTIONS_VERSION = "1"


@dataclass(frozen=True)
class Corruption:
    name: str
    group: str  # ImageNet-C's grouping: noise, blur, weather or digital
    apply: CorruptionFn
    random: bool  # whether it draws from the generator


CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption("gaussian_noise", "noise", noise.gaussian_noise, True),
        Corruption("shot_noise", "noise", noise.shot_noise, True),
        Corruption("impulse_noise", "noise", noise.impulse_noise, True),
        Corruption("defocus_blur", "blur", blur.defocus_blur, False),
        Corruption("motion_blur", "blur", blur.motion_blur, True),
        Corruption("zoom_blur", "blur", blur.zoom_blur, False),
        Corruption("snow", "weather", weather.snow, True),
        Corruption("fog", "weather", weather.fog, True),
        Corruption("brightness", "digital", digital.brightness, False),
        Corruption("contrast", "digital", digital.contrast, False),
        Corruption("jpeg_compression", "digital", digital.jpeg_compression, False),
        Corruption("pixelate", "digital", digital.pixelate, False),
    )
}


def corrupt(pixels: npt.NDArray[np.uint8], name: str, severity: int, rng: NoiseSource) -> npt.NDArray[np.uint8]:
    """``pixels`` (H, W, C of 8 bits) with corruption ``name`` at ``severity`` applied."""
    out = CORRUPTIONS[name].apply(pixels, severity, rng)
    if out.shape != pixels.shape:  # every corruption keeps the size; a change is a bug here
        raise AssertionError(f"{name}@{severity} changed the image from {pixels.shape} to {out.shape}")
    return out
