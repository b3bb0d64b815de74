"""The weather corruptions of ImageNet-C that need no photographs: fog (a plasma fractal
added as haze) and snow (a layer of flakes smeared by motion, over a greyed, brightened
image), on 8-bit pixels (H, W, C), each drawing from the generator it is given in the
order the reference implementation draws, so that the same draws give the same layers.

Frost, the third weather corruption, overlays photographs: see
:data:`gate.corruptions.names.NOT_AVAILABLE`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gate.corruptions.blur import motion_streak, zoomed_centre
from gate.corruptions.noise import to_bytes
from gate.corruptions.randomness import NoiseSource

#: Fog: the haze's strength and the fractal's roughness decay per octave, per severity.
FOG = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))
#: Snow per severity: the flakes' normal mean and standard deviation, their zoom, the
#: level under which there is no flake, the streak's radius and sigma, and the weight
#: the image keeps against its greyed, brightened copy.
SNOW = (
    (0.1, 0.3, 3.0, 0.5, 10, 4, 0.8),
    (0.2, 0.3, 2.0, 0.5, 12, 4, 0.7),
    (0.55, 0.3, 4.0, 0.9, 12, 8, 0.7),
    (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
    (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
)
#: The displacement the fractal starts from; it shrinks by the decay at every octave.
_FIRST_WIBBLE = 100.0
#: The ITU-R BT.601 luma weights of R, G and B (what the reference greys the image with).
_LUMA = (0.299, 0.587, 0.114)


def _wibbled(total: npt.NDArray[np.float64], wibble: float, rng: NoiseSource) -> npt.NDArray[np.float64]:
    """The mean of four neighbours (``total`` / 4) displaced by a uniform draw."""
    out: npt.NDArray[np.float64] = total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)
    return out


def plasma_fractal(size: int, decay: float, rng: NoiseSource) -> npt.NDArray[np.float64]:
    """A ``size`` x ``size`` height map (0..1, ``size`` a power of two) by the
    diamond-square algorithm, wrapping around its edges; the displacement shrinks by
    ``decay`` at each halving of the step."""
    grid = np.zeros((size, size))
    step, wibble = size, _FIRST_WIBBLE
    while step >= 2:
        half = step // 2
        corners = grid[::step, ::step]
        squares = corners + np.roll(corners, -1, axis=0)
        squares += np.roll(squares, -1, axis=1)
        grid[half::step, half::step] = _wibbled(squares, wibble, rng)
        centres = grid[half::step, half::step]
        # the diamonds' midpoints on the corners' rows, then on their columns
        across = centres + np.roll(centres, 1, axis=0) + (corners + np.roll(corners, -1, axis=1))
        grid[::step, half::step] = _wibbled(across, wibble, rng)
        down = centres + np.roll(centres, 1, axis=1) + (corners + np.roll(corners, -1, axis=0))
        grid[half::step, ::step] = _wibbled(down, wibble, rng)
        step //= 2
        wibble /= decay
    grid -= grid.min()
    peak = grid.max()
    return grid / peak if peak > 0 else grid


def _power_of_two_above(n: int) -> int:
    return 1 if n <= 1 else 2 ** (n - 1).bit_length()


def fog(pixels: npt.NDArray[np.uint8], severity: int, rng: NoiseSource) -> npt.NDArray[np.uint8]:
    thickness, decay = FOG[severity - 1]
    h, w = pixels.shape[:2]
    x = pixels / 255.0
    brightest = x.max()
    haze = plasma_fractal(_power_of_two_above(max(h, w, 2)), decay, rng)
    x += thickness * haze[:h, :w, np.newaxis]
    # rescaled so that the haze does not push everything to white
    return to_bytes(x * brightest / (brightest + thickness))


def snow_layer(h: int, w: int, severity: int, rng: NoiseSource) -> npt.NDArray[np.float64]:
    """The flakes (H, W, 1; 0..1 in steps of 1/255) for an image of ``h`` x ``w``:
    normal noise zoomed in, thresholded, then smeared along an angle drawn in
    [-135, -45] degrees (falling), rounded to 8 bits."""
    mean, spread, zoom, threshold, radius, sigma, _ = SNOW[severity - 1]
    flakes = rng.normal(size=(h, w), loc=mean, scale=spread)
    flakes = np.asarray(zoomed_centre(flakes, zoom), dtype=np.float64)  # at least h x w
    flakes[flakes < threshold] = 0
    flakes = np.clip(flakes, 0, 1)
    streaked = motion_streak(flakes, radius, sigma, float(rng.uniform(-135, -45)))
    rounded: npt.NDArray[np.float64] = np.round(streaked * 255).astype(np.uint8) / 255.0
    return rounded[:h, :w, np.newaxis]


def snow(pixels: npt.NDArray[np.uint8], severity: int, rng: NoiseSource) -> npt.NDArray[np.uint8]:
    keep = SNOW[severity - 1][6]
    h, w, channels = pixels.shape
    flakes = snow_layer(h, w, severity, rng)
    # single precision up to the flakes, as in the reference, so the same sums round alike
    x = pixels.astype(np.float32) / 255.0
    if channels == 1:
        grey = x
    else:
        red, green, blue = (np.float32(weight) for weight in _LUMA)
        grey = (x[..., 0] * red + x[..., 1] * green + x[..., 2] * blue)[..., np.newaxis]
    x = keep * x + (1 - keep) * np.maximum(x, grey * 1.5 + 0.5)
    # flakes fall on the image twice: as drawn, and turned half a circle
    return to_bytes(x + flakes + flakes[::-1, ::-1])
