"""Domain types shared by every layer: rule results and the verdict.

A :class:`Verdict` is what gate answers. Its JSON form (``Verdict.to_dict``) is the
``gate.verdict/v1`` contract other programs parse; see README.md, "Verdict JSON".
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

SCHEMA = "gate.verdict/v1"


class Decision(enum.StrEnum):
    """The answer of an evaluation."""

    PASS = "PASS"  # the evaluation completed and every block rule passed
    FAIL = "FAIL"  # the evaluation completed and at least one block rule did not pass
    ERROR = "ERROR"  # the evaluation could not be completed; never a pass

    @property
    def exit_code(self) -> int:
        return {Decision.PASS: 0, Decision.FAIL: 1, Decision.ERROR: 2}[self]


class Status(enum.StrEnum):
    """The outcome of one rule (or of one class within a per-class rule)."""

    PASS = "pass"  # the threshold holds
    FAIL = "fail"  # the threshold is broken, or the value it needs is undefined
    INCONCLUSIVE = "inconclusive"  # not enough evidence to decide; fails a block rule
    ERROR = "error"  # the rule could not be computed; the verdict becomes ERROR
    # the rule did not pass, and a waiver granted for this model, dataset and rule allowed
    # that while it was valid; the real outcome stays beside it (RuleResult.outcome)
    WAIVED = "waived"


#: The outcomes a waiver may set aside: an error is never waived (nothing was judged).
WAIVABLE = (Status.FAIL, Status.INCONCLUSIVE)


class Severity(enum.StrEnum):
    BLOCK = "block"  # a failure blocks the deployment
    WARN = "warn"  # a failure is reported and never changes the verdict


@dataclass(frozen=True)
class ClassCheck:
    """One class's part of a per-class rule."""

    name: str
    status: Status
    observed: float | None
    threshold: float
    numerator: int | None = None
    denominator: int | None = None
    message: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassCheck:
        return cls(
            d["class"],
            Status(d["status"]),
            d["observed"],
            d["threshold"],
            d.get("numerator"),
            d.get("denominator"),
            d.get("message", ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.name,
            "status": self.status.value,
            "observed": self.observed,
            "threshold": self.threshold,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "message": self.message,
        }


@dataclass(frozen=True)
class RuleResult:
    """What one policy rule concluded, with the numbers it looked at."""

    id: str
    type: str
    status: Status
    severity: Severity
    message: str
    observed: float | None = None
    threshold: dict[str, Any] = field(default_factory=dict)
    classes: tuple[ClassCheck, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)  # rule-specific evidence (e.g. examples)
    # with status WAIVED: what the rule really concluded, and the waiver that set it aside
    # ({"id", "reason", "expires_at", "granted_by", "granted_at"})
    outcome: Status | None = None
    waiver: dict[str, Any] | None = None

    @property
    def blocks(self) -> bool:
        """True when this result stops a PASS (a waived result is judged by :func:`decide`)."""
        return self.severity is Severity.BLOCK and self.status in (Status.FAIL, Status.INCONCLUSIVE)

    def waiver_holds(self, at: dt.datetime) -> bool:
        """For a WAIVED result: whether its waiver sets aside its real outcome at ``at``
        (a waivable outcome, and an expiry after ``at``). Anything odd fails closed."""
        if self.status is not Status.WAIVED or self.outcome not in WAIVABLE or not self.waiver:
            return False
        try:
            expires = dt.datetime.fromisoformat(str(self.waiver.get("expires_at")))
        except ValueError:
            return False
        if expires.tzinfo is None:
            return False
        return at < expires

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RuleResult:
        return cls(
            id=d["id"],
            type=d["type"],
            status=Status(d["status"]),
            severity=Severity(d["severity"]),
            message=d["message"],
            observed=d.get("observed"),
            threshold=d.get("threshold") or {},
            classes=tuple(ClassCheck.from_dict(c) for c in d.get("classes", [])),
            details=d.get("details") or {},
            outcome=Status(d["outcome"]) if d.get("outcome") else None,
            waiver=d.get("waiver"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "status": self.status.value,
            "severity": self.severity.value,
            "message": self.message,
            "observed": self.observed,
            "threshold": self.threshold,
        }
        if self.classes:
            out["classes"] = [c.to_dict() for c in self.classes]
        if self.details:
            out["details"] = self.details
        if self.outcome is not None:
            out["outcome"] = self.outcome.value
        if self.waiver is not None:
            out["waiver"] = self.waiver
        return out


def decide(rules: list[RuleResult], *, at: dt.datetime | None = None) -> Decision:
    """PASS only if no rule errored and every block rule passed or was waived by a waiver
    valid at ``at`` (default: now); fail closed otherwise."""
    if not rules or any(r.status is Status.ERROR or r.outcome is Status.ERROR for r in rules):
        return Decision.ERROR
    if any(r.blocks for r in rules):
        return Decision.FAIL
    when = at if at is not None else dt.datetime.now(dt.UTC)
    if any(r.status is Status.WAIVED and not r.waiver_holds(when) for r in rules):
        return Decision.FAIL
    return Decision.PASS


@dataclass
class Verdict:
    """The answer of one evaluation, complete enough to audit and to re-render."""

    decision: Decision
    model: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None
    rules: list[RuleResult] = field(default_factory=list)
    error: dict[str, str] | None = None
    started_at: str | None = None
    duration_s: float | None = None
    evaluation_id: str | None = None  # set by the service
    labels: dict[str, Any] = field(default_factory=dict)  # pipeline id, git sha, free keys
    # the champion's run and the paired comparison, when a baseline model was given
    baseline: dict[str, Any] | None = None
    # the candidate's metrics on the dataset's training sample, when a rule needed them
    train_sample: dict[str, Any] | None = None
    # what the evaluation found about the held-out set itself (suspected label errors,
    # duplicates and conflicts), when the policy or the caller asked for it
    dataset_audit: dict[str, Any] | None = None
    # findings that are not rules but that a reader must see (e.g. predictions that look
    # like a permutation of the classes): each {"kind": ..., "message": ..., ...}
    diagnostics: list[dict[str, Any]] | None = None
    # the waivers that applied to this evaluation's rules
    waivers: list[dict[str, Any]] | None = None

    @property
    def exit_code(self) -> int:
        return self.decision.exit_code

    def summary(self) -> dict[str, int]:
        # "waived" is counted only when a rule was waived: documents without waivers keep their form
        counts = {s.value: 0 for s in Status if s is not Status.WAIVED}
        for r in self.rules:
            counts[r.status.value] = counts.get(r.status.value, 0) + 1
        counts["blocking"] = sum(1 for r in self.rules if r.blocks)
        counts["warnings"] = sum(1 for r in self.rules if r.severity is Severity.WARN and r.status is not Status.PASS)
        return counts

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        """Rebuild a verdict from its JSON document (e.g. one received from the service)."""
        if d.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} document (schema={d.get('schema')!r})")
        return cls(
            decision=Decision(d["verdict"]),
            model=d.get("model") or {},
            dataset=d.get("dataset") or {},
            policy=d.get("policy") or {},
            runtime=d.get("runtime") or {},
            metrics=d.get("metrics"),
            rules=[RuleResult.from_dict(r) for r in d.get("rules", [])],
            error=d.get("error"),
            started_at=d.get("started_at"),
            duration_s=d.get("duration_s"),
            evaluation_id=d.get("evaluation_id"),
            labels=d.get("labels") or {},
            baseline=d.get("baseline"),
            train_sample=d.get("train_sample"),
            dataset_audit=d.get("dataset_audit"),
            diagnostics=d.get("diagnostics"),
            waivers=d.get("waivers"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "verdict": self.decision.value,
            "model": self.model,
            "dataset": self.dataset,
            "policy": self.policy,
            "runtime": self.runtime,
            "metrics": self.metrics,
            "rules": [r.to_dict() for r in self.rules],
            "summary": self.summary(),
            "error": self.error,
            "started_at": self.started_at,
            "duration_s": self.duration_s,
            "evaluation_id": self.evaluation_id,
            "labels": self.labels,
        }
        # optional sections appear only when the evaluation produced them
        if self.baseline is not None:
            out["baseline"] = self.baseline
        if self.train_sample is not None:
            out["train_sample"] = self.train_sample
        for name in ("dataset_audit", "diagnostics", "waivers"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out
