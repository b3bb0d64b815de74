"""The rules that judge subgroups of the set (slices of its metadata): ``per_slice``
(a floor in every slice, or every class inside every slice) and ``slice_gap`` (the worst
slice against the best one or the whole set). Both read the candidate's predictions
table; the counts and statistics come from :mod:`gate.slices`.

With ``confidence``, a ``per_slice`` cell fails only when its counts show it below the
floor (the Wilson interval lies wholly under it), so many small slices do not raise false
alarms by chance alone; ``correction`` widens each interval for the number of cells the
rule checks (Bonferroni, or Holm's step-down), which holds the chance of any false alarm
in the family to 1 − confidence. See docs/slices.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BeforeValidator, Field

from gate.metrics import PER_CLASS_METRICS
from gate.policy.base import Count, Flag, Number, Rule, Text, in_range, register, suggest
from gate.policy.bounds import TOLERANCE, at_least, at_most, fmt, fmt_vs
from gate.policy.context import RuleContext
from gate.predictions import PredictionTable
from gate.slices import (
    SLICE_METRICS,
    SliceError,
    SliceTable,
    adjust_pvalues,
    below_floor_pvalue,
    bin_labels,
    cell_confidence,
    column_names,
    slice_table,
    slices_section,
)
from gate.stats import wilson_interval
from gate.verdict import ClassCheck, RuleResult, Status

#: Most cells a failing rule's message lists (the verdict's ``classes`` has them all).
LISTED = 10
#: The support a slice needs to be listed among the weakest when no rule sets min_support
#: (the usual minimum for a proportion to mean anything, as in the default policy).
WEAKEST_SUPPORT = 30


def _columns(value: Any) -> Any:
    """``slice: camera`` is ``slice: [camera]``."""
    return [value] if isinstance(value, str) else value


class SliceRule(Rule):
    """Fields and duties the slice rules share: which columns, which metric, binning, support."""

    slice: Annotated[list[Text], BeforeValidator(_columns)] = Field(min_length=1, max_length=4)
    metric: Text
    bins: dict[Text, list[Number]] | None = None
    #: cells (or slices) with fewer samples are inconclusive; left out: every cell with a sample counts
    min_support: Count | None = Field(default=None, ge=1, le=1 << 53)

    def problems(self) -> list[str]:
        known = (*PER_CLASS_METRICS, *SLICE_METRICS)
        out = []
        if self.metric not in known:
            out.append(f"unknown metric '{self.metric}'{suggest(self.metric, known)}; known: {', '.join(known)}")
        if len(set(self.slice)) != len(self.slice):
            out.append(f"slice names a column twice: {self.slice}")
        for column, edges in (self.bins or {}).items():
            if column not in self.slice:
                out.append(f"bins for column '{column}', which the slice {self.slice} does not use")
            if not edges or any(b <= a for a, b in itertools.pairwise(edges)):
                out.append(f"bins of column '{column}' must be a non-empty list of increasing numbers, got {edges}")
        return out

    @property
    def support_floor(self) -> int:
        return self.min_support or 1

    @property
    def per_class_metric(self) -> bool:
        return self.metric in PER_CLASS_METRICS

    def check(self, context: RuleContext) -> RuleResult:
        """ERROR when the slices cannot be formed (no table, a column the set lacks, a
        value a bin cannot read); else the rule's judgement of the slice counts."""
        if context.table is None:
            return self.result(Status.ERROR, "slice rules need the predictions table, which this evaluation lacks")
        try:
            st = slice_table(context.table, self.slice, self.bins)
        except SliceError as e:
            return self.result(Status.ERROR, str(e))
        return self.judge(st, context.table)

    def judge(self, st: SliceTable, table: PredictionTable) -> RuleResult:
        raise NotImplementedError


@dataclass(frozen=True)
class Cell:
    """One checked value: a slice (global metric) or a class inside a slice."""

    name: str  # "camera=b, otter" or "camera=b"
    value: float | None
    num: int
    den: int
    support: int  # samples of the class in the slice (or of the slice)
    where: str  # the slice alone: "camera=b"
    class_name: str = ""  # the class, for a per-class metric (a name may hold ", ")

    def counts(self, metric: str) -> str:
        if metric in ("balanced_accuracy", "macro_f1"):
            return f"{self.support} samples"
        return f"{self.num}/{self.den}"


def cells(st: SliceTable, metric: str) -> list[Cell]:
    """Every cell with samples: each class in each slice, or each slice."""
    out = []
    if metric in PER_CLASS_METRICS:
        values = st.class_values(metric)
        num, den = st.class_counts(metric)
        for v in range(len(st)):
            for k, name in enumerate(st.classes):
                if st.support[v, k] > 0:
                    value = None if den[v, k] == 0 else float(values[v, k])
                    where = st.label(v)
                    counts = int(num[v, k]), int(den[v, k]), int(st.support[v, k])
                    out.append(Cell(f"{where}, {name}", value, *counts, where=where, class_name=name))
        return out
    values = st.slice_values(metric)
    hits, samples = st.tp.sum(axis=1), st.samples
    for v in range(len(st)):
        if samples[v] > 0:
            n = int(samples[v])
            out.append(Cell(st.label(v), float(values[v]), int(hits[v]), n, n, where=st.label(v)))
    return out


def _listed(messages: Sequence[str]) -> str:
    shown = "; ".join(messages[:LISTED])
    return shown + (f"; and {len(messages) - LISTED} more" if len(messages) > LISTED else "")


@register
class PerSliceRule(SliceRule):
    """A floor in every slice of a metadata column (or crossing of columns)."""

    type: Literal["per_slice"] = "per_slice"
    per_class: Flag | None = None
    min: Number
    #: check each cell against this two-sided Wilson interval (fail: wholly below the floor)
    confidence: Number | None = Field(default=None, gt=0.0, lt=1.0)
    correction: Literal["none", "bonferroni", "holm"] = "none"
    catches: ClassVar[str] = "a camera, site or device (a slice of the metadata) where the model falls short"

    def problems(self) -> list[str]:
        out = super().problems() + in_range("min", self.min, 0.0, 1.0)
        if self.per_class is not None and self.per_class != self.per_class_metric:
            kind = (
                "a per-class metric: per_class must be true"
                if self.per_class_metric
                else ("a metric of the whole slice: per_class must be false (or left out)")
            )
            out.append(f"{self.metric} is {kind}")
        if self.confidence is not None and self.metric not in ("recall", "precision", "accuracy"):
            out.append(
                f"`confidence` applies to proportions of counts (recall, precision, accuracy), not {self.metric}"
            )
        if self.correction != "none" and self.confidence is None:
            out.append(f"correction {self.correction} adjusts confidence intervals: give `confidence` too")
        return out

    def vacuous(self) -> str | None:
        if self.min <= TOLERANCE:
            return f"min 0: no {self.metric} is below 0"
        return None

    def judge(self, st: SliceTable, table: PredictionTable) -> RuleResult:
        all_cells = cells(st, self.metric)
        short = [c for c in all_cells if c.support < self.support_floor]
        family = [c for c in all_cells if c.support >= self.support_floor]
        checks = [self._short(c) for c in short] + self._judge(family)
        threshold: dict[str, Any] = {"min": self.min, "min_support": self.support_floor}
        if self.confidence is not None:
            threshold |= {"confidence": self.confidence, "correction": self.correction}
        details = {"slice": st.name, "slices": len(st), "cells": len(all_cells), "family": len(family)}
        failed = [c.message for c in checks if c.status is Status.FAIL]
        unsure = [c.message for c in checks if c.status is Status.INCONCLUSIVE]
        if failed:
            return self.result(Status.FAIL, _listed(failed), threshold=threshold, classes=checks, details=details)
        if unsure or not checks:  # no cell at all is no evidence, never a pass
            text = _listed(unsure) if unsure else f"not enough evidence: no slice of {self.slice} has samples"
            return self.result(Status.INCONCLUSIVE, text, threshold=threshold, classes=checks, details=details)
        return self.result(Status.PASS, self._passed(checks), threshold=threshold, classes=checks, details=details)

    def _short(self, c: Cell) -> ClassCheck:
        text = f"{c.name}: not enough evidence: {c.support} samples < {self.support_floor}"
        return ClassCheck(c.name, Status.INCONCLUSIVE, c.value, self.min, c.num, c.den, text)

    def _passed(self, checks: list[ClassCheck]) -> str:
        lowest = min(checks, key=lambda c: c.observed if c.observed is not None else 0.0)
        return f"all {len(checks)} cells of {self.slice} meet the {self.metric} floor; lowest: {lowest.message}"

    def _judge(self, family: list[Cell]) -> list[ClassCheck]:
        if self.confidence is None:
            return [self._point(c) for c in family]
        pvalues = [below_floor_pvalue(c.num, c.den, self.min) for c in family]
        adjusted = adjust_pvalues(pvalues, self.correction)
        rank = {i: r for r, i in enumerate(sorted(range(len(family)), key=lambda i: pvalues[i]))}
        return [self._interval(c, adjusted[i], rank[i], len(family)) for i, c in enumerate(family)]

    def _point(self, c: Cell) -> ClassCheck:
        if c.value is None:
            text = f"{c.name}: {self.metric} undefined (never predicted), floor {fmt(self.min)}"
            return ClassCheck(c.name, Status.FAIL, None, self.min, c.num, c.den, text)
        ok = at_least(c.value, self.min)
        v, f = fmt_vs(c.value, self.min)
        text = f"{c.name}: {self.metric} {v} ({c.counts(self.metric)}) {'>=' if ok else '<'} {f}"
        return ClassCheck(c.name, Status.PASS if ok else Status.FAIL, c.value, self.min, c.num, c.den, text)

    def _interval(self, c: Cell, adjusted: float, rank: int, m: int) -> ClassCheck:
        assert self.confidence is not None
        point = self._point(c)
        if c.value is None:
            return point
        level = cell_confidence(self.confidence, self.correction, m, rank)
        low, high = wilson_interval(c.num, c.den, level) or (0.0, 1.0)
        below = adjusted <= 1.0 - self.confidence
        which = f"{level:.2%}".rstrip("0").rstrip(".") if self.correction != "none" else f"{self.confidence:.0%}"
        how = "" if self.correction == "none" else f" ({self.confidence:.0%} {self.correction}-corrected for {m} cells)"
        interval = f"{which}{how} interval [{fmt(low)}, {fmt(high)}]"
        verdict = "wholly below the floor" if below else "reaches the floor"
        text = f"{point.message}; {interval} {verdict}"
        return ClassCheck(c.name, Status.FAIL if below else Status.PASS, c.value, self.min, c.num, c.den, text)


@register
class SliceGapRule(SliceRule):
    """The worst slice may trail the best slice (or the whole set) by at most ``max_gap``."""

    type: Literal["slice_gap"] = "slice_gap"
    max_gap: Number = Field(ge=0.0, le=1.0)
    against: Literal["best", "all"] = "best"
    catches: ClassVar[str] = "one slice of the metadata served much worse than the others"

    def vacuous(self) -> str | None:
        if at_least(self.max_gap, 1.0):
            return "max_gap 1: no two values in [0, 1] are further apart"
        return None

    def judge(self, st: SliceTable, table: PredictionTable) -> RuleResult:
        groups = _by_class(cells(st, self.metric), st) if self.per_class_metric else {"": cells(st, self.metric)}
        checks = [self._gap(name, group, table) for name, group in groups.items()]
        threshold = {"max_gap": self.max_gap, "against": self.against, "min_support": self.support_floor}
        details = {"slice": st.name, "slices": len(st)}
        classes = checks if self.per_class_metric else ()
        failed = [c.message for c in checks if c.status is Status.FAIL]
        unsure = [c.message for c in checks if c.status is Status.INCONCLUSIVE]
        if failed or unsure:
            status = Status.FAIL if failed else Status.INCONCLUSIVE
            return self.result(status, _listed(failed or unsure), threshold=threshold, classes=classes, details=details)
        widest = max(checks, key=lambda c: c.observed or 0.0)
        observed = widest.observed
        return self.result(
            Status.PASS, widest.message, observed=observed, threshold=threshold, classes=classes, details=details
        )

    def _gap(self, name: str, group: list[Cell], table: PredictionTable) -> ClassCheck:
        head = f"{name}: " if name else ""
        usable = [c for c in group if c.support >= self.support_floor and c.value is not None]
        if len(usable) < (2 if self.against == "best" else 1):
            need = "two slices" if self.against == "best" else "one slice"
            text = f"{head}{self.metric}: not {need} of {self.slice} with >= {self.support_floor} samples"
            return ClassCheck(name or self.metric, Status.INCONCLUSIVE, None, self.max_gap, message=text)
        worst = min(usable, key=lambda c: c.value or 0.0)  # the first of equals, in value order
        reference, where = self._reference(name, usable, table)
        gap = reference - (worst.value or 0.0)
        ok = at_most(gap, self.max_gap)
        g, t = fmt_vs(gap, self.max_gap)
        text = (
            f"{head}{self.metric} {fmt(worst.value)} at {worst.where} ({worst.counts(self.metric)})"
            f" vs {fmt(reference)} {where}: gap {g} {'<=' if ok else '>'} {t}"
        )
        return ClassCheck(name or self.metric, Status.PASS if ok else Status.FAIL, gap, self.max_gap, message=text)

    def _reference(self, name: str, usable: list[Cell], table: PredictionTable) -> tuple[float, str]:
        if self.against == "best":
            best = max(usable, key=lambda c: c.value or 0.0)
            return best.value or 0.0, f"at {best.where} ({best.counts(self.metric)})"
        metrics = table.metrics()
        if name:
            m = metrics.class_metrics(name)
            num, den = m.counts(self.metric)
            return m.value(self.metric) or 0.0, f"on the whole set ({num}/{den})"
        return metrics.value(self.metric) or 0.0, f"on the whole set ({metrics.samples} samples)"


def _by_class(found: list[Cell], st: SliceTable) -> dict[str, list[Cell]]:
    groups: dict[str, list[Cell]] = {name: [] for name in st.classes}
    for c in found:
        groups[c.class_name].append(c)
    return {name: group for name, group in groups.items() if group}


def slice_columns(rules: Sequence[Rule]) -> list[str]:
    """The metadata columns a policy's slice rules read."""
    return list(dict.fromkeys(col for r in rules if isinstance(r, SliceRule) for col in r.slice))


def verdict_slices(table: PredictionTable, rules: Sequence[Rule]) -> dict[str, Any]:
    """``{"slices": ...}`` for the verdict's metrics when the set has metadata (else ``{}``):
    the weakest slices ranked by the first slice rule's metric and support floor, or by
    accuracy among slices of 30 samples or more when no rule looks at slices (see
    :func:`gate.slices.slices_section`)."""
    if not table.metadata:
        return {}
    first = next((r for r in rules if isinstance(r, SliceRule)), None)
    metric = first.metric if first is not None else "accuracy"
    support = first.min_support if first is not None and first.min_support is not None else WEAKEST_SUPPORT
    return {"slices": slices_section(table, metric=metric, min_support=support, guarded=slice_columns(rules))}


def slice_problems(rules: Sequence[Rule], columns: Mapping[str, npt.NDArray[np.str_]]) -> list[str]:
    """A problem per slice rule that names a column the set lacks or bins a value that is
    not a number: checked on the dataset's metadata before any inference."""
    have = column_names(columns)
    out = []
    for rule in (r for r in rules if isinstance(r, SliceRule)):
        head = f"rule '{rule.id}' ({rule.type})"
        for col in rule.slice:
            if col not in columns:
                out.append(f"{head}: metadata column '{col}' does not exist; the set's columns: {have}")
            elif rule.bins and col in rule.bins:
                try:
                    bin_labels(columns[col], rule.bins[col], col)
                except SliceError as e:
                    out.append(f"{head}: {e}")
    return out
