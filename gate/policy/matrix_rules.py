"""The rules that judge the candidate's confusion matrix alone: global metric bounds,
per-class floors, evidence per class, the imbalance guard, the majority baseline and one
costly confusion. Registered in this order, after which come the evidence rules
(:mod:`gate.policy.evidence_rules`)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from gate.metrics import GLOBAL_METRICS, ClassificationMetrics
from gate.policy.base import ClassName, ClassNumbers, Count, Number, Rule, Text, in_range, register, suggest
from gate.policy.bounds import TOLERANCE, at_least, at_most, fmt, fmt_vs
from gate.policy.class_checks import per_class_checks, prevalence_checks
from gate.verdict import ClassCheck, RuleResult, Status

#: An ``imbalance`` rule whose ``max_ratio`` is at least this never reaches its recall
#: floor on a real held-out set: the smallest class would have to be under one sample in
#: a million.
IMBALANCE_RATIO_CEILING = 1e6


@register
class MetricRule(Rule):
    """Inclusive bounds on a global metric."""

    type: Literal["metric"] = "metric"
    metric: Text
    min: Number | None = None
    max: Number | None = None
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
        out += in_range("min", self.min, info.low, info.high)
        out += in_range("max", self.max, info.low, info.high)
        return out

    def vacuous(self) -> str | None:
        info = GLOBAL_METRICS.get(self.metric)
        if info is None or (self.min is None and self.max is None):
            return None
        if self.min is not None and not at_most(self.min, info.low):
            return None
        if self.max is not None and not at_least(self.max, info.high):
            return None
        given = " and ".join(f"{k} {v:g}" for k, v in (("min", self.min), ("max", self.max)) if v is not None)
        return f"{self.metric} always lies in [{info.low:g}, {info.high:g}], so {given} cannot be broken"

    def evaluate(self, metrics: ClassificationMetrics) -> RuleResult:
        value = metrics.value(self.metric)
        bounds = {k: v for k, v in (("min", self.min), ("max", self.max)) if v is not None}
        if value is None:
            return self.result(Status.FAIL, f"{self.metric} is undefined on this set", threshold=bounds)
        parts, broken = [], False
        for key, bound in bounds.items():
            v, b = fmt_vs(value, bound)
            ok = at_least(value, bound) if key == "min" else at_most(value, bound)
            broken |= not ok
            op = (">=" if ok else "<") if key == "min" else ("<=" if ok else ">")
            parts.append(f"{self.metric} {v} {op} {b}")
        status = Status.FAIL if broken else Status.PASS
        return self.result(status, "; ".join(parts), observed=value, threshold=bounds)


@register
class PerClassRule(Rule):
    """A floor on recall, precision or F1 for every class, with per-class overrides."""

    type: Literal["per_class"] = "per_class"
    metric: Literal["recall", "precision", "f1"]
    min: Number | None = None
    classes: ClassNumbers = Field(default_factory=dict)
    #: check each floor against the lower end of this two-sided Wilson interval
    confidence: Number | None = Field(default=None, gt=0.0, lt=1.0)
    #: precision only: production class rates; classes left out share the rest in
    #: proportion to their held-out support
    expected_prevalence: ClassNumbers | None = None
    catches: ClassVar[str] = "a class the model misses (recall) or over-calls (precision)"

    def problems(self) -> list[str]:
        out = []
        if self.min is None and not self.classes:
            out.append("needs `min` (a floor for every class) or `classes` (per-class floors)")
        out += in_range("min", self.min, 0.0, 1.0)
        for name, floor in self.classes.items():
            out += in_range(f"floor of class '{name}'", floor, 0.0, 1.0)
        if self.confidence is not None and self.metric == "f1":
            out.append("`confidence` applies to recall and precision (proportions of counts), not to f1")
        if self.expected_prevalence is not None:
            out += self._prevalence_problems(self.expected_prevalence)
        return out

    def _prevalence_problems(self, rates: dict[str, float]) -> list[str]:
        out = []
        if self.metric != "precision":
            out.append(
                f"`expected_prevalence` applies to precision only: {self.metric} does not depend on"
                " how common a class is"
            )
        if self.confidence is not None:
            out.append("`confidence` cannot be combined with `expected_prevalence`")
        if not rates:
            out.append("`expected_prevalence` is empty; give at least one class's rate")
        for name, rate in rates.items():
            out += in_range(f"expected prevalence of class '{name}'", rate, 0.0, 1.0)
        total = sum(rates.values())
        if total > 1.0 + 1e-9:
            out.append(f"expected prevalences add up to {total:g}, more than 1")
        return out

    def class_names(self) -> list[str]:
        return list(self.classes) + list(self.expected_prevalence or {})

    def vacuous(self) -> str | None:
        floors = ([self.min] if self.min is not None else []) + list(self.classes.values())
        if floors and all(f <= TOLERANCE for f in floors):
            return f"every {self.metric} floor is 0, and no {self.metric} is below 0"
        return None

    def prevalence(self, metrics: ClassificationMetrics) -> dict[str, float]:
        """Every class's expected rate: the given ones, the rest sharing what is left in
        proportion to their held-out support. Raises ValueError when they cannot add up to 1."""
        given = dict(self.expected_prevalence or {})
        rest = [m for m in metrics.per_class if m.name not in given]
        left = 1.0 - sum(given.values())
        if not rest:
            if abs(left) > 1e-6:
                raise ValueError(f"expected prevalences of all classes add up to {1.0 - left:g}, not 1")
            return given
        weight = sum(m.support for m in rest)
        if weight == 0 and left > 1e-12:
            raise ValueError("the classes without an expected prevalence have no held-out samples to share the rest")
        for m in rest:
            given[m.name] = 0.0 if weight == 0 else left * m.support / weight
        return given

    def evaluate(self, metrics: ClassificationMetrics) -> RuleResult:
        floors = {
            name: self.classes.get(name, self.min)
            for name in metrics.classes
            if name in self.classes or self.min is not None
        }
        defined = {k: v for k, v in floors.items() if v is not None}
        threshold: dict[str, Any] = {"min": self.min, "classes": dict(self.classes)}
        if self.expected_prevalence is not None:
            prevalence = self.prevalence(metrics)
            threshold["expected_prevalence"] = prevalence
            checks = prevalence_checks(metrics, defined, prevalence)
        else:
            checks = per_class_checks(metrics, self.metric, defined, confidence=self.confidence)
        if self.confidence is not None:
            threshold["confidence"] = self.confidence
        failed = [c for c in checks if c.status is not Status.PASS]
        if failed:
            return self.result(Status.FAIL, "; ".join(c.message for c in failed), threshold=threshold, classes=checks)
        lowest = min(checks, key=lambda c: (c.observed or 0.0) - c.threshold)
        what = "lower bound" if self.confidence is not None else self.metric
        return self.result(
            Status.PASS,
            f"all {len(checks)} classes meet their {what} floor; closest: {lowest.message}",
            threshold=threshold,
            classes=checks,
        )


@register
class MinSupportRule(Rule):
    """Each class needs enough held-out samples for its metrics to mean anything."""

    type: Literal["min_support"] = "min_support"
    min: Count = Field(ge=1, le=1 << 53)  # a count of samples; larger is no longer exact as a float
    catches: ClassVar[str] = "per-class numbers computed from too few samples to trust"

    def vacuous(self) -> str | None:
        if self.min <= 1:
            return (
                "min 1 only asks every class for one sample, which every per-class number needs anyway"
                " (an undefined value fails the rule that reads it)"
            )
        return None

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
    max_ratio: Number = Field(ge=1.0)
    min_recall: Number = Field(ge=0.0, le=1.0)
    catches: ClassVar[str] = "the accuracy paradox: high accuracy on a skewed set hiding a missed class"

    def vacuous(self) -> str | None:
        if self.min_recall <= TOLERANCE:
            return "min_recall 0: every class's recall reaches 0"
        if self.max_ratio >= IMBALANCE_RATIO_CEILING:
            return (
                f"max_ratio {self.max_ratio:g}: the recall floor applies only once the smallest class is under"
                " one sample in a million"
            )
        return None

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
        if at_most(ratio, self.max_ratio):
            return self.result(
                Status.PASS, f"{shape} <= {self.max_ratio:g}: balanced enough", observed=ratio, threshold=threshold
            )
        checks = per_class_checks(metrics, "recall", {m.name: self.min_recall for m in metrics.per_class})
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
    margin: Number = Field(ge=0.0, le=1.0)
    catches: ClassVar[str] = "a model no better than always answering the most common class"

    def vacuous(self) -> str | None:
        if self.margin <= TOLERANCE:
            return "margin 0: a model that always answers the largest class passes it"
        return None

    def evaluate(self, metrics: ClassificationMetrics) -> RuleResult:
        threshold = {"margin": self.margin}
        acc, base = metrics.accuracy, metrics.majority_baseline_accuracy
        if acc is None or base is None:
            return self.result(Status.FAIL, "accuracy is undefined on an empty set", threshold=threshold)
        largest = max(metrics.per_class, key=lambda m: m.support).name
        gap = acc - base
        g, m = fmt_vs(gap, self.margin)
        sign = "+" if at_least(gap, 0.0) else ""
        text = f"accuracy {fmt(acc)} - majority-class rate {fmt(base)} ('{largest}') = {sign}{g}"
        if at_least(gap, self.margin):
            return self.result(Status.PASS, f"{text} >= {m}", observed=gap, threshold=threshold)
        return self.result(Status.FAIL, f"{text} < {m}", observed=gap, threshold=threshold)


@register
class ConfusionRule(Rule):
    """A ceiling on how often one actual class is predicted as one specific other class."""

    type: Literal["confusion"] = "confusion"
    actual: ClassName
    predicted: ClassName
    max_rate: Number = Field(ge=0.0, le=1.0)
    catches: ClassVar[str] = "one costly mistake (e.g. a defect passed as 'ok') happening too often"

    def vacuous(self) -> str | None:
        if at_least(self.max_rate, 1.0):
            return "max_rate 1: no share of a class exceeds all of it"
        return None

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
        op, status = ("<=", Status.PASS) if at_most(rate, self.max_rate) else (">", Status.FAIL)
        r, t = fmt_vs(rate, self.max_rate)
        return self.result(
            status,
            f"{head}: {r} {op} {t} ({count}/{support})",
            observed=rate,
            threshold=threshold,
        )
