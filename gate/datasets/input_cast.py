"""The checked conversion of a batch to the dtype of the model's input.

Image samples reach this point as float32 (pixels divided by ``preprocess.scale``, then
normalised by ``mean``/``std``); ``.npz`` samples as stored. numpy's plain cast would
truncate 0.47 to 0 for a uint8 input and wrap -1 round to 255, feeding the model
something else than the dataset describes without a word. Here a value that an integer
input cannot hold exactly (a fraction, or outside the type's range), or a finite value
that a narrower float type turns infinite, is a :class:`~gate.errors.DatasetError` that
says which spec field to change. The default scale does not follow the input dtype: the
spec says what the model gets, and a mismatch is reported rather than guessed away.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from gate.errors import DatasetError

_INTEGER_ADVICE = (
    "for an image dataset, set the spec's preprocess.scale to 1 with mean [0] and std [1] so that the"
    " model gets the 0..255 pixel values; for an .npz, store x with whole numbers in range"
)


def cast_for_model(batch: npt.NDArray[Any], dtype: Any) -> npt.NDArray[Any]:
    """``batch`` as a C-contiguous array of ``dtype``, refusing any value the cast would change."""
    target = np.dtype(dtype)
    source = np.asarray(batch)
    if source.dtype == target:
        return np.ascontiguousarray(source)
    if target.kind in "iu":
        _check_integers(source, target)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is looked for below
        converted = np.ascontiguousarray(source, dtype=target)
    if target.kind == "f" and _may_overflow(source.dtype, target):
        _check_no_overflow(source, converted, target)
    return converted


def _may_overflow(source: np.dtype[Any], target: np.dtype[Any]) -> bool:
    """Whether a finite value of ``source`` can become infinite as ``target`` (a float type):
    never for 8-bit pixels into float32, the common case, which is then not scanned again."""
    largest = float(np.finfo(target).max)
    if source.kind in "iu":
        return float(np.iinfo(source).max) > largest or float(np.iinfo(source).min) < -largest
    if source.kind == "f":
        return float(np.finfo(source).max) > largest
    return True


def _check_integers(source: npt.NDArray[Any], target: np.dtype[Any]) -> None:
    info = np.iinfo(target)
    if source.dtype.kind in "iu":
        low, high = (int(source.min()), int(source.max())) if source.size else (0, 0)
        if low < info.min or high > info.max:
            raise DatasetError(_out_of_range(low if low < info.min else high, target, info))
        return
    if not np.isfinite(source).all():
        raise DatasetError(f"the samples hold NaN or infinite values; the model's {target} input cannot take them")
    fractional = source != np.trunc(source)
    if fractional.any():
        value = float(source[fractional].flat[0])
        raise DatasetError(
            f"the model's input is {target} but the samples hold fractional values (e.g. {value:g}), which the"
            f" conversion would truncate; {_INTEGER_ADVICE}"
        )
    low_f, high_f = float(source.min()), float(source.max())
    if low_f < info.min or high_f > info.max:
        raise DatasetError(_out_of_range(low_f if low_f < info.min else high_f, target, info))


def _out_of_range(value: float, target: np.dtype[Any], info: np.iinfo[Any]) -> str:
    return (
        f"the model's input is {target} ({info.min}..{info.max}) but the samples hold {value:g}, which the"
        f" conversion would wrap round; {_INTEGER_ADVICE} (preprocess.mean and preprocess.std move values"
        " below 0)"
    )


def _check_no_overflow(source: npt.NDArray[Any], converted: npt.NDArray[Any], target: np.dtype[Any]) -> None:
    became_infinite = np.isfinite(source) & ~np.isfinite(converted)
    if became_infinite.any():
        value = float(source[became_infinite].flat[0])
        raise DatasetError(
            f"the model's input is {target}, which cannot hold the sample value {value:g}; change the spec's"
            " preprocess.scale, mean or std, or store smaller values in the .npz"
        )
