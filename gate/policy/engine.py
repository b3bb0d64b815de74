"""Apply a validated policy to computed metrics: one RuleResult per rule, in policy order.

A rule that raises is recorded with status ``error`` (and so the verdict is ERROR), never
dropped: a release gate fails closed.
"""

from __future__ import annotations

import logging

from gate.metrics import ClassificationMetrics
from gate.policy.schema import Policy
from gate.verdict import RuleResult, Status

log = logging.getLogger(__name__)


def apply_policy(policy: Policy, metrics: ClassificationMetrics) -> list[RuleResult]:
    policy.check_classes(metrics.classes)
    results = []
    for rule in policy.rules:
        try:
            results.append(rule.evaluate(metrics))
        except Exception as e:  # a bug in one rule must not turn into a pass
            log.exception("rule %s raised", rule.id)
            results.append(rule.result(Status.ERROR, f"rule could not be computed: {type(e).__name__}: {e}"))
    return results
