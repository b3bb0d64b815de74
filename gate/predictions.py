"""The predictions table: what one inference pass over a labelled set produced, per sample.

Every number of a verdict (metrics, rules, reports, the champion comparison) is computed
from this table, so the model runs once per (model, dataset, provider, runtime) and the
table can be kept (the results cache, :mod:`gate.cache`) and exported
(:func:`write_predictions`) for analysis outside gate.

Columns, one row per sample, in dataset order:

* ``sample_id``: the sample's path relative to the set's root, or ``x[i]`` for ``.npz``;
* ``label`` / ``predicted``: class indices (exported as class names);
* ``confidence``: the probability of the predicted class (:func:`probabilities`);
* ``top_k``: the k = min(5, K) most probable classes, most probable first, with their
  probabilities (a tie goes to the lower class index, as ``argmax`` does, so the first
  entry is always ``predicted`` / ``confidence``);
* ``metadata``: named string columns describing each sample (camera, site...), from the
  dataset's manifest columns or metadata table (:mod:`gate.datasets.metadata`); empty
  for a set without metadata;
* ``label_score``: the probability the model gave each sample's *given* label, which the
  top k omits whenever the label ranks below k; confident learning
  (:mod:`gate.heldout.label_issues`) needs it for every sample. The engines fill it; a
  table built without it (older callers) has ``None``, and the held-out audit then reads
  the label's probability from the top k where it is ranked and treats it as 0 elsewhere.
  It stays out of the exported files, whose columns are unchanged.

Exported files (``.csv``, or ``.parquet`` when pyarrow is installed) hold the columns
``sample_id, label, predicted, confidence, top_k``, then ``top1_class, top1_score, ...,
topk_class, topk_score`` (the same ranking spread over plain columns, which every tool
filters and groups without parsing), then the metadata columns. In Parquet ``top_k`` is a
``list<struct<class: string, score: float>>``; in CSV it is a JSON array of ``[class,
score]`` pairs.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from gate.atomic import atomic_file
from gate.errors import RequestError

if TYPE_CHECKING:
    from gate.metrics import ClassificationMetrics

__all__ = [
    "TOP_K",
    "PredictionTable",
    "check_predictions_path",
    "probabilities",
    "ranked",
    "top_k",
    "write_predictions",
]

#: How many of the most probable classes the table keeps per sample (fewer when K is smaller).
TOP_K = 5
#: Export formats by file suffix.
FORMATS = (".csv", ".parquet")


def probabilities(y: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Each row of scores as probabilities.

    A row that already is a probability distribution (no negative value, summing to 1
    within 1e-3) is taken as it is; any other row is read as logits and goes through a
    softmax. Deciding per row keeps the result independent of how samples are batched.
    """
    z = np.asarray(y, dtype=np.float64)
    is_prob = (z.min(axis=1) >= 0.0) & (np.abs(z.sum(axis=1) - 1.0) <= 1e-3)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    softmax = e / e.sum(axis=1, keepdims=True)
    out: npt.NDArray[np.float64] = np.where(is_prob[:, None], z, softmax)
    return out


def top_k(y: npt.NDArray[Any], k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The ``k`` highest-scoring classes of each row, best first, and their probabilities.

    Ranked by the raw scores with ``argmax`` repeated, so a tie goes to the lower class
    index exactly as the predicted class does; ``k`` passes over the row cost less than
    sorting every class when K is large.
    """
    classes, picked, _ = ranked(y, k)
    return classes, picked


def ranked(
    y: npt.NDArray[Any], k: int, labels: npt.NDArray[np.int64] | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
    """:func:`top_k`, and, when ``labels`` (one class index per row) are given, the
    probability of each row's label, from the same probabilities (computed once)."""
    scores = np.array(y, dtype=np.float64)  # a copy: ranked entries are masked below
    probs = probabilities(scores)
    rows = np.arange(len(scores))
    classes = np.empty((len(scores), k), dtype=np.int64)
    for rank in range(k):
        best = np.argmax(scores, axis=1)
        classes[:, rank] = best
        scores[rows, best] = -np.inf
    picked = np.clip(probs[rows[:, None], classes], 0.0, 1.0).astype(np.float32)
    given = None if labels is None else np.clip(probs[rows, labels], 0.0, 1.0).astype(np.float32)
    return classes, picked, given


@dataclass(frozen=True)
class PredictionTable:
    """Per-sample results of one model on one labelled set (see the module docstring)."""

    classes: tuple[str, ...]
    sample_id: npt.NDArray[np.str_]
    label: npt.NDArray[np.int64]
    predicted: npt.NDArray[np.int64]
    confidence: npt.NDArray[np.float32]
    top_k_class: npt.NDArray[np.int64]  # (N, k) class indices, most probable first
    top_k_score: npt.NDArray[np.float32]  # (N, k) their probabilities
    metadata: Mapping[str, npt.NDArray[np.str_]] = field(default_factory=dict)
    label_score: npt.NDArray[np.float32] | None = None  # (N,) the probability of the given label

    def __post_init__(self) -> None:
        n, k = len(self.label), self.top_k_class.shape[1] if self.top_k_class.ndim == 2 else -1
        given = () if self.label_score is None else (self.label_score,)
        columns = (self.sample_id, self.predicted, self.confidence, *given, *self.metadata.values())
        if any(len(c) != n for c in columns) or self.top_k_class.shape != (n, k) or self.top_k_score.shape != (n, k):
            raise ValueError(f"prediction table columns of unequal length (expected {n} rows of top {k})")

    def __len__(self) -> int:
        return len(self.label)

    @property
    def correct(self) -> npt.NDArray[np.bool_]:
        out: npt.NDArray[np.bool_] = self.label == self.predicted
        return out

    def metrics(self) -> ClassificationMetrics:
        """Every metric of the verdict, from this table alone."""
        from gate.metrics import ClassificationMetrics

        return ClassificationMetrics.from_predictions(
            self.label, self.predicted, self.classes, self.confidence, top_k_class=self.top_k_class
        )

    def rows(self) -> Iterator[dict[str, Any]]:
        """The exported rows: class names, plain Python values, ``top_k`` as (class, score) pairs."""
        names = np.asarray(self.classes, dtype=object)
        label, predicted, top = names[self.label], names[self.predicted], names[self.top_k_class]
        scores = self.top_k_score.tolist()
        confidence = self.confidence.tolist()
        meta = {name: column.tolist() for name, column in self.metadata.items()}
        for i, sid in enumerate(self.sample_id.tolist()):
            pairs = list(zip(top[i].tolist(), scores[i], strict=True))
            row: dict[str, Any] = {
                "sample_id": sid,
                "label": label[i],
                "predicted": predicted[i],
                "confidence": confidence[i],
                "top_k": pairs,
            }
            for rank, (cls, score) in enumerate(pairs, start=1):
                row[f"top{rank}_class"], row[f"top{rank}_score"] = cls, score
            row.update({name: values[i] for name, values in meta.items()})
            yield row

    def column_names(self) -> list[str]:
        ranked = [f"top{r}_{part}" for r in range(1, self.top_k_class.shape[1] + 1) for part in ("class", "score")]
        return ["sample_id", "label", "predicted", "confidence", "top_k", *ranked, *self.metadata]


def build_table(
    *,
    classes: Sequence[str],
    sample_ids: Sequence[str],
    labels: npt.ArrayLike,
    predicted: npt.NDArray[np.int64],
    confidence: npt.NDArray[np.float32],
    top_class: npt.NDArray[np.int64],
    top_score: npt.NDArray[np.float32],
    metadata: Mapping[str, npt.NDArray[np.str_]] | None = None,
    label_score: npt.NDArray[np.float32] | None = None,
) -> PredictionTable:
    """A table from a dataset's facts (classes, ids, labels) and a model's outputs."""
    return PredictionTable(
        classes=tuple(str(c) for c in classes),
        sample_id=np.asarray(list(sample_ids), dtype=np.str_),
        label=np.asarray(labels, dtype=np.int64),
        predicted=predicted,
        confidence=confidence,
        top_k_class=top_class,
        top_k_score=top_score,
        metadata=dict(metadata or {}),
        label_score=label_score,
    )


def check_predictions_path(path: str | os.PathLike[str]) -> Path:
    """``path`` if gate can write predictions there (a known suffix, its library installed),
    else a RequestError naming the file and what is missing."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in FORMATS:
        raise RequestError(
            f"predictions file {target}: unknown format '{target.suffix or '(no suffix)'}'; use .csv or .parquet"
        )
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as e:
            raise RequestError(
                f"predictions file {target}: writing Parquet needs the 'pyarrow' package, which is not installed"
                " (pip install 'gate[parquet]'), or write .csv"
            ) from e
    return target


def write_predictions(table: PredictionTable, path: str | os.PathLike[str]) -> None:
    """Write ``table`` to ``path`` (.csv or .parquet), whole or not at all."""
    target = check_predictions_path(path)
    data = _csv_bytes(table) if target.suffix.lower() == ".csv" else _parquet_bytes(table)
    with atomic_file(target, fsync=True, mode=0o644) as f:
        f.write(data)


def _csv_bytes(table: PredictionTable) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=table.column_names(), lineterminator="\n")
    writer.writeheader()
    for row in table.rows():
        row["top_k"] = json.dumps([[cls, score] for cls, score in row["top_k"]])
        writer.writerow(row)
    return text.getvalue().encode("utf-8")


def _parquet_bytes(table: PredictionTable) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = np.asarray(table.classes, dtype=object)
    top_names = names[table.top_k_class]
    entry = pa.struct([("class", pa.string()), ("score", pa.float32())])
    top_k = [
        [{"class": c, "score": s} for c, s in zip(cs, ss, strict=True)]
        for cs, ss in zip(top_names.tolist(), table.top_k_score.tolist(), strict=True)
    ]
    columns: dict[str, Any] = {
        "sample_id": pa.array(table.sample_id.tolist(), pa.string()),
        "label": pa.array(names[table.label].tolist(), pa.string()),
        "predicted": pa.array(names[table.predicted].tolist(), pa.string()),
        "confidence": pa.array(table.confidence, pa.float32()),
        "top_k": pa.array(top_k, pa.list_(entry)),
    }
    for rank in range(table.top_k_class.shape[1]):
        columns[f"top{rank + 1}_class"] = pa.array(top_names[:, rank].tolist(), pa.string())
        columns[f"top{rank + 1}_score"] = pa.array(table.top_k_score[:, rank], pa.float32())
    for name, values in table.metadata.items():
        columns[name] = pa.array(values.tolist(), pa.string())
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()
