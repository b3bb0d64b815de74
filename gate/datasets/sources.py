"""Readers for the three dataset source formats: ``.npz``, ImageFolder and manifests.

Each reader validates its source completely (structure, labels, classes, paths) and
returns plain data: :class:`NpzContent` for arrays, :class:`ImageListing` for image
files. Reading pixels and hashing happen in :mod:`gate.datasets.dataset`. Every
problem is a :class:`~gate.errors.DatasetError` that names the file, line, label or
sample at fault.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from gate.datasets.images import IMAGE_EXTENSIONS
from gate.datasets.metadata import json_objects, text_value
from gate.datasets.spec import class_name, read_text, repeated
from gate.datasets.walk import Walk, walk_images
from gate.errors import DatasetError

#: Suffixes (lower case) read as manifests.
MANIFEST_SUFFIXES: frozenset[str] = frozenset({".csv", ".jsonl"})

# Integer labels without class names are numbered 0..max(y); beyond this many classes
# that is almost certainly a wrong array, not a real class count.
_MAX_UNNAMED_CLASSES = 100_000
# Upper bound on the bytes converted at once while scanning ``x`` for NaN/Inf, so a
# large array is checked without a full-size temporary.
_CHECK_CHUNK_BYTES = 1 << 26


@dataclass(frozen=True)
class NpzContent:
    """Validated arrays of an ``.npz`` source."""

    #: Samples as stored in the file (float64 is converted per batch, not here).
    x: npt.NDArray[Any]
    #: Labels as stored in the file (integers or names), kept for hashing.
    y: npt.NDArray[Any]
    #: Label ids into :attr:`classes`.
    labels: npt.NDArray[np.int64]
    classes: list[str]

    @property
    def model_dtype(self) -> np.dtype[Any]:
        """dtype of the tensors handed to the model (float64 becomes float32)."""
        return np.dtype(np.float32) if self.x.dtype == np.float64 else self.x.dtype


@dataclass(frozen=True)
class ImageListing:
    """Validated list of image files with their labels, in sample order."""

    #: Directory that :attr:`sample_ids` are relative to.
    root: Path
    classes: list[str]
    #: Absolute path of each sample's file.
    files: list[Path]
    #: Each file's path relative to :attr:`root`, with ``/`` separators.
    sample_ids: list[str]
    labels: list[int]
    #: Manifests: the extra columns/keys of each row; ImageFolder: ``None``.
    metadata: list[dict[str, str]] | None
    #: ImageFolder: hidden files and folders that were skipped (relative paths, sorted).
    hidden: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- npz


def read_npz(path: Path, spec_classes: list[str] | None) -> NpzContent:
    """Read and validate an ``.npz`` file with arrays ``x``, ``y`` and optional ``classes``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise DatasetError(f"{path} is a single .npy array, not an .npz archive")
            names = set(data.files)
            missing = [k for k in ("x", "y") if k not in names]
            if missing:
                raise DatasetError(
                    f"{path} lacks array(s) {missing}; an .npz dataset needs 'x' (samples) "
                    f"and 'y' (labels), found {sorted(names)}"
                )
            x = data["x"]
            y = data["y"]
            npz_classes = data["classes"] if "classes" in names else None
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(f"dataset file not found: {path}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        # allow_pickle=False turns object arrays into a ValueError: such a file is
        # refused rather than unpickled.
        raise DatasetError(f"cannot read {path} as an .npz archive: {exc}") from exc

    _check_x(path, x, y)
    file_classes = _npz_class_names(path, npz_classes) if npz_classes is not None else None
    labels, classes = _npz_labels(path, y, _Declared(file=file_classes, spec=spec_classes))
    return NpzContent(x=x, y=y, labels=labels, classes=classes)


def _check_x(path: Path, x: npt.NDArray[Any], y: npt.NDArray[Any]) -> None:
    if x.dtype.kind not in "iuf":
        raise DatasetError(f"{path}: x must be numeric (integer or float), got dtype {x.dtype}")
    if x.ndim < 2:
        raise DatasetError(f"{path}: x must have shape (N, ...) with N samples, got {x.shape}")
    if y.ndim != 1:
        raise DatasetError(f"{path}: y must have shape (N,), got {y.shape}")
    if len(x) != len(y):
        raise DatasetError(f"{path}: x has {len(x)} samples but y has {len(y)} labels")
    if len(x) == 0:
        raise DatasetError(f"{path}: the dataset has no samples")
    if x.dtype.kind != "f":
        return
    per_sample = max(1, int(np.prod(x.shape[1:])) * 8)
    step = max(1, _CHECK_CHUNK_BYTES // per_sample)
    for start in range(0, len(x), step):
        chunk = x[start : start + step]
        _first_non_finite(path, chunk, start, "NaN or infinite values")
        if x.dtype == np.float64:
            # The model gets float32; a finite float64 beyond its range would become
            # infinite on the way.
            with np.errstate(over="ignore"):
                converted = chunk.astype(np.float32)
            _first_non_finite(path, converted, start, "values too large for float32")


def _first_non_finite(path: Path, chunk: npt.NDArray[Any], start: int, what: str) -> None:
    bad = ~np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)
    if bad.any():
        index = start + int(np.argmax(bad))
        raise DatasetError(f"{path}: sample x[{index}] contains {what}")


def _npz_class_names(path: Path, arr: npt.NDArray[Any]) -> list[str]:
    if arr.ndim != 1 or arr.dtype.kind not in "US" or len(arr) == 0:
        raise DatasetError(
            f"{path}: 'classes' must be a non-empty 1-D array of strings, got dtype {arr.dtype} shape {arr.shape}"
        )
    names = _names(path, _as_str_list(path, arr, "classes"), "classes")
    dupes = repeated(names)
    if dupes:
        raise DatasetError(f"{path}: 'classes' has duplicate name(s) {dupes}")
    return names


def _names(path: Path, raw: list[str], what: str) -> list[str]:
    """Class names as gate keeps them (see :func:`class_name`), each distinct one checked once."""
    out: dict[str, str] = {}
    for value in dict.fromkeys(raw):
        try:
            out[value] = class_name(value)
        except ValueError as exc:
            raise DatasetError(f"{path}: '{what}' holds {value!r}: {exc}") from None
    return [out[value] for value in raw]


def _as_str_list(path: Path, arr: npt.NDArray[Any], what: str) -> list[str]:
    if arr.dtype.kind == "S":
        try:
            return [bytes(v).decode("utf-8") for v in arr.tolist()]
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{path}: '{what}' holds bytes that are not UTF-8: {exc}") from exc
    return [str(v) for v in arr.tolist()]


class _Declared(NamedTuple):
    """The class lists an ``.npz`` set declares: its own ``classes`` array and the spec's."""

    file: list[str] | None
    spec: list[str] | None


def _npz_labels(path: Path, y: npt.NDArray[Any], declared: _Declared) -> tuple[npt.NDArray[np.int64], list[str]]:
    """Label ids and the final class list (spec order wins over the file's)."""
    file_classes, spec_classes = declared
    if spec_classes is not None and file_classes is not None and set(spec_classes) != set(file_classes):
        raise DatasetError(
            f"{path}: the spec's classes {spec_classes} and the file's classes {file_classes} are not the same set"
        )
    if y.dtype.kind in "iu":
        return _npz_int_labels(path, y, declared)
    if y.dtype.kind in "US":
        names = np.asarray(_names(path, _as_str_list(path, y, "y"), "y"), dtype=str)
        classes = spec_classes or file_classes or sorted(set(names.tolist()))
        uniq, inverse = np.unique(names, return_inverse=True)
        index = {c: i for i, c in enumerate(classes)}
        ids = np.array([index.get(str(n), -1) for n in uniq], dtype=np.int64)
        labels = ids[inverse.reshape(-1)]
        bad = np.flatnonzero(labels < 0)
        if bad.size:
            i = int(bad[0])
            raise DatasetError(f"{path}: label y[{i}] = {str(names[i])!r} is not one of the classes {classes}")
        return labels.astype(np.int64), list(classes)
    raise DatasetError(f"{path}: y must hold integer class ids or class-name strings, got dtype {y.dtype}")


def _npz_int_labels(path: Path, y: npt.NDArray[Any], declared: _Declared) -> tuple[npt.NDArray[np.int64], list[str]]:
    file_classes, spec_classes = declared
    # Integer labels index the file's classes when it has them, else the spec's.
    indexed = file_classes if file_classes is not None else spec_classes
    limit = len(indexed) if indexed is not None else None
    bad_mask = y < 0 if limit is None else (y < 0) | (y >= limit)
    bad = np.flatnonzero(bad_mask)
    if bad.size:
        i = int(bad[0])
        allowed = "a class id >= 0" if limit is None else f"a class id in [0, {limit})"
        raise DatasetError(f"{path}: label y[{i}] = {int(y[i])} is not {allowed}")
    if indexed is None:
        top = int(np.argmax(y))
        if int(y[top]) >= _MAX_UNNAMED_CLASSES:
            # Naming classes 0..max(y) would build a huge list for a likely mistake.
            raise DatasetError(
                f"{path}: label y[{top}] = {int(y[top])} is too large to number the classes "
                f"0..{int(y[top])}; store a 'classes' array or list the classes in a dataset spec"
            )
        return y.astype(np.int64), [str(i) for i in range(int(y[top]) + 1)]
    labels = y.astype(np.int64)
    if spec_classes is not None and file_classes is not None and spec_classes != file_classes:
        position = {c: i for i, c in enumerate(spec_classes)}
        remap = np.array([position[c] for c in file_classes], dtype=np.int64)
        labels = remap[labels]
    return labels, list(spec_classes if spec_classes is not None else indexed)


# ------------------------------------------------------------------- ImageFolder


def scan_image_folder(root: Path, spec_classes: list[str] | None) -> ImageListing:
    """List ``root/<class>/<image>`` files, sorted by (class index, relative path).

    Links are followed only inside ``root``; hidden files and folders are skipped and
    listed in :attr:`ImageListing.hidden`.
    """
    walk = walk_images(root, links="inside_root")
    _refuse_strays(root, walk)
    folder_of = _class_folders(root, [f for f in walk.folders if "/" not in f])
    if spec_classes is None:
        classes = sorted(folder_of)
    else:
        classes = list(spec_classes)
        missing = [c for c in classes if c not in folder_of]
        if missing:
            raise DatasetError(f"{root}: no folder for class(es) {missing} listed in the spec")
        extra = [folder_of[c] for c in folder_of if c not in classes]
        if extra:
            raise DatasetError(f"{root}: folder(s) {extra} are not classes listed in the spec {classes}")
    if not classes:
        raise DatasetError(f"{root}: no class folders, the dataset has no samples")
    label_of = {folder_of[c]: i for i, c in enumerate(classes)}
    found = sorted(((label_of[rel.split("/", 1)[0]], rel, p) for rel, p in walk.images), key=lambda t: t[:2])
    counts = collections.Counter(label for label, _, _ in found)
    for label, name in enumerate(classes):
        if not counts[label]:
            raise DatasetError(f"{root}: class folder '{folder_of[name]}' has no images")
    return ImageListing(
        root=root,
        classes=classes,
        files=[p for _, _, p in found],
        sample_ids=[rel for _, rel, _ in found],
        labels=[label for label, _, _ in found],
        metadata=None,
        hidden=walk.hidden,
    )


def _refuse_strays(root: Path, walk: Walk) -> None:
    """Files that would be left out of the evaluation without a word are errors."""
    top = [rel for rel, _ in walk.images if "/" not in rel] + [rel for rel in walk.others if "/" not in rel]
    if top:
        # Only class folders belong at the top level.
        raise DatasetError(
            f"{root}: '{min(top)}' is not inside a class folder; an ImageFolder "
            "dataset holds only <class>/<image> files (hidden files are skipped)"
        )
    if walk.irregular:
        raise DatasetError(f"{root}: '{walk.irregular[0]}' is a broken link or not a regular file")
    if walk.others:
        raise DatasetError(
            f"{root}: '{walk.others[0]}' is not an image file (allowed extensions: "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}); remove it or hide it with a leading '.'"
        )


def _class_folders(root: Path, folders: list[str]) -> dict[str, str]:
    """Class name -> folder name; two folders with names that normalise to one class
    name (NFC vs NFD spellings) are an error naming both."""
    folder_of: dict[str, str] = {}
    for folder in folders:
        try:
            name = class_name(folder)
        except ValueError as exc:
            raise DatasetError(f"{root}: class folder {folder!r}: {exc}") from None
        if name in folder_of:
            raise DatasetError(
                f"{root}: class folders {folder_of[name]!a} and {folder!a} are the same class name"
                " written two ways (Unicode NFC and NFD); merge them into one folder"
            )
        folder_of[name] = folder
    return folder_of


# ---------------------------------------------------------------------- manifests


@dataclass(frozen=True)
class _Row:
    line: int
    path: str
    label: str
    metadata: dict[str, str]


def read_manifest(path: Path, spec_classes: list[str] | None) -> ImageListing:
    """Read a ``.csv`` or ``.jsonl`` manifest of ``path``/``label`` rows."""
    text = read_text(path, "manifest", encoding="utf-8-sig")
    rows = list(_csv_rows(path, text) if path.suffix.lower() == ".csv" else _jsonl_rows(path, text))
    if not rows:
        raise DatasetError(f"manifest {path} has no samples")

    root = path.parent.resolve()
    classes = list(spec_classes) if spec_classes is not None else sorted({r.label for r in rows})
    class_index = {c: i for i, c in enumerate(classes)}
    first_line: dict[Path, _Row] = {}
    files: list[Path] = []
    sample_ids: list[str] = []
    labels: list[int] = []
    for row in rows:
        where = f"manifest {path}, line {row.line}"
        if row.label not in class_index:
            raise DatasetError(f"{where}: label {row.label!r} is not one of the classes {classes}")
        file = _manifest_file(root, row, where)
        if file in first_line:
            other = first_line[file]
            raise DatasetError(
                f"{where}: path {row.path!r} is a duplicate of line {other.line} "
                f"({other.path!r}); lines {other.line} and {row.line} name the same file"
            )
        first_line[file] = row
        files.append(file)
        sample_ids.append(Path(os.path.normpath(row.path)).as_posix())
        labels.append(class_index[row.label])
    return ImageListing(
        root=root,
        classes=classes,
        files=files,
        sample_ids=sample_ids,
        labels=labels,
        metadata=[r.metadata for r in rows],
    )


def _manifest_file(root: Path, row: _Row, where: str) -> Path:
    """Resolve a manifest path, refusing anything that leaves the manifest's directory."""
    raw = Path(row.path)
    if raw.is_absolute() or os.path.isabs(row.path):
        raise DatasetError(
            f"{where}: path {row.path!r} is absolute; paths must be relative to the manifest's directory"
        )
    try:
        file = (root / raw).resolve()
    except (OSError, RuntimeError) as exc:
        raise DatasetError(f"{where}: cannot resolve path {row.path!r}: {exc}") from exc
    if not file.is_relative_to(root):
        raise DatasetError(f"{where}: path {row.path!r} resolves to {file}, outside the manifest's directory {root}")
    if not file.exists():
        raise DatasetError(f"{where}: file {row.path!r} not found ({file})")
    if not file.is_file():
        raise DatasetError(f"{where}: {row.path!r} is not a regular file")
    return file


def _csv_rows(path: Path, text: str) -> Iterator[_Row]:
    # newline="" hands line endings to the csv module, which needs them for quoted
    # fields that span lines.
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header_row = next(reader, None)
        if header_row is None:
            raise DatasetError(f"manifest {path} is empty; it needs a header with path,label")
        header = [h.strip() for h in header_row]
        missing = [c for c in ("path", "label") if c not in header]
        if missing:
            raise DatasetError(f"manifest {path}: header {header} lacks column(s) {missing}")
        if len(set(header)) != len(header):
            dupes = sorted({h for h in header if header.count(h) > 1})
            raise DatasetError(f"manifest {path}: header repeats column(s) {dupes}")
        for values in reader:
            line = reader.line_num
            if not values:
                continue
            if len(values) != len(header):
                raise DatasetError(
                    f"manifest {path}, line {line}: {len(values)} field(s) but the header has {len(header)}"
                )
            record = dict(zip(header, values, strict=True))
            yield _row(path, line, record.pop("path"), record.pop("label"), record)
    except csv.Error as exc:
        raise DatasetError(f"manifest {path}, line {reader.line_num}: {exc}") from exc


def _jsonl_rows(path: Path, text: str) -> Iterator[_Row]:
    for line, obj in json_objects(text, f"manifest {path}"):
        for key in ("path", "label"):
            if not isinstance(obj.get(key), str):
                raise DatasetError(
                    f"manifest {path}, line {line}: '{key}' must be a string, got {json.dumps(obj.get(key))}"
                )
        path_value, label_value = str(obj.pop("path")), str(obj.pop("label"))
        # Metadata is kept as text: strings as they are, null as missing, anything else as its JSON.
        meta = {str(k): text_value(v) for k, v in obj.items()}
        yield _row(path, line, path_value, label_value, meta)


def _row(path: Path, line: int, file: str, label: str, meta: dict[str, str]) -> _Row:
    if not file:
        raise DatasetError(f"manifest {path}, line {line}: empty path")
    if not label:
        raise DatasetError(f"manifest {path}, line {line}: empty label")
    try:
        name = class_name(label)
    except ValueError as exc:
        raise DatasetError(f"manifest {path}, line {line}: label {label!r}: {exc}") from None
    return _Row(line=line, path=file, label=name, metadata=meta)
