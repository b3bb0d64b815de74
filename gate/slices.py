"""Slices: the candidate's numbers per value of a metadata column (camera, site, lighting),
or per crossing of columns, computed from the predictions table with numpy grouping.

A model can meet every floor on the whole set and still fail one camera. This module
counts, for every slice and class, the samples (``support``), the predictions
(``predicted``) and the hits (``tp``) in one ``bincount`` each, and derives the metrics
from those counts exactly as :mod:`gate.metrics` does for the whole set. It also holds
the statistics that many slices call for: a one-sided score test of "this cell is below
its floor" (the same test as the Wilson interval's upper end) and the family-wise
corrections (Bonferroni, Holm) for the many cells one rule checks.

Numeric columns may be binned (``bins``: ascending edges); a value that is not a number
in a binned column is an error, and :data:`~gate.datasets.metadata.MISSING` stays a value
of its own in every column.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from gate.datasets.metadata import MISSING
from gate.predictions import PredictionTable

__all__ = [
    "SLICE_METRICS",
    "SliceError",
    "SliceTable",
    "adjust_pvalues",
    "below_floor_pvalue",
    "bin_labels",
    "slice_table",
    "slices_section",
]

#: Metrics of a whole slice (the per-class ones, precision, recall and f1, apply per cell).
SLICE_METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "macro_f1")
#: Most values of one column that ``metrics.slices`` lists (a per-sample id would be huge).
MAX_LISTED_VALUES = 200
#: How many weakest slices a verdict lists.
WEAKEST = 5

Correction = Literal["none", "bonferroni", "holm"]


class SliceError(ValueError):
    """A slice that cannot be formed: a column the set lacks, a value a bin cannot read."""


@dataclass(frozen=True)
class SliceTable:
    """Counts per slice (rows, in value order) and class (columns, in class order)."""

    columns: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]  # each slice's value in each column
    classes: tuple[str, ...]
    support: npt.NDArray[np.int64]  # (V, K) samples of class k in slice v
    predicted: npt.NDArray[np.int64]  # (V, K) samples of slice v predicted as k
    tp: npt.NDArray[np.int64]  # (V, K) hits

    def __len__(self) -> int:
        return len(self.values)

    @property
    def name(self) -> str:
        """``camera`` or ``camera x site``."""
        return " x ".join(self.columns)

    def label(self, v: int) -> str:
        """How messages name slice ``v``: ``camera=b`` or ``camera=b, site=x``."""
        return ", ".join(f"{c}={x}" for c, x in zip(self.columns, self.values[v], strict=True))

    @property
    def samples(self) -> npt.NDArray[np.int64]:
        out: npt.NDArray[np.int64] = self.support.sum(axis=1)
        return out

    def class_values(self, metric: str) -> npt.NDArray[np.float64]:
        """(V, K) precision, recall or f1; NaN where undefined."""
        num, den = self.class_counts(metric)
        with np.errstate(invalid="ignore", divide="ignore"):
            out: npt.NDArray[np.float64] = np.where(den > 0, num / np.maximum(den, 1), np.nan)
        return out

    def class_counts(self, metric: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Numerator and denominator of a per-class metric, as ClassMetrics.counts gives them."""
        if metric == "recall":
            return self.tp, self.support
        if metric == "precision":
            return self.tp, self.predicted
        if metric == "f1":
            return 2 * self.tp, self.support + self.predicted
        raise KeyError(metric)

    def slice_values(self, metric: str) -> npt.NDArray[np.float64]:
        """(V,) accuracy, balanced accuracy or macro F1 of each slice; NaN where undefined."""
        if metric == "accuracy":
            n = self.samples
            return np.where(n > 0, self.tp.sum(axis=1) / np.maximum(n, 1), np.nan)
        per_class = self.class_values("recall" if metric == "balanced_accuracy" else "f1")
        defined = ~np.isnan(per_class)
        count = defined.sum(axis=1)
        total = np.where(defined, per_class, 0.0).sum(axis=1)
        out: npt.NDArray[np.float64] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        return out


def column_names(columns: Mapping[str, Any]) -> str:
    """How messages list a set's metadata columns."""
    names = list(columns)
    return ", ".join(names) if names else "none (the set has no metadata)"


def _column(table: PredictionTable, name: str) -> npt.NDArray[np.str_]:
    if name not in table.metadata:
        raise SliceError(f"metadata column '{name}' does not exist; the set's columns: {column_names(table.metadata)}")
    return table.metadata[name]


def bin_labels(values: npt.NDArray[np.str_], edges: Sequence[float], column: str) -> npt.NDArray[np.str_]:
    """Each value as the bin of ``edges`` it falls in: ``< a``, ``[a, b)``, ..., ``>= z``.

    MISSING stays MISSING; any other value that is not a number is a SliceError.
    """
    uniq, inverse = np.unique(values, return_inverse=True)
    names = [f"< {edges[0]:g}"]
    names += [f"[{a:g}, {b:g})" for a, b in itertools.pairwise(edges)]
    names.append(f">= {edges[-1]:g}")
    mapped = []
    for raw in uniq.tolist():
        if raw == MISSING:
            mapped.append(MISSING)
            continue
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if math.isnan(number):
            raise SliceError(f"metadata column '{column}' holds {raw!r}, which is not a number to put in a bin")
        mapped.append(names[int(np.searchsorted(np.asarray(edges), number, side="right"))])
    return np.asarray(mapped, dtype=np.str_)[inverse.reshape(-1)]


def slice_table(
    table: PredictionTable, columns: Sequence[str], bins: Mapping[str, Sequence[float]] | None = None
) -> SliceTable:
    """Counts per slice of ``columns`` (one column, or the crossing of several), every
    combination that occurs in the set being a slice. SliceError for an unknown column."""
    levels: list[npt.NDArray[np.str_]] = []
    codes = np.zeros((len(table), len(columns)), dtype=np.int64)
    for c, name in enumerate(columns):
        values = _column(table, name)
        if bins and name in bins:
            values = bin_labels(values, bins[name], name)
        uniq, inverse = np.unique(values, return_inverse=True)
        codes[:, c] = inverse.reshape(-1)
        levels.append(uniq)
    # unique rows of value indices, not one mixed-radix number: the product of four
    # columns' value counts can pass 2**63 (a per-sample id has as many values as samples)
    present, slice_of = np.unique(codes, axis=0, return_inverse=True)
    slice_of = slice_of.reshape(-1)
    k = len(table.classes)
    v = len(present)
    cell = slice_of * k + table.label
    support = np.bincount(cell, minlength=v * k).reshape(v, k)
    predicted = np.bincount(slice_of * k + table.predicted, minlength=v * k).reshape(v, k)
    hits = np.bincount(cell[table.correct], minlength=v * k).reshape(v, k)
    return SliceTable(
        columns=tuple(columns),
        values=tuple(tuple(str(level[i]) for level, i in zip(levels, row, strict=True)) for row in present.tolist()),
        classes=table.classes,
        support=support.astype(np.int64),
        predicted=predicted.astype(np.int64),
        tp=hits.astype(np.int64),
    )


# -- statistics ------------------------------------------------------------------------


def below_floor_pvalue(successes: int, trials: int, floor: float) -> float:
    """Evidence that a proportion is below ``floor``: twice the one-sided p-value of the
    score test of ``successes / trials`` against ``floor`` (capped at 1).

    It is below ``1 - confidence`` exactly when the two-sided Wilson interval at that
    confidence lies wholly below the floor, so a corrected p-value and a corrected
    interval say the same thing.
    """
    if trials <= 0:
        return 1.0
    p = successes / trials
    if floor >= 1.0:
        return 0.0 if p < 1.0 else 1.0
    if floor <= 0.0:
        return 1.0
    z = (p - floor) / math.sqrt(floor * (1.0 - floor) / trials)
    return min(1.0, math.erfc(-z / math.sqrt(2.0)))  # 2·Φ(z)


def adjust_pvalues(pvalues: Sequence[float], method: Correction) -> list[float]:
    """Family-wise adjusted p-values: Bonferroni (m·p) or Holm's step-down
    (max over the smaller ones of (m − rank)·p), capped at 1; ``none`` leaves them."""
    m = len(pvalues)
    if method == "none":
        return list(pvalues)
    if method == "bonferroni":
        return [min(1.0, m * p) for p in pvalues]
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def cell_confidence(confidence: float, method: Correction, m: int, rank: int) -> float:
    """The confidence of one cell's interval in a family of ``m``: Bonferroni
    1 − α/m; Holm 1 − α/(m − rank), ``rank`` its place by p-value (0 = strongest)."""
    alpha = 1.0 - confidence
    if method == "bonferroni":
        return 1.0 - alpha / max(m, 1)
    if method == "holm":
        return 1.0 - alpha / max(m - rank, 1)
    return confidence


# -- the verdict's metrics.slices --------------------------------------------------------


def _value_entry(st: SliceTable, v: int) -> dict[str, Any]:
    per_class: dict[str, Any] = {}
    values = {m: st.class_values(m)[v] for m in ("precision", "recall", "f1")}
    for k, name in enumerate(st.classes):
        if st.support[v, k] == 0 and st.predicted[v, k] == 0:
            continue
        per_class[name] = {
            "support": int(st.support[v, k]),
            "predicted": int(st.predicted[v, k]),
            "tp": int(st.tp[v, k]),
            **{m: _number(values[m][k]) for m in ("precision", "recall", "f1")},
        }
    return {
        "support": int(st.samples[v]),
        "accuracy": _number(st.slice_values("accuracy")[v]),
        "balanced_accuracy": _number(st.slice_values("balanced_accuracy")[v]),
        "per_class": per_class,
    }


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _column_entry(st: SliceTable) -> dict[str, Any]:
    return {st.values[v][0]: _value_entry(st, v) for v in range(len(st))}


def _weakness(st: SliceTable, metric: str, min_support: int) -> npt.NDArray[np.float64]:
    """Each slice's score: the slice metric, or for a per-class one the value of its weakest
    class among those with at least ``min_support`` samples in the slice."""
    if metric in SLICE_METRICS:
        return st.slice_values(metric)
    values = np.where(st.support >= min_support, st.class_values(metric), np.nan)
    defined = ~np.isnan(values).all(axis=1)
    out: npt.NDArray[np.float64] = np.full(len(st), np.nan)
    out[defined] = np.nanmin(values[defined], axis=1)
    return out


def slices_section(
    table: PredictionTable, *, metric: str = "accuracy", min_support: int = 30, guarded: Sequence[str] = ()
) -> dict[str, Any]:
    """The verdict's ``metrics.slices``: per column, per value, the support, accuracy,
    balanced accuracy and per-class counts and metrics; and the ``weakest`` slices by
    ``metric`` among those with at least ``min_support`` samples, each saying whether a
    rule checks its column (``guarded``). Empty for a set without metadata."""
    if not table.metadata:
        return {}
    columns: dict[str, Any] = {}
    ranked: list[tuple[float, str, str, int]] = []
    for name, values in table.metadata.items():
        distinct = len(np.unique(values))
        if distinct > MAX_LISTED_VALUES:
            # a per-sample id or a raw number: counted, not tabled (its slice × class counts
            # could outgrow the table itself); a rule may still bin or slice it
            columns[name] = {"values_total": distinct, "listed": False}
            continue
        st = slice_table(table, [name])
        columns[name] = _column_entry(st)
        scores = _weakness(st, metric, min_support)
        for v in range(len(st)):
            if st.samples[v] >= min_support and not math.isnan(scores[v]):
                ranked.append((float(scores[v]), name, st.values[v][0], int(st.samples[v])))
    ranked.sort(key=lambda r: (r[0], r[1], r[2]))
    weakest = [
        {
            "slice": f"{c}={x}",
            "column": c,
            "value": x,
            "metric": metric,
            "observed": s,
            "support": n,
            "guarded": c in guarded,
        }
        for s, c, x, n in ranked[:WEAKEST]
    ]
    return {"columns": columns, "weakest": weakest, "weakest_by": {"metric": metric, "min_support": min_support}}
