"""The held-out audit a policy's ``label_quality`` and ``heldout_duplicates`` rules judge
(:attr:`gate.policy.context.RuleContext.heldout`): the suspected label errors, the
near-duplicate groups by radius, and the decision margins the policy's other rules rest
on. Built by :func:`gate.heldout.audit.audit_heldout` from the predictions tables and
the set's perceptual hashes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gate.heldout.duplicates import DuplicateAudit
from gate.heldout.label_audit import LabelAudit


@dataclass(frozen=True)
class DecisionMargin:
    """How far one rule's observed value lies from the bound it is judged by: labels wrong
    in a larger share of the set could move the value across it."""

    rule_id: str
    metric: str
    observed: float
    bound: float
    side: str  # "min" or "max"

    @property
    def margin(self) -> float:
        return round(abs(self.observed - self.bound), 9)  # a difference of shares, printed as such

    def describe(self) -> str:
        return f"rule '{self.rule_id}': {self.metric} {self.observed:.4f} vs {self.side} {self.bound:.4f}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "metric": self.metric,
            "observed": self.observed,
            "bound": self.bound,
            "side": self.side,
            "margin": self.margin,
        }


@dataclass(frozen=True)
class HeldoutEvidence:
    """What the evaluation found about the held-out set itself."""

    sample_ids: tuple[str, ...]
    classes: tuple[str, ...]
    labels: LabelAudit | None = None  # when a label_quality rule asks
    duplicates: Mapping[int, DuplicateAudit] = field(default_factory=dict)  # by max_hamming
    margins: tuple[DecisionMargin, ...] = ()

    @property
    def tightest(self) -> DecisionMargin | None:
        """The decision margin the policy relies on most: the smallest."""
        return min(self.margins, key=lambda m: m.margin, default=None)

    def to_dict(self) -> dict[str, Any]:
        """The verdict's ``dataset_audit`` entries: ``label_issues`` (with the margins it was
        judged against) and ``duplicates`` (at the widest radius a rule asked for)."""
        out: dict[str, Any] = {}
        if self.labels is not None:
            out["label_issues"] = {**self.labels.to_dict(), "decision_margins": [m.to_dict() for m in self.margins]}
        if self.duplicates:
            widest = self.duplicates[max(self.duplicates)]
            out["duplicates"] = widest.to_dict(self.sample_ids, self.classes)
        return out
