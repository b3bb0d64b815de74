"""The ``robustness`` rule: a model must stay good enough on corrupted copies of the
held-out images (ImageNet-C's corruptions, :mod:`gate.corruptions`), judged cell by cell
(one corruption at one severity) against a floor, against the same model on clean images,
and against the champion's corruption error (mCE-style).

The evidence is the runs of :class:`~gate.policy.context.RobustnessRun`, one table per
cell; this module also holds the corruption-error arithmetic the verdict's
``metrics.robustness`` reports, so the rule and the verdict agree to the last digit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from gate.corruptions.names import AVAILABLE, NOT_AVAILABLE, SEVERITIES
from gate.metrics import GLOBAL_METRICS, PER_CLASS_METRICS, ClassificationMetrics
from gate.policy.base import Count, Flag, Number, Rule, Text, register, suggest
from gate.policy.bounds import at_least, at_most, fmt, fmt_vs
from gate.policy.context import RobustnessRun, RuleContext
from gate.predictions import PredictionTable
from gate.stats import wilson_interval
from gate.verdict import RuleResult, Status

Cell = tuple[str, int]


def top1_error(table: PredictionTable) -> float:
    """The share of samples the model gets wrong (ImageNet-C's error); 0 for an empty table."""
    return float(1.0 - table.correct.mean()) if len(table) else 0.0


def corruption_errors(
    cells: dict[Cell, PredictionTable], corruptions: Iterable[str], severities: Sequence[int]
) -> dict[str, float]:
    """Each corruption's error summed over ``severities`` (the numerator of ImageNet-C's CE)."""
    return {c: sum(top1_error(cells[(c, s)]) for s in severities) for c in corruptions}


def _ratio(mine: float, theirs: float) -> float:
    """mine / theirs, where 0 / 0 is 1 (both flawless) and x / 0 infinite."""
    if theirs == 0.0:
        return 1.0 if mine == 0.0 else math.inf
    return mine / theirs


def mean_corruption_error(run: RobustnessRun, corruptions: Sequence[str], severities: Sequence[int]) -> dict[str, Any]:
    """The corruption errors of a run: ``mean_corruption_error`` (the mean error over the
    cells), and with a champion ``mce`` (ImageNet-C's mCE with the champion in AlexNet's
    place: each corruption's summed error over the champion's, averaged) and
    ``relative_mce`` (the same on the errors minus the clean error). The same model as
    champion and challenger gives 1 exactly."""
    mine = corruption_errors(run.cells, corruptions, severities)
    out: dict[str, Any] = {"mean_corruption_error": sum(mine.values()) / (len(mine) * len(severities))}
    if run.champion_cells is None or run.champion_clean is None:
        return out
    theirs = corruption_errors(run.champion_cells, corruptions, severities)
    clean_mine = len(severities) * top1_error(run.clean)
    clean_theirs = len(severities) * top1_error(run.champion_clean)
    ce = {c: _ratio(mine[c], theirs[c]) for c in corruptions}
    relative = {c: _ratio(mine[c] - clean_mine, theirs[c] - clean_theirs) for c in corruptions}
    out["corruption_error"] = ce
    out["mce"] = sum(ce.values()) / len(ce)
    out["relative_mce"] = sum(relative.values()) / len(relative)
    return out


@dataclass(frozen=True)
class _Judged:
    """One value of one cell (a class's or the whole set's) and what was wrong with it."""

    cell: Cell
    label: str  # "otter: recall" or "accuracy"
    value: float | None
    clean: float | None
    counts: tuple[int, int] | None
    broken: list[str]

    def message(self) -> str:
        where = f"{self.cell[0]}@{self.cell[1]}, {self.label}"
        counts = f" ({self.counts[0]}/{self.counts[1]})" if self.counts else ""
        return f"{where} {fmt(self.value)}{counts} " + "; ".join(self.broken) + f" (clean {fmt(self.clean)})"


@register
class RobustnessRule(Rule):
    """A floor, a drop from clean and a champion comparison on corrupted copies of the images."""

    type: Literal["robustness"] = "robustness"
    corruptions: list[Text] = Field(min_length=1)
    severities: list[Count] = Field(default_factory=lambda: list(SEVERITIES), min_length=1)
    metric: Text
    per_class: Flag = False
    min: Number | None = None
    max_drop: Number | None = Field(default=None, ge=0.0)
    relative_to_baseline: Number | None = Field(default=None, gt=0.0)
    seed: Count = Field(default=0, ge=0, le=(1 << 63) - 1)
    confidence: Number | None = Field(default=None, gt=0.0, lt=1.0)
    min_support: Count | None = Field(default=None, ge=1, le=1 << 53)
    catches: ClassVar[str] = "a model that breaks on noise, blur, compression or exposure changes"
    needs: ClassVar[str | None] = "robustness"

    def problems(self) -> list[str]:
        out = [self._unknown(name) for name in self.corruptions if name not in AVAILABLE]
        out += [
            f"corruption '{c}' is listed twice" for c in sorted(set(self.corruptions)) if self.corruptions.count(c) > 1
        ]
        out += [f"severity {s} is not one of 1..5" for s in self.severities if s not in SEVERITIES]
        out += [f"severity {s} is listed twice" for s in sorted(set(self.severities)) if self.severities.count(s) > 1]
        if self.per_class and self.metric not in PER_CLASS_METRICS:
            out.append(
                f"per_class: true needs a per-class metric ({', '.join(PER_CLASS_METRICS)}), not '{self.metric}'"
            )
        elif not self.per_class and self.metric not in GLOBAL_METRICS:
            out.append(
                f"unknown metric '{self.metric}'{suggest(self.metric, GLOBAL_METRICS)};"
                f" known: {', '.join(GLOBAL_METRICS)} (or a per-class metric with per_class: true)"
            )
        if self.min is None and self.max_drop is None and self.relative_to_baseline is None:
            out.append("needs `min`, `max_drop` or `relative_to_baseline` (or several)")
        if self.confidence is not None and not (self.per_class and self.metric in ("recall", "precision")):
            out.append("`confidence` applies to per-class recall and precision (proportions of counts)")
        low, high = self._span()
        if self.min is not None and not low <= self.min <= high:
            out.append(f"min {self.min:g} is outside the metric's range [{low:g}, {high:g}]")
        return out

    @staticmethod
    def _unknown(name: str) -> str:
        if name in NOT_AVAILABLE:
            return f"corruption '{name}' is not available: {NOT_AVAILABLE[name]}"
        return f"unknown corruption '{name}'{suggest(name, AVAILABLE)}; known: {', '.join(AVAILABLE)}"

    def _span(self) -> tuple[float, float]:
        if self.per_class or self.metric not in GLOBAL_METRICS:
            return 0.0, 1.0
        info = GLOBAL_METRICS[self.metric]
        return info.low, info.high

    def _higher_is_better(self) -> bool:
        return self.per_class or GLOBAL_METRICS[self.metric].higher_is_better

    def vacuous(self) -> str | None:
        known = PER_CLASS_METRICS if self.per_class else GLOBAL_METRICS
        if self.relative_to_baseline is not None or self.metric not in known:
            return None
        low, high = self._span()
        floor_ok = self.min is None or (
            at_most(self.min, low) if self._higher_is_better() else at_least(self.min, high)
        )
        drop_ok = self.max_drop is None or at_least(self.max_drop, high - low)
        if floor_ok and drop_ok:
            return f"{self.metric} spans [{low:g}, {high:g}]: no corrupted image can break these limits"
        return None

    def cells(self) -> list[Cell]:
        """The (corruption, severity) cells this rule judges, in the order it lists them."""
        return [(c, s) for c in self.corruptions for s in self.severities]

    def refusal(self, *, images: bool, has_baseline: bool) -> str | None:
        """Why the request cannot feed this rule (checked before any inference), or None."""
        if not images:
            return "robustness needs image samples (an image folder, manifest or spec), not an .npz of tensors"
        if self.relative_to_baseline is not None and not has_baseline:
            return "relative_to_baseline needs a champion model (`gate eval --baseline CHAMPION.onnx`)"
        return None

    def _threshold(self) -> dict[str, Any]:
        keys = ("min", "max_drop", "relative_to_baseline", "confidence", "min_support")
        out: dict[str, Any] = {"metric": self.metric, "per_class": self.per_class, "seed": self.seed}
        out.update({k: getattr(self, k) for k in keys if getattr(self, k) is not None})
        out["cells"] = [f"{c}@{s}" for c, s in self.cells()]
        return out

    def _limits(self, value: float | None, clean: float | None, lower: float | None) -> list[str]:
        """What ``value`` (``lower``: its confidence bound) breaks."""
        if value is None:
            return ["undefined (no sample to compute it from)"]
        broken = []
        higher = self._higher_is_better()
        if self.min is not None:
            seen = value if lower is None else lower
            if not (at_least(seen, self.min) if higher else at_most(seen, self.min)):
                v, f = fmt_vs(seen, self.min)
                bound = "" if lower is None else f"{self.confidence:.0%} lower bound {v} "
                broken.append(f"{bound}{'<' if higher else '>'} {f}" if bound else f"{'<' if higher else '>'} {f}")
        if self.max_drop is not None and clean is None:
            broken.append("drop undefined")  # no clean value to measure it from: never a pass
        elif self.max_drop is not None and clean is not None:
            drop = clean - value if higher else value - clean
            if not at_most(drop, self.max_drop):
                d, m = fmt_vs(drop, self.max_drop)
                broken.append(f"drop {d} > {m}")
        return broken

    def _judge_cell(self, cell: Cell, metrics: ClassificationMetrics, clean: ClassificationMetrics) -> list[_Judged]:
        if not self.per_class:
            value = metrics.value(self.metric)
            return [
                _Judged(
                    cell,
                    self.metric,
                    value,
                    clean.value(self.metric),
                    None,
                    self._limits(value, clean.value(self.metric), None),
                )
            ]
        out = []
        for name in metrics.classes:
            if self.min_support is not None and clean.class_metrics(name).support < self.min_support:
                continue  # judged INCONCLUSIVE once, below
            cm, before = metrics.class_metrics(name), clean.class_metrics(name).value(self.metric)
            value, counts = cm.value(self.metric), cm.counts(self.metric)
            lower = None
            if self.confidence is not None and value is not None:
                lower = (wilson_interval(counts[0], counts[1], self.confidence) or (0.0, 1.0))[0]
            out.append(
                _Judged(cell, f"{name}: {self.metric}", value, before, counts, self._limits(value, before, lower))
            )
        return out

    def check(self, context: RuleContext) -> RuleResult:
        run = (context.robustness or {}).get(self.seed)
        if run is None:  # the evaluation runs the suite for every robustness rule's seed
            return self.result(
                Status.ERROR, f"no run on corrupted images for seed {self.seed}", threshold=self._threshold()
            )
        clean = run.clean.metrics()
        judged: list[_Judged] = []
        table: dict[str, dict[str, Any]] = {}
        for cell in self.cells():
            results = self._judge_cell(cell, run.cells[cell].metrics(), clean)
            judged += results
            summary = _cell_summary(results)
            if summary["failed"]:
                summary["examples"] = _examples(run.cells[cell], summary["failing"])
            table.setdefault(cell[0], {})[str(cell[1])] = summary
        details: dict[str, Any] = {"metric": self.metric, "cells": table}
        broken = [j.message() for j in judged if j.broken]
        if self.relative_to_baseline is not None:
            broken += self._champion_check(run, details)
        short = self._short_classes(clean)
        if broken:
            return self.result(Status.FAIL, "; ".join(broken), threshold=self._threshold(), details=details)
        if short:
            return self.result(
                Status.INCONCLUSIVE,
                "not enough evidence: " + "; ".join(short),
                threshold=self._threshold(),
                details=details,
            )
        return self.result(
            Status.PASS, self._pass_message(judged, details), threshold=self._threshold(), details=details
        )

    def _champion_check(self, run: RobustnessRun, details: dict[str, Any]) -> list[str]:
        assert self.relative_to_baseline is not None
        if run.champion_cells is None:
            return ["no champion run on the corrupted images to compare with"]
        errors = mean_corruption_error(run, self.corruptions, self.severities)
        details.update({k: errors[k] for k in ("mce", "relative_mce", "corruption_error")})
        if at_most(errors["mce"], self.relative_to_baseline):
            return []
        worst = max(errors["corruption_error"].items(), key=lambda kv: kv[1])
        return [
            f"mCE {errors['mce']:.3f} > {self.relative_to_baseline:g} × the champion's"
            f" (corruption error relative to the champion; worst: {worst[0]} {worst[1]:.3f})"
        ]

    def _short_classes(self, clean: ClassificationMetrics) -> list[str]:
        if self.min_support is None or not self.per_class:
            return []
        return [
            f"{m.name}: {m.support} samples < {self.min_support}"
            for m in clean.per_class
            if m.support < self.min_support
        ]

    def _pass_message(self, judged: list[_Judged], details: dict[str, Any]) -> str:
        defined = [j for j in judged if j.value is not None]
        sign = 1.0 if self._higher_is_better() else -1.0
        text = "every cell within the limits"
        if defined:
            worst = min(defined, key=lambda j: sign * (j.value or 0.0))
            text += f"; worst: {worst.cell[0]}@{worst.cell[1]}, {worst.label} {fmt(worst.value)}"
            text += f" (clean {fmt(worst.clean)})"
        if "mce" in details:
            text += f"; mCE {details['mce']:.3f} <= {self.relative_to_baseline:g} × the champion's"
        return text


def _cell_summary(results: list[_Judged]) -> dict[str, Any]:
    """A cell's entry in the rule's details: its value (the lowest class's when per class), the
    clean value, whether it failed, and the failing classes."""
    values = [r.value for r in results if r.value is not None]
    worst = min(results, key=lambda r: r.value if r.value is not None else -math.inf) if results else None
    return {
        "value": min(values) if values else None,
        "clean": worst.clean if worst else None,
        "failed": any(r.broken for r in results),
        "failing": [r.label.split(":")[0] for r in results if r.broken],
    }


#: Misclassified samples a failing cell names, for the report's clean / corrupted pictures.
EXAMPLES = 3


def _examples(table: PredictionTable, failing: list[str]) -> list[str]:
    """The first few samples the model gets wrong in this cell that belong to a failing
    class or were answered as one (a precision fails on the latter), of any class for a
    global metric."""
    wrong = ~table.correct
    if failing and set(failing) <= set(table.classes):
        wanted = [table.classes.index(name) for name in failing]
        wrong &= np.isin(table.label, wanted) | np.isin(table.predicted, wanted)
    return [str(sid) for sid in table.sample_id[wrong][:EXAMPLES]]
