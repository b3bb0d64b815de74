"""Dataset spec: the validated description of a held-out set and its preprocessing.

A spec is a small YAML document (see ``docs/datasets.md``)::

    name: pets-heldout
    source: data/pets
    classes: [cat, dog, rabbit]
    preprocess: {resize: 256, crop: 224, mean: [0.485, 0.456, 0.406],
                 std: [0.229, 0.224, 0.225], channels: RGB, layout: NCHW}

This module holds the pydantic models (:class:`Preprocess`, :class:`DatasetSpec`) and
:func:`read_spec`, which turns a YAML file into a :class:`DatasetSpec` or raises
:class:`~gate.errors.DatasetError` listing every problem with its field path.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import ConfigDict, Field

from gate.errors import DatasetError

# Strict scalars: YAML gives real ints/floats/strings, and lax coercion would turn
# ``true`` into 1 or ``"3"`` into 3.0 without a word, which hides typos in a spec.
_Float = Annotated[float, Field(strict=True, allow_inf_nan=False)]
_PositiveFloat = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)]
_Name = Annotated[str, Field(strict=True, min_length=1)]

#: Channel count of the tensor each ``channels`` value produces.
CHANNEL_COUNT: dict[str, int] = {"RGB": 3, "BGR": 3, "L": 1}


def _check_size(value: Any) -> Any:
    """Accept a positive int or a ``[height, width]`` pair of positive ints.

    Done by hand rather than by the ``int | tuple`` union so that a bad value yields one
    readable problem instead of one per union member.
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"must be a positive integer, got {value}")
        return value
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        return (int(value[0]), int(value[1]))
    raise ValueError(f"must be a positive integer or a [height, width] pair of positive integers, got {value!r}")


_Size = Annotated[int | tuple[int, int] | None, pydantic.BeforeValidator(_check_size)]


class Preprocess(pydantic.BaseModel):
    """How an image file becomes a model input tensor.

    Steps, in order: convert to ``channels`` (BGR = RGB with the channel axis
    reversed), ``resize``, centre ``crop``, divide by ``scale``, subtract ``mean`` and
    divide by ``std`` per channel, then arrange as ``layout``. ``mean`` and ``std`` are
    in the channel order the model receives (so for BGR the first value is for blue).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: int: the shorter side becomes this and the aspect ratio is kept;
    #: ``[h, w]``: exactly this size.
    resize: _Size = None
    #: Centre crop after resizing; int = square, ``[h, w]`` otherwise.
    crop: _Size = None
    #: Pixel values (0..255) are divided by this before mean/std.
    scale: _PositiveFloat = 255.0
    #: Per channel; a single value applies to every channel.
    mean: list[_Float] = Field(default_factory=lambda: [0.0], min_length=1)
    #: Per channel, every value > 0; a single value applies to every channel.
    std: list[_PositiveFloat] = Field(default_factory=lambda: [1.0], min_length=1)
    #: ``L`` is single-channel greyscale (C = 1).
    channels: Literal["RGB", "BGR", "L"] = "RGB"
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    interpolation: Literal["bilinear", "bicubic", "nearest", "lanczos"] = "bilinear"
    #: Turn each image upright by its EXIF orientation tag before anything else. Off by
    #: default, like PIL's ``Image.open`` and torchvision's ImageFolder loader: the pixels
    #: as stored, which is what a training pipeline built on them fed the model.
    exif_transpose: Annotated[bool, Field(strict=True)] = False
    #: What a transparent pixel becomes: composited over ``black`` (its colour times its
    #: opacity) or ``white``, ``drop`` (the colour stored under it, as PIL's ``convert``
    #: gives) or ``refuse`` (an image with any transparent pixel is an error).
    alpha: Literal["black", "white", "drop", "refuse"] = "black"

    @pydantic.model_validator(mode="after")
    def _per_channel_lengths(self) -> Preprocess:
        n = CHANNEL_COUNT[self.channels]
        for field in ("mean", "std"):
            values: list[float] = getattr(self, field)
            if len(values) not in (1, n):
                choices = "1 value" if n == 1 else f"1 value or {n}"
                raise ValueError(
                    f"{field} has {len(values)} values but channels {self.channels} has {n} channel(s); give {choices}"
                )
        return self

    @property
    def num_channels(self) -> int:
        """Number of channels in the output tensor (1 for ``L``, else 3)."""
        return CHANNEL_COUNT[self.channels]

    def identity(self) -> dict[str, Any]:
        """The fields that identify this preprocessing in a dataset hash.

        Options added after the hash scheme was fixed appear only when they differ from
        their defaults, so the hash of a set that does not use them stays what it was.
        """
        dumped = self.model_dump(mode="json")
        for added in _ADDED_OPTIONS:
            if dumped[added] == Preprocess.model_fields[added].default:
                del dumped[added]
        return dumped


_ADDED_OPTIONS = ("exif_transpose", "alpha")


class DatasetSpec(pydantic.BaseModel):
    """A named held-out set: where its samples are and how to feed them to a model."""

    model_config = ConfigDict(extra="forbid")

    name: _Name
    #: Relative to the spec file's directory, or absolute.
    source: _Name
    #: Fixes the class order (index = label id); non-empty and unique when given.
    classes: list[_Name] | None = None
    #: Images only; an ``.npz`` source with a preprocess section is an error.
    preprocess: Preprocess | None = None
    description: Annotated[str, Field(strict=True)] | None = None
    #: A labelled sample of the training data (ImageFolder, manifest or .npz; relative to
    #: the spec file's directory), with the same classes and preprocessing, for
    #: ``train_test_gap`` rules. It is read only when a rule needs it.
    train_sample: _Name | None = None
    #: Image files with the same bytes (links or copies) under the same label: ``refuse``
    #: (an error listing them) or ``count_once`` (the first in sample order is kept, the
    #: others are listed as skipped). The same bytes under two labels are always an error.
    duplicates: Literal["refuse", "count_once"] = "refuse"
    #: ImageFolder and .npz sets: a .csv/.jsonl table of per-sample metadata keyed by
    #: ``path`` (relative to the set's root) or ``index`` (relative to the spec file's
    #: directory); see docs/slices.md. A manifest's own extra columns are its metadata.
    metadata: _Name | None = None

    @pydantic.field_validator("classes")
    @classmethod
    def _classes_unique(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must not be empty")
        names = [class_name(name) for name in value]
        dupes = repeated(names)
        if dupes:
            raise ValueError(f"duplicate class name(s): {dupes}")
        return names


def class_name(raw: str) -> str:
    """A class name as gate keeps it: NFC-normalised, so that names that look the same
    (a precomposed ``é`` and ``e`` + combining accent) are one class.

    Raises ValueError for a name with leading or trailing whitespace, which is almost
    always a slip in a CSV or YAML file rather than part of the name.
    """
    if raw != raw.strip():
        raise ValueError(f"class name {raw!r} has leading or trailing whitespace; remove it")
    return unicodedata.normalize("NFC", raw)


def repeated(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted."""
    seen: set[str] = set()
    dupes: set[str] = set()
    for name in names:
        if name in seen:
            dupes.add(name)
        seen.add(name)
    return sorted(dupes)


def read_text(path: Path, what: str, *, encoding: str = "utf-8") -> str:
    """The text of ``path``; a missing or unreadable file is a :class:`DatasetError`
    naming it as ``what`` (e.g. ``manifest``)."""
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise DatasetError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {what} {path}: {exc}") from exc


def format_validation_error(exc: pydantic.ValidationError) -> list[str]:
    """One ``field.path: message`` line per problem in a pydantic error."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "string_type" and err["loc"][:1] == ("classes",):
            msg += ' (quote class names that YAML would read as numbers, e.g. "0")'
        problems.append(f"{loc}: {msg}")
    return problems


def read_spec(path: str | os.PathLike[str]) -> DatasetSpec:
    """Read and validate a dataset spec YAML file.

    Raises :class:`DatasetError` when the file is missing or unreadable, is not valid
    YAML, is not a mapping, or breaks the schema (every problem listed, with its field
    path and the file name).
    """
    spec_path = Path(path)
    text = read_text(spec_path, "dataset spec")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DatasetError(f"dataset spec {spec_path} is not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise DatasetError(f"dataset spec {spec_path}: the YAML is nested too deeply") from exc
    except Exception as exc:
        # PyYAML's constructors raise all sorts for values they cannot build
        raise DatasetError(
            f"dataset spec {spec_path}: YAML value that cannot be read: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(raw, dict):
        raise DatasetError(
            f"dataset spec {spec_path} must be a YAML mapping with at least 'name' and "
            f"'source', got {type(raw).__name__}"
        )
    try:
        return DatasetSpec.model_validate(raw)
    except pydantic.ValidationError as exc:
        problems = format_validation_error(exc)
        raise DatasetError(
            f"invalid dataset spec {spec_path} ({len(problems)} problem(s)):\n"
            + "\n".join(f"  - {p}" for p in problems)
        ) from None
