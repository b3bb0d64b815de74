"""The rules that weigh evidence beyond the candidate's confusion matrix: a champion's
run on the same samples (``baseline``), a sample of the training data
(``train_test_gap``) and fingerprints of the training images (``leakage``). Each names
the evidence it needs in ``needs``; see :mod:`gate.policy.context`."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field

from gate.metrics import GLOBAL_METRICS, PER_CLASS_METRICS
from gate.policy.base import Count, CountOrRate, Flag, Number, Rule, Text, register, suggest
from gate.policy.bounds import at_least, at_most, fmt, fmt_vs
from gate.policy.context import RuleContext
from gate.stats import mcnemar_exact
from gate.verdict import ClassCheck, RuleResult, Status

#: (lowest, highest, higher is better) of each global metric
METRIC_SPANS: dict[str, tuple[float, float, bool]] = {
    name: (info.low, info.high, info.higher_is_better) for name, info in GLOBAL_METRICS.items()
}


def _drop(metric_higher_is_better: bool, champion: float, challenger: float) -> float:
    """How much worse the challenger is (positive: worse), whatever the metric's direction."""
    return champion - challenger if metric_higher_is_better else challenger - champion


@register
class BaselineRule(Rule):
    """The candidate (challenger) must not be worse than the model in production (champion),
    on the same samples: by a margin, and / or beyond chance by an exact McNemar test."""

    type: Literal["baseline"] = "baseline"
    metric: Text
    per_class: Flag = False
    max_drop: Number | None = Field(default=None, ge=0.0)
    max_relative_drop: Number | None = Field(default=None, ge=0.0)
    test: Literal["mcnemar"] | None = None
    alpha: Number | None = Field(default=None, gt=0.0, lt=1.0)
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

    def vacuous(self) -> str | None:
        given = {
            k: v
            for k, v in (("max_drop", self.max_drop), ("max_relative_drop", self.max_relative_drop))
            if v is not None
        }
        span = (0.0, 1.0, True) if self.per_class else METRIC_SPANS.get(self.metric)
        if not given or span is None:
            return None  # a test alone fails a challenger that is significantly worse
        low, high, higher_is_better = span
        # a drop of a higher-is-better metric that cannot go below 0 is at most the
        # champion's own value: a relative drop of at most 1
        unbreakable = (
            self.max_drop is None or at_least(self.max_drop, high - low),
            self.max_relative_drop is None or (higher_is_better and low >= 0 and at_least(self.max_relative_drop, 1.0)),
        )
        if not all(unbreakable):
            return None
        shown = " and ".join(f"{k} {v:g}" for k, v in given.items())
        return f"{self.metric} spans [{low:g}, {high:g}]: no drop can break {shown}"

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
            over = not at_most(drop, self.max_drop)
            (broken if over else kept).append(f"drop {d} {'>' if over else '<='} {m}")
        if self.max_relative_drop is not None:
            rel = math.inf if champion == 0 and drop > 0 else (0.0 if champion == 0 else drop / abs(champion))
            bad = not at_most(rel, self.max_relative_drop)
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
    metric: Text
    max_gap: Number = Field(ge=0.0)
    catches: ClassVar[str] = "overfitting: a model much better on its training data than on unseen data"
    needs: ClassVar[str | None] = "train_sample"

    def problems(self) -> list[str]:
        if self.metric not in GLOBAL_METRICS:
            return [f"unknown metric '{self.metric}'{suggest(self.metric, GLOBAL_METRICS)}"]
        return []

    def vacuous(self) -> str | None:
        span = METRIC_SPANS.get(self.metric)
        if span is not None and at_least(self.max_gap, span[1] - span[0]):
            return f"{self.metric} spans [{span[0]:g}, {span[1]:g}]: no gap exceeds max_gap {self.max_gap:g}"
        return None

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
        if not at_most(gap, self.max_gap):
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
    max_hamming: Count = Field(ge=0, le=24)
    #: an integer: how many held-out images may match; a fraction in [0, 1): what share may
    max_overlap: CountOrRate = 0
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
            bad = not at_most(rate, self.max_overlap)
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
