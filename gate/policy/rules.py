"""The rule types a policy may use, one small class each, in a registry keyed by ``type``.

A rule is a frozen pydantic model (its YAML fields) with three duties:

* ``problems()``: what is wrong with its thresholds on their own (min > max, a
  threshold outside the metric's range...), as messages;
* ``class_names()``: the class names it mentions, checked against the dataset;
* ``evaluate(metrics)``: a :class:`RuleResult`. A value the rule needs that is undefined
  (a class with no samples, a class never predicted) makes it fail, never skip.

To add a rule type, subclass :class:`Rule`, give it ``type: Literal["name"]`` and
decorate it with :func:`register`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from gate.metrics import GLOBAL_METRICS, ClassificationMetrics, ClassMetrics
from gate.verdict import ClassCheck, RuleResult, Severity, Status

RULE_TYPES: dict[str, type[Rule]] = {}

RuleT = TypeVar("RuleT", bound="Rule")


def register(cls: type[RuleT]) -> type[RuleT]:
    """Add a rule class to the registry under its ``type`` literal."""
    tag = cls.model_fields["type"].default
    if not isinstance(tag, str) or tag in RULE_TYPES:
        raise TypeError(f"rule class {cls.__name__} needs a unique string default for `type`")
    RULE_TYPES[tag] = cls
    return cls


def fmt(value: float | None) -> str:
    """Numbers in messages: three decimals, and 'undefined' for None."""
    if value is None:
        return "undefined"
    if math.isinf(value):
        return "inf"
    return f"{value:.3f}"


def fmt_vs(value: float, threshold: float) -> tuple[str, str]:
    """An observed value and its threshold, with enough decimals that unequal numbers
    never print alike ("0.0444 > 0.0440", not "0.044 > 0.044")."""
    for digits in range(3, 8):
        a, b = f"{value:.{digits}f}", f"{threshold:.{digits}f}"
        if (a != b) == (value != threshold) and float(b) == threshold:
            return a, b
    return repr(value), repr(threshold)


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _in_range(label: str, value: float | None, low: float, high: float) -> list[str]:
    if value is None or low <= value <= high:
        return []
    return [f"{label} {value:g} is outside the metric's range [{low:g}, {high:g}]"]


class Rule(BaseModel):
    """Fields and duties common to every rule type."""

    # thresholds are finite numbers: an infinite one cannot be written to the audit log
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    type: str
    severity: Severity = Severity.BLOCK
    description: str | None = None

    #: one-line summary of what this rule catches, for `gate policy` docs and reports
    catches: ClassVar[str] = ""

    def problems(self) -> list[str]:
        return []

    def class_names(self) -> list[str]:
        return []

    def evaluate(self, metrics: ClassificationMetrics) -> RuleResult:
        raise NotImplementedError

    def result(
        self,
        status: Status,
        message: str,
        *,
        observed: float | None = None,
        threshold: dict[str, Any] | None = None,
        classes: Iterable[ClassCheck] = (),
    ) -> RuleResult:
        return RuleResult(
            id=self.id,
            type=self.type,
            status=status,
            severity=self.severity,
            message=message,
            observed=observed,
            threshold=threshold or {},
            classes=tuple(classes),
        )


def _undefined_reason(metric: str, cm: ClassMetrics) -> str:
    if cm.support == 0 and metric in ("recall", "f1"):
        return "the class has no samples"
    if cm.predicted == 0 and metric == "precision":
        return "the class is never predicted"
    return "nothing to divide by"


def _per_class_checks(
    metrics: ClassificationMetrics,
    metric: Literal["precision", "recall", "f1"],
    floors: dict[str, float],
) -> list[ClassCheck]:
    checks = []
    for name, floor in floors.items():
        cm = metrics.class_metrics(name)
        value = cm.value(metric)
        num, den = cm.counts(metric)
        if value is None:
            status = Status.FAIL
            text = f"{name}: {metric} undefined ({_undefined_reason(metric, cm)}), floor {fmt(floor)}"
        else:
            status = Status.FAIL if value < floor else Status.PASS
            v, f = fmt_vs(value, floor)
            text = f"{name}: {metric} {v} {'<' if value < floor else '>='} {f} ({num}/{den})"
        checks.append(ClassCheck(name, status, value, floor, num, den, text))
    return checks


@register
class MetricRule(Rule):
    """Inclusive bounds on a global metric."""

    type: Literal["metric"] = "metric"
    metric: str
    min: float | None = None
    max: float | None = None
    catches: ClassVar[str] = "a global metric (accuracy, macro F1, MCC...) outside its bounds"

    def problems(self) -> list[str]:
        info = GLOBAL_METRICS.get(self.metric)
        if info is None:
            return [
                f"unknown metric '{self.metric}'{suggest(self.metric, GLOBAL_METRICS)};"
                f" known: {', '.join(GLOBAL_METRICS)}"
            ]
        out = []
        if self.min is None and self.max is None:
            out.append("needs `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            out.append(f"min {self.min} > max {self.max}")
        out += _in_range("min", self.min, info.low, info.high)
        out += _in_range("max", self.max, info.low, info.high)
        return out

    def evaluate(self, metrics: ClassificationMetrics) -> RuleResult:
        value = metrics.value(self.metric)
        bounds = {k: v for k, v in (("min", self.min), ("max", self.max)) if v is not None}
        if value is None:
            return self.result(Status.FAIL, f"{self.metric} is undefined on this set", threshold=bounds)
        parts, broken = [], False
        for key, bound in bounds.items():
            v, b = fmt_vs(value, bound)
            bad = value < bound if key == "min" else value > bound
            broken |= bad
            op = ("<" if bad else ">=") if key == "min" else (">" if bad else "<=")
            parts.append(f"{self.metric} {v} {op} {b}")
        status = Status.FAIL if broken else Status.PASS
        return self.result(status, "; ".join(parts), observed=value, threshold=bounds)


@register
class PerClassRule(Rule):
    """A floor on recall, precision or F1 for every class, with per-class overrides."""

    type: Literal["per_class"] = "per_class"
    metric: Literal["recall", "precision", "f1"]
    min: float | None = None
    classes: dict[str, float] = Field(default_factory=dict)
    catches: ClassVar[str] = "a class the model misses (recall) or over-calls (precision)"

    def problems(self) -> list[str]:
        out = []
        if self.min is None and not self.classes:
            out.append("needs `min` (a floor for every class) or `classes` (per-class floors)")
        out += _in_range("min", self.min, 0.0, 1.0)
        for name, floor in self.classes.items():
            out += _in_range(f"floor of class '{name}'", floor, 0.0, 1.0)
        return out

    def class_names(self) -> list[str]:
        return list(self.classes)

    def evaluate(self, metrics: ClassificationMetrics) -> RuleResult:
        floors = {
            name: self.classes.get(name, self.min)
            for name in metrics.classes
            if name in self.classes or self.min is not None
        }
        checks = _per_class_checks(metrics, self.metric, {k: v for k, v in floors.items() if v is not None})
        threshold: dict[str, Any] = {"min": self.min, "classes": dict(self.classes)}
        failed = [c for c in checks if c.status is not Status.PASS]
        if failed:
            return self.result(Status.FAIL, "; ".join(c.message for c in failed), threshold=threshold, classes=checks)
        lowest = min(checks, key=lambda c: (c.observed or 0.0) - c.threshold)
        return self.result(
            Status.PASS,
            f"all {len(checks)} classes meet their {self.metric} floor; closest: {lowest.message}",
            threshold=threshold,
            classes=checks,
        )


@register
class MinSupportRule(Rule):
    """Each class needs enough held-out samples for its metrics to mean anything."""

    type: Literal["min_support"] = "min_support"
    min: int = Field(ge=1, le=1 << 53)  # a count of samples; larger is no longer exact as a float
    catches: ClassVar[str] = "per-class numbers computed from too few samples to trust"

    def evaluate(self, metrics: ClassificationMetrics) -> RuleResult:
        checks = [
            ClassCheck(
                m.name,
                Status.PASS if m.support >= self.min else Status.INCONCLUSIVE,
                float(m.support),
                float(self.min),
                message=(
                    f"{m.name}: {m.support} samples >= {self.min}"
                    if m.support >= self.min
                    else f"{m.name}: not enough evidence: {m.support} samples < {self.min}"
                ),
            )
            for m in metrics.per_class
        ]
        short = [c for c in checks if c.status is not Status.PASS]
        threshold = {"min": self.min}
        if short:
            return self.result(
                Status.INCONCLUSIVE, "; ".join(c.message for c in short), threshold=threshold, classes=checks
            )
        smallest = min(metrics.per_class, key=lambda m: m.support)
        return self.result(
            Status.PASS,
            f"every class has >= {self.min} samples; smallest: {smallest.name} with {smallest.support}",
            observed=float(smallest.support),
            threshold=threshold,
            classes=checks,
        )


@register
class ImbalanceRule(Rule):
    """On an imbalanced set, accuracy is not enough: every class must reach a recall floor."""

    type: Literal["imbalance"] = "imbalance"
    max_ratio: float = Field(ge=1.0)
    min_recall: float = Field(ge=0.0, le=1.0)
    catches: ClassVar[str] = "the accuracy paradox: high accuracy on a skewed set hiding a missed class"

    def evaluate(self, metrics: ClassificationMetrics) -> RuleResult:
        threshold = {"max_ratio": self.max_ratio, "min_recall": self.min_recall}
        ratio = metrics.imbalance_ratio
        small = min(metrics.per_class, key=lambda m: m.support)
        large = max(metrics.per_class, key=lambda m: m.support)
        if ratio is None:
            return self.result(
                Status.FAIL,
                f"class '{small.name}' has no samples: the imbalance is unbounded and its recall undefined",
                threshold=threshold,
            )
        shape = f"support ratio {ratio:.1f} ({large.name} {large.support} / {small.name} {small.support})"
        if ratio <= self.max_ratio:
            return self.result(
                Status.PASS, f"{shape} <= {self.max_ratio:g}: balanced enough", observed=ratio, threshold=threshold
            )
        checks = _per_class_checks(metrics, "recall", {m.name: self.min_recall for m in metrics.per_class})
        failed = [c for c in checks if c.status is not Status.PASS]
        if not failed:
            return self.result(
                Status.PASS,
                f"{shape} > {self.max_ratio:g}, and every class has recall >= {fmt(self.min_recall)}",
                observed=ratio,
                threshold=threshold,
                classes=checks,
            )
        share = small.support / metrics.samples
        paradox = (
            f"Accuracy paradox: accuracy ({fmt(metrics.accuracy)}) hides this, because '{small.name}' is only"
            f" {share:.1%} of the set"
        )
        return self.result(
            Status.FAIL,
            f"{shape} > {self.max_ratio:g}; " + "; ".join(c.message for c in failed) + f". {paradox}",
            observed=ratio,
            threshold=threshold,
            classes=checks,
        )


@register
class MajorityBaselineRule(Rule):
    """The model must beat always predicting the largest class by a margin."""

    type: Literal["majority_baseline"] = "majority_baseline"
    margin: float = Field(ge=0.0, le=1.0)
    catches: ClassVar[str] = "a model no better than always answering the most common class"

    def evaluate(self, metrics: ClassificationMetrics) -> RuleResult:
        threshold = {"margin": self.margin}
        acc, base = metrics.accuracy, metrics.majority_baseline_accuracy
        if acc is None or base is None:
            return self.result(Status.FAIL, "accuracy is undefined on an empty set", threshold=threshold)
        largest = max(metrics.per_class, key=lambda m: m.support).name
        gap = acc - base
        g, m = fmt_vs(gap, self.margin)
        text = f"accuracy {fmt(acc)} - majority-class rate {fmt(base)} ('{largest}') = {'+' if gap >= 0 else ''}{g}"
        if gap >= self.margin:
            return self.result(Status.PASS, f"{text} >= {m}", observed=gap, threshold=threshold)
        return self.result(Status.FAIL, f"{text} < {m}", observed=gap, threshold=threshold)


@register
class ConfusionRule(Rule):
    """A ceiling on how often one actual class is predicted as one specific other class."""

    type: Literal["confusion"] = "confusion"
    actual: str
    predicted: str
    max_rate: float = Field(ge=0.0, le=1.0)
    catches: ClassVar[str] = "one costly mistake (e.g. a defect passed as 'ok') happening too often"

    def problems(self) -> list[str]:
        if self.actual == self.predicted:
            return [f"actual and predicted are both '{self.actual}'; name two different classes"]
        return []

    def class_names(self) -> list[str]:
        return [self.actual, self.predicted]

    def evaluate(self, metrics: ClassificationMetrics) -> RuleResult:
        threshold = {"max_rate": self.max_rate}
        a, p = metrics.classes.index(self.actual), metrics.classes.index(self.predicted)
        count, support = int(metrics.confusion[a, p]), int(metrics.confusion[a].sum())
        head = f"{self.actual} predicted as {self.predicted}"
        if support == 0:
            return self.result(
                Status.FAIL, f"{head}: rate undefined (class '{self.actual}' has no samples)", threshold=threshold
            )
        rate = count / support
        op, status = ("<=", Status.PASS) if rate <= self.max_rate else (">", Status.FAIL)
        r, t = fmt_vs(rate, self.max_rate)
        return self.result(
            status,
            f"{head}: {r} {op} {t} ({count}/{support})",
            observed=rate,
            threshold=threshold,
        )


def rule_types() -> dict[str, type[Rule]]:
    return dict(RULE_TYPES)
