"""Sample metadata: named string columns that describe each sample (camera, site, device...).

Where it comes from:

* a CSV/JSONL manifest: every column (key) beyond ``path`` and ``label``;
* an ImageFolder or ``.npz`` set: a sidecar table named by the spec's ``metadata:``
  field, a ``.csv`` or ``.jsonl`` file keyed by ``path`` (the sample's path relative to
  the set's root) for images or ``index`` (the position in ``x``) for ``.npz``.

Every value is a string. A value that is absent (an empty CSV field, a JSON ``null``, a
key a JSONL row lacks, a sample the sidecar does not list) is :data:`MISSING`, a value of
its own: slices keep those samples rather than drop them without a word.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gate.datasets.spec import read_text
from gate.errors import DatasetError

__all__ = ["MISSING", "column_counts", "column_names", "metadata_columns", "read_sidecar"]

#: The value of a sample whose metadata lacks the column.
MISSING = "<missing>"
#: The sidecar's key column for each kind of set.
KEYS = {"images": "path", "npz": "index"}


def metadata_columns(records: Sequence[Mapping[str, str]] | None) -> dict[str, npt.NDArray[np.str_]]:
    """Per-sample records as named columns (in first-seen order), absent values as MISSING."""
    if not records:
        return {}
    return {
        name: np.asarray([record.get(name) or MISSING for record in records], dtype=np.str_)
        for name in column_names(records)
    }


def column_names(records: Sequence[Mapping[str, str]] | None) -> list[str]:
    """The metadata columns of a set, in first-seen order."""
    return list(dict.fromkeys(name for record in records or () for name in record))


def column_counts(columns: Mapping[str, npt.NDArray[np.str_]]) -> dict[str, dict[str, int]]:
    """Each column's values and how many samples have each, most common first."""
    out: dict[str, dict[str, int]] = {}
    for name, values in columns.items():
        uniq, counts = np.unique(values, return_counts=True)
        order = sorted(range(len(uniq)), key=lambda i: (-int(counts[i]), str(uniq[i])))
        out[name] = {str(uniq[i]): int(counts[i]) for i in order}
    return out


def read_sidecar(
    path: Path, kind: str, sample_ids: Sequence[str], *, known: Sequence[str] = ()
) -> list[dict[str, str]]:
    """The metadata of each sample of a set (in sample order) from the sidecar table ``path``.

    ``kind`` is ``images`` (rows keyed by ``path``) or ``npz`` (keyed by ``index``);
    ``sample_ids`` are the set's ids in order (relative paths, or ``x[i]``); ``known``
    are keys the source held but the set left out (hidden files, repeats), which a row
    may name. A key that names no sample, a key given twice or a table without its key
    column is a DatasetError naming the file and line; a sample without a row gets
    MISSING in every column.
    """
    key = KEYS[kind]
    rows = _rows(path)
    position = {sid: i for i, sid in enumerate(sample_ids)}
    out: list[dict[str, str]] = [{} for _ in sample_ids]
    seen: dict[str, int] = {}
    for line, row in rows:
        if key not in row:
            raise DatasetError(f"metadata table {path}, line {line}: no '{key}' column to say which sample it is about")
        raw = row.pop(key)
        sid = raw if kind == "images" else _index_id(path, line, raw)
        if sid in seen:
            raise DatasetError(f"metadata table {path}, line {line}: {key} {raw!r} is also on line {seen[sid]}")
        seen[sid] = line
        if sid in position:
            out[position[sid]] = row
        elif sid not in known:
            raise DatasetError(f"metadata table {path}, line {line}: {key} {raw!r} is not a sample of the set")
    return out


def _index_id(path: Path, line: int, raw: str) -> str:
    try:
        index = int(raw)
    except ValueError:
        index = -1
    if index < 0 or str(index) != raw.strip():
        raise DatasetError(f"metadata table {path}, line {line}: index {raw!r} is not a sample index (0, 1, 2...)")
    return f"x[{index}]"


def _rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise DatasetError(f"metadata table {path}: unknown format '{path.suffix}'; use .csv or .jsonl")
    text = read_text(path, "metadata table", encoding="utf-8-sig")
    rows = list(_csv_rows(path, text) if suffix == ".csv" else _jsonl_rows(path, text))
    if not rows:
        raise DatasetError(f"metadata table {path} has no rows")
    return rows


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise DatasetError(f"metadata table {path} is empty; it needs a header")
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise DatasetError(f"metadata table {path}: header repeats column(s) {dupes}")
        for values in reader:
            if not values:
                continue
            if len(values) != len(header):
                raise DatasetError(
                    f"metadata table {path}, line {reader.line_num}: {len(values)} field(s) but the header has"
                    f" {len(header)}"
                )
            yield reader.line_num, dict(zip(header, values, strict=True))
    except csv.Error as exc:
        raise DatasetError(f"metadata table {path}, line {reader.line_num}: {exc}") from exc


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, str]]]:
    for line, obj in json_objects(text, f"metadata table {path}"):
        yield line, {str(k): text_value(v) for k, v in obj.items()}


def json_objects(text: str, where: str) -> Iterator[tuple[int, dict[str, object]]]:
    """The JSON object on each non-blank line of ``text`` with its line number; anything
    else is a DatasetError naming ``where`` (e.g. ``manifest PATH``) and the line."""
    # Split on "\n" only: str.splitlines() would also split on U+2028 and friends, which
    # JSON allows unescaped inside strings.
    for line, content in enumerate(text.split("\n"), start=1):
        if not content.strip():
            continue
        try:
            obj = json.loads(content)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}, line {line}: malformed JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise DatasetError(f"{where}, line {line}: expected a JSON object, got {type(obj).__name__}")
        yield line, obj


def text_value(value: object) -> str:
    """A JSON value as metadata text: strings as they are, null as empty (MISSING), the rest as JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
