"""The rule types a policy may use, one small class each, in a registry keyed by ``type``.

A rule is a frozen pydantic model (its YAML fields) with three duties:

* ``problems()``: what is wrong with its thresholds on their own (min > max, a
  threshold outside the metric's range...), as messages;
* ``class_names()``: the class names it mentions, checked against the dataset;
* ``evaluate(metrics)``: a :class:`RuleResult`. A value the rule needs that is undefined
  (a class with no samples, a class never predicted) makes it fail, never skip.

A rule that needs more than the candidate's metrics (a champion's run, a training
sample, training fingerprints) names it in ``needs`` and overrides ``check(context)``
instead; see :mod:`gate.policy.context`.

To add a rule type, subclass :class:`Rule`, give it ``type: Literal["name"]`` and
decorate it with :func:`register`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from gate.metrics import GLOBAL_METRICS, PER_CLASS_METRICS, ClassificationMetrics, ClassMetrics
from gate.policy.context import RuleContext
from gate.stats import mcnemar_exact, prior_shift_precision, wilson_interval
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
    #: extra evidence the rule needs (a key of gate.policy.context.NEEDS), or None
    needs: ClassVar[str | None] = None

    def problems(self) -> list[str]:
        return []

    def class_names(self) -> list[str]:
        return []

    def evaluate(self, metrics: ClassificationMetrics) -> RuleResult:
        raise NotImplementedError

    def check(self, context: RuleContext) -> RuleResult:
        """The rule's result in ``context``; rules that need only the metrics keep the default."""
        return self.evaluate(context.metrics)

    def result(
        self,
        status: Status,
        message: str,
        *,
        observed: float | None = None,
        threshold: dict[str, Any] | None = None,
        classes: Iterable[ClassCheck] = (),
        details: dict[str, Any] | None = None,
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
            details=details or {},
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
    *,
    confidence: float | None = None,
) -> list[ClassCheck]:
    """One check per class. With ``confidence``, the floor is checked against the lower
    end of the Wilson interval of the class's recall or precision, not the point value."""
    checks = []
    for name, floor in floors.items():
        cm = metrics.class_metrics(name)
        value = cm.value(metric)
        num, den = cm.counts(metric)
        if value is None:
            status = Status.FAIL
            text = f"{name}: {metric} undefined ({_undefined_reason(metric, cm)}), floor {fmt(floor)}"
        elif confidence is not None:
            low, high = wilson_interval(num, den, confidence) or (0.0, 1.0)
            status = Status.FAIL if low < floor else Status.PASS
            lo, f = fmt_vs(low, floor)
            text = (
                f"{name}: {metric} {fmt(value)} ({num}/{den}), {confidence:.0%} interval [{lo}, {fmt(high)}]:"
                f" lower bound {lo} {'<' if low < floor else '>='} {f}"
            )
        else:
            status = Status.FAIL if value < floor else Status.PASS
            v, f = fmt_vs(value, floor)
            text = f"{name}: {metric} {v} {'<' if value < floor else '>='} {f} ({num}/{den})"
        checks.append(ClassCheck(name, status, value, floor, num, den, text))
    return checks


def _prevalence_checks(
    metrics: ClassificationMetrics, floors: dict[str, float], prevalence: dict[str, float]
) -> list[ClassCheck]:
    """Precision floors checked at the production class priors ``prevalence``."""
    checks = []
    for name, floor in floors.items():
        cm = metrics.class_metrics(name)
        num, den = cm.counts("precision")
        held = fmt(cm.precision)
        value = prior_shift_precision(metrics.confusion, metrics.classes, name, prevalence)
        head = f"{name}: precision at expected prevalence {prevalence[name]:.2%}"
        if value is None:
            why = (
                "a class with an expected prevalence has no held-out samples"
                if any(prevalence[c.name] > 0 and c.support == 0 for c in metrics.per_class)
                else "the class would never be predicted"
            )
            checks.append(
                ClassCheck(name, Status.FAIL, None, floor, num, den, f"{head} undefined ({why}), floor {fmt(floor)}")
            )
            continue
        bad = value < floor
        v, f = fmt_vs(value, floor)
        text = f"{head} {v} {'<' if bad else '>='} {f} (held-out precision {held}, {num}/{den})"
        checks.append(ClassCheck(name, Status.FAIL if bad else Status.PASS, value, floor, num, den, text))
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
    #: check each floor against the lower end of this two-sided Wilson interval
    confidence: float | None = Field(default=None, gt=0.0, lt=1.0)
    #: precision only: production class rates; classes left out share the rest in
    #: proportion to their held-out support
    expected_prevalence: dict[str, float] | None = None
    catches: ClassVar[str] = "a class the model misses (recall) or over-calls (precision)"

    def problems(self) -> list[str]:
        out = []
        if self.min is None and not self.classes:
            out.append("needs `min` (a floor for every class) or `classes` (per-class floors)")
        out += _in_range("min", self.min, 0.0, 1.0)
        for name, floor in self.classes.items():
            out += _in_range(f"floor of class '{name}'", floor, 0.0, 1.0)
        if self.confidence is not None and self.metric == "f1":
            out.append("`confidence` applies to recall and precision (proportions of counts), not to f1")
        if self.expected_prevalence is not None:
            if self.metric != "precision":
                out.append(
                    f"`expected_prevalence` applies to precision only: {self.metric} does not depend on"
                    " how common a class is"
                )
            if self.confidence is not None:
                out.append("`confidence` cannot be combined with `expected_prevalence`")
            if not self.expected_prevalence:
                out.append("`expected_prevalence` is empty; give at least one class's rate")
            for name, rate in self.expected_prevalence.items():
                out += _in_range(f"expected prevalence of class '{name}'", rate, 0.0, 1.0)
            total = sum(self.expected_prevalence.values())
            if total > 1.0 + 1e-9:
                out.append(f"expected prevalences add up to {total:g}, more than 1")
        return out

    def class_names(self) -> list[str]:
        return list(self.classes) + list(self.expected_prevalence or {})

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
            checks = _prevalence_checks(metrics, defined, prevalence)
        else:
            checks = _per_class_checks(metrics, self.metric, defined, confidence=self.confidence)
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


def _drop(metric_higher_is_better: bool, champion: float, challenger: float) -> float:
    """How much worse the challenger is (positive: worse), whatever the metric's direction."""
    return champion - challenger if metric_higher_is_better else challenger - champion


@register
class BaselineRule(Rule):
    """The candidate (challenger) must not be worse than the model in production (champion),
    on the same samples: by a margin, and / or beyond chance by an exact McNemar test."""

    type: Literal["baseline"] = "baseline"
    metric: str
    per_class: bool = False
    max_drop: float | None = Field(default=None, ge=0.0)
    max_relative_drop: float | None = Field(default=None, ge=0.0)
    test: Literal["mcnemar"] | None = None
    alpha: float | None = Field(default=None, gt=0.0, lt=1.0)
    catches: ClassVar[str] = "a challenger that is worse than the champion, overall or on one class"
    needs: ClassVar[str | None] = "baseline"

    def problems(self) -> list[str]:
        out = []
        if self.per_class:
            if self.metric not in PER_CLASS_METRICS:
                out.append(
                    f"per_class: true needs a per-class metric ({', '.join(PER_CLASS_METRICS)}), not '{self.metric}'"
                )
        elif self.metric not in GLOBAL_METRICS:
            out.append(
                f"unknown metric '{self.metric}'{suggest(self.metric, GLOBAL_METRICS)};"
                f" known: {', '.join(GLOBAL_METRICS)} (or a per-class metric with per_class: true)"
            )
        if self.max_drop is None and self.max_relative_drop is None and self.test is None:
            out.append("needs `max_drop`, `max_relative_drop` or `test: mcnemar` (or several)")
        if self.alpha is not None and self.test is None:
            out.append("`alpha` is the significance level of `test`; give `test: mcnemar` too")
        return out

    @property
    def level(self) -> float:
        return self.alpha if self.alpha is not None else 0.05

    def _threshold(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": self.metric, "per_class": self.per_class}
        for key in ("max_drop", "max_relative_drop", "test"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.test is not None:
            out["alpha"] = self.level
        return out

    def _judge(
        self, label: str, champion: float | None, challenger: float | None, better_high: bool, paired: Any
    ) -> tuple[Status, str, float | None, dict[str, Any]]:
        """One comparison: (status, message, drop, test details)."""
        if champion is None or challenger is None:
            which = "champion" if champion is None else "challenger"
            return Status.FAIL, f"{label}: undefined for the {which}; cannot show it is not worse", None, {}
        drop = _drop(better_high, champion, challenger)
        head = f"{label} {fmt(challenger)} vs champion {fmt(champion)}"
        broken: list[str] = []
        kept: list[str] = []
        if self.max_drop is not None:
            d, m = fmt_vs(drop, self.max_drop)
            (broken if drop > self.max_drop else kept).append(f"drop {d} {'>' if drop > self.max_drop else '<='} {m}")
        if self.max_relative_drop is not None:
            rel = math.inf if champion == 0 and drop > 0 else (0.0 if champion == 0 else drop / abs(champion))
            bad = rel > self.max_relative_drop
            (broken if bad else kept).append(
                f"relative drop {rel:.1%} {'>' if bad else '<='} {self.max_relative_drop:.1%}"
            )
        test: dict[str, Any] = {}
        if self.test is None:
            status = Status.FAIL if broken else Status.PASS
            return status, f"{head}: " + "; ".join(broken or kept), drop, test
        m_test = mcnemar_exact(paired[0], paired[1])
        test = m_test.to_dict()
        worse = m_test.significantly_worse(self.level)
        evidence = (
            f"McNemar p={m_test.p_value:.3g} {'<' if m_test.p_value < self.level else '>='} {self.level:g}"
            f" (challenger alone wrong on {m_test.challenger_worse}, alone right on {m_test.challenger_better})"
        )
        thresholds = self.max_drop is not None or self.max_relative_drop is not None
        if thresholds and not broken:
            return Status.PASS, f"{head}: " + "; ".join(kept), drop, test
        if worse:
            why = "; ".join(broken) + ", and " if broken else ""
            return Status.FAIL, f"{head}: {why}significantly worse: {evidence}", drop, test
        why = "; ".join(broken) + " but " if broken else ""
        return Status.PASS, f"{head}: {why}not significantly worse, within noise: {evidence}", drop, test

    def check(self, context: RuleContext) -> RuleResult:
        run = context.baseline
        if run is None:  # the evaluation refuses such a request before this point
            return self.result(Status.ERROR, "no champion model to compare with", threshold=self._threshold())
        new, old = context.metrics, run.metrics
        if not self.per_class:
            info = GLOBAL_METRICS[self.metric]
            status, text, drop, test = self._judge(
                self.metric,
                old.value(self.metric),
                new.value(self.metric),
                info.higher_is_better,
                (run.champion_correct, run.challenger_correct),
            )
            return self.result(
                status, text, observed=drop, threshold=self._threshold(), details={"mcnemar": test} if test else None
            )
        checks, tests = [], {}
        for i, name in enumerate(new.classes):
            mine = run.labels == i
            status, text, drop, test = self._judge(
                f"{name}: {self.metric}",
                old.class_metrics(name).value(self.metric),
                new.class_metrics(name).value(self.metric),
                True,
                (run.champion_correct[mine], run.challenger_correct[mine]),
            )
            if test:
                tests[name] = test
            checks.append(ClassCheck(name, status, drop, self.max_drop or 0.0, message=text))
        failed = [c for c in checks if c.status is not Status.PASS]
        details = {"mcnemar": tests} if tests else None
        if failed:
            return self.result(
                Status.FAIL,
                "; ".join(c.message for c in failed),
                threshold=self._threshold(),
                classes=checks,
                details=details,
            )
        worst = max(checks, key=lambda c: c.observed if c.observed is not None else -math.inf)
        return self.result(
            Status.PASS,
            f"no class is worse than with the champion beyond the limits; largest drop: {worst.message}",
            threshold=self._threshold(),
            classes=checks,
            details=details,
        )


@register
class TrainTestGapRule(Rule):
    """A metric must not be much better on training data than on the held-out set."""

    type: Literal["train_test_gap"] = "train_test_gap"
    metric: str
    max_gap: float = Field(ge=0.0)
    catches: ClassVar[str] = "overfitting: a model much better on its training data than on unseen data"
    needs: ClassVar[str | None] = "train_sample"

    def problems(self) -> list[str]:
        if self.metric not in GLOBAL_METRICS:
            return [f"unknown metric '{self.metric}'{suggest(self.metric, GLOBAL_METRICS)}"]
        return []

    def check(self, context: RuleContext) -> RuleResult:
        threshold = {"metric": self.metric, "max_gap": self.max_gap}
        train = context.train_sample
        if train is None:
            return self.result(Status.ERROR, "no training sample to compare with", threshold=threshold)
        held, seen = context.metrics.value(self.metric), train.metrics.value(self.metric)
        if held is None or seen is None:
            where = "held-out set" if held is None else "training sample"
            return self.result(Status.FAIL, f"{self.metric} is undefined on the {where}", threshold=threshold)
        gap = _drop(GLOBAL_METRICS[self.metric].higher_is_better, seen, held)
        g, m = fmt_vs(gap, self.max_gap)
        text = (
            f"{self.metric} on the training sample {fmt(seen)} ({train.metrics.samples} samples) vs held-out"
            f" {fmt(held)}: gap {g}"
        )
        if gap > self.max_gap:
            return self.result(
                Status.FAIL,
                f"{text} > {m}: the model does much better on data it was trained on (overfitting)",
                observed=gap,
                threshold=threshold,
            )
        return self.result(Status.PASS, f"{text} <= {m}", observed=gap, threshold=threshold)


#: How many near-duplicate pairs a leakage result lists.
LEAKAGE_EXAMPLES = 20


@register
class LeakageRule(Rule):
    """Held-out images must not be (near-)copies of training images."""

    type: Literal["leakage"] = "leakage"
    max_hamming: int = Field(ge=0, le=24)
    #: an integer: how many held-out images may match; a fraction in [0, 1): what share may
    max_overlap: int | float = 0
    catches: ClassVar[str] = "data leakage: held-out images that are resized or re-encoded training images"
    needs: ClassVar[str | None] = "fingerprint"

    def problems(self) -> list[str]:
        if isinstance(self.max_overlap, float) and not 0.0 <= self.max_overlap < 1.0:
            return [
                f"max_overlap {self.max_overlap:g} is a rate and must be in [0, 1);"
                " write a whole number (e.g. 5) for a count"
            ]
        if isinstance(self.max_overlap, int) and self.max_overlap < 0:
            return [f"max_overlap {self.max_overlap} must not be negative"]
        return []

    def check(self, context: RuleContext) -> RuleResult:
        from gate.leakage import find_leaks

        threshold: dict[str, Any] = {"max_hamming": self.max_hamming, "max_overlap": self.max_overlap}
        leak = context.leakage
        if leak is None:
            return self.result(Status.ERROR, "no training fingerprints to compare with", threshold=threshold)
        report = find_leaks(
            leak.heldout_hashes,
            leak.fingerprints,
            self.max_hamming,
            held_out_ids=leak.sample_ids,
            max_examples=LEAKAGE_EXAMPLES,
        )
        n, total = report.leaked, report.held_out_count
        rate = n / total if total else 0.0
        if isinstance(self.max_overlap, float):
            bad = rate > self.max_overlap
            limit = f"{self.max_overlap:.2%} allowed"
        else:
            bad = n > self.max_overlap
            limit = f"{self.max_overlap} allowed"
        examples = [
            {"sample": leak.sample_ids[e.held_out_index], "train": e.train_path, "distance": e.distance}
            for e in report.examples
        ]
        shown = ", ".join(f"{e['sample']} ≈ {e['train']} (distance {e['distance']})" for e in examples[:3])
        head = (
            f"{n} of {total} held-out images ({rate:.2%}) nearly duplicate training images"
            f" (Hamming distance <= {self.max_hamming} between 64-bit perceptual hashes)"
        )
        details = {"matches": n, "rate": rate, "examples": examples, "fingerprint_sha256": leak.sha256}
        if bad:
            return self.result(
                Status.FAIL,
                f"{head} > {limit}: the held-out set leaks training data; e.g. {shown}",
                observed=rate,
                threshold=threshold,
                details=details,
            )
        tail = f"; e.g. {shown}" if examples else ""
        return self.result(Status.PASS, f"{head} <= {limit}{tail}", observed=rate, threshold=threshold, details=details)


def rule_types() -> dict[str, type[Rule]]:
    return dict(RULE_TYPES)
