"""Comparing an observed value with a rule's threshold, and writing both in a message.

Metrics are computed in floating point from counts, so a value that is exactly a floor
on paper can land a hair below it: recalls 6/10, 8/10 and 10/10 average to
0.7999999999999999, not 0.8. Every bound of every rule is therefore compared with a
tolerance: two numbers closer than :data:`TOLERANCE` (relative to the larger of 1 and
the threshold) are equal, so a value on an inclusive floor or ceiling meets it.

The tolerance is far above the rounding error of sums and ratios of counts (about
1e-15) and far below any difference a count can make: telling 0.8 from the next value
a count can give needs a class of a billion samples. A floor of 0.7999 still fails
0.79 and 79/100 fails 0.8.
"""

from __future__ import annotations

import math

#: Two numbers closer than this (relative to max(1, |threshold|)) are equal.
TOLERANCE = 1e-9


def equal(value: float, threshold: float) -> bool:
    """Whether ``value`` equals ``threshold`` within the tolerance."""
    if math.isinf(threshold) or math.isinf(value):
        return value == threshold
    return abs(value - threshold) <= TOLERANCE * max(1.0, abs(threshold))


def at_least(value: float, floor: float) -> bool:
    """``value >= floor``, a value within the tolerance of the floor meeting it."""
    return value >= floor or equal(value, floor)


def at_most(value: float, ceiling: float) -> bool:
    """``value <= ceiling``, a value within the tolerance of the ceiling meeting it."""
    return value <= ceiling or equal(value, ceiling)


def fmt(value: float | None) -> str:
    """Numbers in messages: three decimals, and 'undefined' for None."""
    if value is None:
        return "undefined"
    if math.isinf(value):
        return "inf"
    return f"{value:.3f}"


def fmt_vs(value: float, threshold: float) -> tuple[str, str]:
    """An observed value and its threshold, with enough decimals that unequal numbers
    never print alike ("0.0444 > 0.0440", not "0.044 > 0.044"); a value equal to the
    threshold within the tolerance prints as the threshold."""
    if equal(value, threshold):
        value = threshold
    for digits in range(3, 8):
        a, b = f"{value:.{digits}f}", f"{threshold:.{digits}f}"
        if (a != b) == (value != threshold) and float(b) == threshold:
            return a, b
    return repr(value), repr(threshold)
