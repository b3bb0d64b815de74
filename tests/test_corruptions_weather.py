"""Fog and snow as gate runs them: seeded per (sample id, corruption, severity, seed),
on any image size a dataset spec can produce, grey or colour. (Their pixels against the
reference implementation: tests/test_corruptions_reference.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from gate.corruptions.catalogue import CORRUPTIONS, GROUPS, NOT_AVAILABLE, corrupt
from gate.corruptions.randomness import sample_rng
from gate.corruptions.weather import plasma_fractal

WEATHER = ("fog", "snow")


def _photo(shape: tuple[int, ...] = (40, 36, 3)) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)


def test_fog_and_snow_are_weather_and_frost_stays_unavailable() -> None:
    assert GROUPS["weather"] == ("snow", "fog")
    assert all(CORRUPTIONS[name].group == "weather" and CORRUPTIONS[name].random for name in WEATHER)
    assert set(NOT_AVAILABLE) & {"fog", "snow"} == set()
    assert "no stated licence" in NOT_AVAILABLE["frost"]


@pytest.mark.parametrize("name", WEATHER)
def test_the_same_sample_seed_and_severity_give_the_same_pixels(name: str) -> None:
    photo = _photo()
    first = corrupt(photo, name, 3, sample_rng("cat/1.png", name, 3, 0))
    assert np.array_equal(first, corrupt(photo, name, 3, sample_rng("cat/1.png", name, 3, 0)))
    assert not np.array_equal(first, corrupt(photo, name, 3, sample_rng("cat/2.png", name, 3, 0)))
    assert not np.array_equal(first, corrupt(photo, name, 3, sample_rng("cat/1.png", name, 3, 1)))
    assert not np.array_equal(first, photo)


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 7, 1), (5, 3, 3), (33, 17, 3)])
@pytest.mark.parametrize("name", WEATHER)
def test_any_size_keeps_its_shape(name: str, shape: tuple[int, int, int]) -> None:
    for severity in (1, 5):
        out = corrupt(_photo(shape), name, severity, sample_rng("s", name, severity, 0))
        assert out.shape == shape and out.dtype == np.uint8


def test_fog_leaves_a_black_image_black_and_snow_whitens_it() -> None:
    black = np.zeros((24, 24, 3), np.uint8)
    # fog rescales by the brightest value, which is 0 here
    assert not corrupt(black, "fog", 5, sample_rng("s", "fog", 5, 0)).any()
    snowed = corrupt(black, "snow", 5, sample_rng("s", "snow", 5, 0))
    assert snowed.min() >= 0.45 * 0.5 * 255 - 1  # at least (1 - keep) x 0.5 of white everywhere


def test_the_fractal_spans_zero_to_one() -> None:
    field = plasma_fractal(64, 1.4, np.random.default_rng(0))
    assert field.shape == (64, 64) and field.min() == 0.0 and field.max() == 1.0
    assert len(np.unique(field)) > 64 * 64 // 2  # a field, not a few levels
