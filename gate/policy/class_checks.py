"""Per-class checks: one class's recall, precision or F1 against its floor, as a point
value, as the lower end of a confidence interval, or at the class rates expected in
production. Used by the ``per_class`` and ``imbalance`` rules."""

from __future__ import annotations

from typing import Literal

from gate.metrics import ClassificationMetrics, ClassMetrics
from gate.policy.bounds import at_least, fmt, fmt_vs
from gate.stats import prior_shift_precision, wilson_interval
from gate.verdict import ClassCheck, Status


def _undefined_reason(metric: str, cm: ClassMetrics) -> str:
    if cm.support == 0 and metric in ("recall", "f1"):
        return "the class has no samples"
    if cm.predicted == 0 and metric == "precision":
        return "the class is never predicted"
    return "nothing to divide by"


def _confident_check(
    name: str, metric: str, value: float, counts: tuple[int, int], floor: float, confidence: float
) -> tuple[Status, str]:
    """A floor checked against the lower end of the Wilson interval of ``counts``."""
    num, den = counts
    low, high = wilson_interval(num, den, confidence) or (0.0, 1.0)
    ok = at_least(low, floor)
    lo, f = fmt_vs(low, floor)
    text = (
        f"{name}: {metric} {fmt(value)} ({num}/{den}), {confidence:.0%} interval [{lo}, {fmt(high)}]:"
        f" lower bound {lo} {'>=' if ok else '<'} {f}"
    )
    return (Status.PASS if ok else Status.FAIL), text


def per_class_checks(
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
            status, text = _confident_check(name, metric, value, (num, den), floor, confidence)
        else:
            ok = at_least(value, floor)
            status = Status.PASS if ok else Status.FAIL
            v, f = fmt_vs(value, floor)
            text = f"{name}: {metric} {v} {'>=' if ok else '<'} {f} ({num}/{den})"
        checks.append(ClassCheck(name, status, value, floor, num, den, text))
    return checks


def prevalence_checks(
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
        ok = at_least(value, floor)
        v, f = fmt_vs(value, floor)
        text = f"{head} {v} {'>=' if ok else '<'} {f} (held-out precision {held}, {num}/{den})"
        checks.append(ClassCheck(name, Status.PASS if ok else Status.FAIL, value, floor, num, den, text))
    return checks
