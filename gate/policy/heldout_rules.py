"""The rules that judge the held-out set and the model as it will be used:

* ``label_quality``: the share of suspected label errors (confident learning, see
  :mod:`gate.heldout.label_issues`), against a ceiling and against the decision margin
  the policy's other rules rest on, and the samples left per class once suspects are set
  aside;
* ``heldout_duplicates``: near-duplicate samples inside the set, and near-identical
  images carrying different labels (conflicts);
* ``selective``: a model that abstains below a confidence threshold, judged on coverage
  and on the accuracy and per-class recall of what it answers.

The first two need the held-out audit (``needs = "heldout"``, computed by the
evaluation); ``selective`` reads the predictions table.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from gate.policy.base import ClassNumbers, Count, Flag, Number, Rule, in_range, register
from gate.policy.bounds import at_least, at_most, fmt, fmt_vs
from gate.policy.context import RuleContext
from gate.verdict import ClassCheck, RuleResult, Status

#: How many sample ids a message shows.
SHOWN = 3


def _rate_problems(name: str, value: float | None) -> list[str]:
    if value is not None and not 0.0 <= value < 1.0:
        return [f"{name} {value:g} is a rate and must be in [0, 1)"]
    return []


@register
class LabelQualityRule(Rule):
    """The held-out labels must be trustworthy enough for the decisions the policy takes."""

    type: Literal["label_quality"] = "label_quality"
    #: the largest share of samples whose label may be suspect
    max_rate: Number | None = None
    #: also fail when the suspect share exceeds the tightest margin of a blocking `metric` rule
    margin: Flag = True
    #: samples each class must keep once its suspects are set aside
    min_support: Count | None = Field(default=None, ge=0)
    catches: ClassVar[str] = "a held-out set whose wrong labels could flip the verdict (confident learning)"
    needs: ClassVar[str | None] = "heldout"

    def problems(self) -> list[str]:
        out = _rate_problems("max_rate", self.max_rate)
        if self.max_rate is None and not self.margin and self.min_support is None:
            out.append("needs `max_rate`, `margin: true` or `min_support` (or several)")
        return out

    def vacuous(self) -> str | None:
        # with nothing to judge at all, problems() says so; a min_support of 0 is what is vacuous
        if self.margin or self.max_rate is not None or self.min_support != 0:
            return None
        return "no suspect rate can break it: no max_rate, no margin, and a min_support of 0"

    def _threshold(self) -> dict[str, Any]:
        out: dict[str, Any] = {"margin": self.margin}
        if self.max_rate is not None:
            out["max_rate"] = self.max_rate
        if self.min_support is not None:
            out["min_support"] = self.min_support
        return out

    def check(self, context: RuleContext) -> RuleResult:
        evidence = context.heldout
        if evidence is None or evidence.labels is None:
            return self.result(Status.ERROR, "no label audit of the held-out set", threshold=self._threshold())
        audit = evidence.labels
        rate, tight = audit.rate, evidence.tightest
        models = "the candidate's and the champion's" if len(audit.models) > 1 else "the candidate's"
        head = (
            f"{audit.count} of {audit.samples} held-out labels ({rate:.2%}) are suspected wrong"
            f" (confident learning on {models} probabilities)"
        )
        broken, kept = self._judge_rate(rate, tight)
        checks = self._support_checks(audit.remaining())
        thin = [c for c in checks if c.status is not Status.PASS]
        shown = ", ".join(f"{i.sample_id} ({i.given} → {i.suggested})" for i in audit.issues[:SHOWN])
        tail = f"; e.g. {shown}" if shown else ""
        details = {"count": audit.count, "rate": rate, "tightest_margin": tight.to_dict() if tight else None}
        if broken:
            text = f"{head}: {'; '.join(broken + kept)}{tail}"
            return self.result(
                Status.FAIL, text, observed=rate, threshold=self._threshold(), classes=checks, details=details
            )
        if thin:
            text = f"{head}; too few samples left once suspects are set aside: " + "; ".join(c.message for c in thin)
            return self.result(
                Status.INCONCLUSIVE, text, observed=rate, threshold=self._threshold(), classes=checks, details=details
            )
        text = f"{head}: " + "; ".join(kept or ["no limit broken"]) + tail
        return self.result(
            Status.PASS, text, observed=rate, threshold=self._threshold(), classes=checks, details=details
        )

    def _judge_rate(self, rate: float, tight: Any) -> tuple[list[str], list[str]]:
        """What the rate breaks and what it keeps, each said with the numbers."""
        broken: list[str] = []
        kept: list[str] = []
        if self.max_rate is not None:
            r, m = fmt_vs(rate, self.max_rate)
            (kept if at_most(rate, self.max_rate) else broken).append(
                f"rate {r} {'<=' if at_most(rate, self.max_rate) else '>'} max_rate {m}"
            )
        if self.margin and tight is not None:
            r, m = fmt_vs(rate, tight.margin)
            ok = at_most(rate, tight.margin)
            verdict = "cannot" if ok else "could"
            (kept if ok else broken).append(
                f"rate {r} {'<=' if ok else '>'} the decision margin {m} the policy relies on"
                f" ({tight.describe()}): label errors {verdict} flip that rule"
            )
        elif self.margin:
            kept.append("no blocking metric rule has a margin to compare with")
        return broken, kept

    def _support_checks(self, remaining: dict[str, int]) -> list[ClassCheck]:
        if self.min_support is None:
            return []
        floor = self.min_support
        return [
            ClassCheck(
                name,
                Status.PASS if left >= floor else Status.INCONCLUSIVE,
                float(left),
                float(floor),
                message=f"{name}: {left} samples left {'>=' if left >= floor else '<'} {floor}",
            )
            for name, left in remaining.items()
        ]


@register
class HeldoutDuplicatesRule(Rule):
    """The held-out set must not count one image many times, nor give one image two labels."""

    type: Literal["heldout_duplicates"] = "heldout_duplicates"
    #: two samples whose 64-bit perceptual hashes differ in at most this many bits are copies
    max_hamming: Count = Field(default=4, ge=0, le=24)
    #: the largest share of redundant samples (each group's size minus one)
    max_rate: Number | None = None
    #: how many groups of copies with different labels are allowed
    conflicts: Count | None = Field(default=None, ge=0)
    catches: ClassVar[str] = "near-duplicate held-out images, and copies that carry different labels"
    needs: ClassVar[str | None] = "heldout"

    def problems(self) -> list[str]:
        out = _rate_problems("max_rate", self.max_rate)
        if self.max_rate is None and self.conflicts is None:
            out.append("needs `max_rate`, `conflicts` or both")
        return out

    def _threshold(self) -> dict[str, Any]:
        out: dict[str, Any] = {"max_hamming": self.max_hamming}
        out.update({k: v for k, v in (("max_rate", self.max_rate), ("conflicts", self.conflicts)) if v is not None})
        return out

    def check(self, context: RuleContext) -> RuleResult:
        evidence = context.heldout
        audit = None if evidence is None else evidence.duplicates.get(self.max_hamming)
        if evidence is None or audit is None:
            return self.result(Status.ERROR, "no duplicate audit of the held-out set", threshold=self._threshold())
        ids = evidence.sample_ids
        head = (
            f"{len(audit.groups)} group(s) of near-duplicate held-out images (Hamming distance <="
            f" {self.max_hamming}): {audit.redundant} redundant of {audit.samples} ({audit.rate:.2%}),"
            f" {len(audit.conflicts)} with different labels"
        )
        broken: list[str] = []
        kept: list[str] = []
        if self.max_rate is not None:
            r, m = fmt_vs(audit.rate, self.max_rate)
            ok = at_most(audit.rate, self.max_rate)
            (kept if ok else broken).append(f"rate {r} {'<=' if ok else '>'} max_rate {m}")
        if self.conflicts is not None:
            ok = len(audit.conflicts) <= self.conflicts
            (kept if ok else broken).append(
                f"{len(audit.conflicts)} conflict(s) {'<=' if ok else '>'} {self.conflicts}"
            )
        shown = "; ".join(
            " = ".join(f"{ids[i]} ({evidence.classes[y]})" for i, y in zip(g.members, g.labels, strict=True))
            for g in audit.groups[:SHOWN]
        )
        tail = f"; e.g. {shown}" if shown else ""
        details = {"groups": len(audit.groups), "redundant": audit.redundant, "conflicts": len(audit.conflicts)}
        status = Status.FAIL if broken else Status.PASS
        text = f"{head}: {'; '.join(broken or kept)}{tail}"
        return self.result(status, text, observed=audit.rate, threshold=self._threshold(), details=details)


@register
class SelectiveRule(Rule):
    """A model that abstains below a confidence threshold must answer enough, and answer well."""

    type: Literal["selective"] = "selective"
    #: the model answers a sample when the probability of its top class is at least this
    threshold: Number = Field(ge=0.0, le=1.0)
    min_coverage: Number | None = None
    min_accuracy: Number | None = None
    #: a floor on every class's recall among the answered samples
    min_recall: Number | None = None
    #: per-class recall floors (override min_recall)
    classes: ClassNumbers = Field(default_factory=dict)
    catches: ClassVar[str] = "a model that abstains too often, or is wrong on what it answers"

    def problems(self) -> list[str]:
        out: list[str] = []
        for name in ("min_coverage", "min_accuracy", "min_recall"):
            out += in_range(name, getattr(self, name), 0.0, 1.0)
        for name, floor in self.classes.items():
            out += in_range(f"recall floor of class '{name}'", floor, 0.0, 1.0)
        if all(getattr(self, n) is None for n in ("min_coverage", "min_accuracy", "min_recall")) and not self.classes:
            out.append("needs `min_coverage`, `min_accuracy`, `min_recall` or `classes` (or several)")
        return out

    def class_names(self) -> list[str]:
        return list(self.classes)

    def vacuous(self) -> str | None:
        floors = [
            f for f in (self.min_coverage, self.min_accuracy, self.min_recall, *self.classes.values()) if f is not None
        ]
        if not floors or any(not at_most(f, 0.0) for f in floors):
            return None  # no floor at all is a problem (see problems()), not a vacuous rule
        return "every floor is 0: no coverage, accuracy or recall can break it"

    def _threshold(self) -> dict[str, Any]:
        out: dict[str, Any] = {"threshold": self.threshold}
        for name in ("min_coverage", "min_accuracy", "min_recall"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.classes:
            out["classes"] = dict(self.classes)
        return out

    def check(self, context: RuleContext) -> RuleResult:
        from gate.heldout.selective import selective_at

        if context.table is None:
            return self.result(Status.ERROR, "no predictions table to judge abstention on", threshold=self._threshold())
        point = selective_at(context.table, self.threshold)
        parts, broken = [], False
        for label, value, floor in (
            ("coverage", point.coverage, self.min_coverage),
            ("selective accuracy", point.accuracy, self.min_accuracy),
        ):
            if floor is None:
                continue
            ok = value is not None and at_least(value, floor)
            broken |= not ok
            parts.append(_versus(label, value, floor, ok))
        checks = self._recall_checks(point)
        failed = [c for c in checks if c.status is not Status.PASS]
        parts += [c.message for c in failed]
        head = f"answering at confidence >= {self.threshold:g}: {point.answered} of {point.samples} samples"
        status = Status.FAIL if broken or failed else Status.PASS
        text = f"{head}; " + "; ".join(parts or ["every class's recall on the answered samples meets its floor"])
        return self.result(
            status, text, observed=point.coverage, threshold=self._threshold(), classes=checks, details=point.to_dict()
        )

    def _recall_checks(self, point: Any) -> list[ClassCheck]:
        out = []
        for name in point.class_answered:
            floor = self.classes.get(name, self.min_recall)
            if floor is None:
                continue
            value = point.recall(name)
            ok = value is not None and at_least(value, floor)
            message = _versus(f"{name}: recall on the answered samples", value, floor, ok)
            right, answered = point.class_correct[name], point.class_answered[name]
            out.append(ClassCheck(name, Status.PASS if ok else Status.FAIL, value, floor, right, answered, message))
        return out


def _versus(label: str, value: float | None, floor: float, ok: bool) -> str:
    """ "label 0.950 >= 0.900", or "label undefined (no answered sample) < 0.900"."""
    if value is None:
        return f"{label} undefined (no answered sample) < {fmt(floor)}"
    v, f = fmt_vs(value, floor)
    return f"{label} {v} {'>=' if ok else '<'} {f}"
