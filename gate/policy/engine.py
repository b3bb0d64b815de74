"""Apply a validated policy to computed metrics: one RuleResult per rule, in policy order.

A rule that raises is recorded with status ``error`` (and so the verdict is ERROR), never
dropped: a release gate fails closed.
"""

from __future__ import annotations

import logging

from gate.metrics import ClassificationMetrics
from gate.policy.context import NEEDS, RuleContext
from gate.policy.schema import Policy
from gate.verdict import RuleResult, Status

log = logging.getLogger(__name__)


def apply_policy(
    policy: Policy, metrics: ClassificationMetrics, context: RuleContext | None = None
) -> list[RuleResult]:
    """One result per rule. ``context`` carries the extra evidence some rules need; a rule
    whose evidence is missing is an ``error`` result (the verdict becomes ERROR)."""
    policy.check_classes(metrics.classes)
    ctx = context if context is not None else RuleContext(metrics)
    results = []
    for rule in policy.rules:
        if rule.needs is not None and not ctx.has(rule.needs):
            results.append(rule.result(Status.ERROR, f"this rule needs {NEEDS[rule.needs]}"))
            continue
        try:
            results.append(rule.check(ctx))
        except Exception as e:  # a bug in one rule must not turn into a pass
            log.exception("rule %s raised", rule.id)
            results.append(rule.result(Status.ERROR, f"rule could not be computed: {type(e).__name__}: {e}"))
    return results
