"""The noise corruptions of ImageNet-C: gaussian, shot (Poisson) and impulse (salt and
pepper) noise, on 8-bit pixels (H, W, C), each drawing from the generator it is given.

Pixels are read as intensities in 0..1 and the result is scaled back to 0..255 and
truncated to 8 bits, as the reference implementation does, so that the same draws give
the same pixels.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gate.corruptions.randomness import NoiseSource

#: Standard deviation of the added noise (intensity units) per severity.
GAUSSIAN_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)
#: Photons per unit intensity per severity: fewer photons, more noise.
SHOT_PHOTONS = (60, 25, 12, 5, 3)
#: Fraction of pixel values replaced by black or white per severity.
IMPULSE_AMOUNT = (0.03, 0.06, 0.09, 0.17, 0.27)


def to_bytes(intensities: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """Intensities (0..1, clipped here) as 8-bit pixels, truncated as ImageNet-C does."""
    out: npt.NDArray[np.uint8] = (np.clip(intensities, 0.0, 1.0) * 255).astype(np.uint8)
    return out


def gaussian_noise(pixels: npt.NDArray[np.uint8], severity: int, rng: NoiseSource) -> npt.NDArray[np.uint8]:
    x = pixels / 255.0
    return to_bytes(x + rng.normal(size=x.shape, scale=GAUSSIAN_SIGMA[severity - 1]))


def shot_noise(pixels: npt.NDArray[np.uint8], severity: int, rng: NoiseSource) -> npt.NDArray[np.uint8]:
    photons = SHOT_PHOTONS[severity - 1]
    x = pixels / 255.0
    return to_bytes(rng.poisson(x * photons) / float(photons))


def impulse_noise(pixels: npt.NDArray[np.uint8], severity: int, rng: NoiseSource) -> npt.NDArray[np.uint8]:
    # each value is hit with probability `amount`; a hit is white or black with equal odds
    hit = rng.random(pixels.shape) < IMPULSE_AMOUNT[severity - 1]
    white = rng.random(pixels.shape) < 0.5
    out = pixels.copy()
    out[hit & white] = 255
    out[hit & ~white] = 0
    return out
