"""The rule types a policy may use, one small class each, in a registry keyed by ``type``.

A rule is a frozen pydantic model (its YAML fields) with four duties:

* ``problems()``: what is wrong with its thresholds on their own (min > max, a
  threshold outside the metric's range...), as messages;
* ``class_names()``: the class names it mentions, checked against the dataset;
* ``vacuous()``: why no model could ever fail it, when that is so;
* ``evaluate(metrics)``: a :class:`RuleResult`. A value the rule needs that is undefined
  (a class with no samples, a class never predicted) makes it fail, never skip.

A rule that needs more than the candidate's metrics (a champion's run, a training
sample, training fingerprints) names it in ``needs`` and overrides ``check(context)``
instead; see :mod:`gate.policy.context`.

The rule types live by family: :mod:`gate.policy.matrix_rules` (judged on the
candidate's confusion matrix) and :mod:`gate.policy.evidence_rules` (judged on more
evidence); :mod:`gate.policy.base` holds the base class and the registry. To add a rule
type, subclass :class:`Rule`, give it ``type: Literal["name"]`` and decorate it with
:func:`register`. This module imports every family, so that the registry is complete.
"""

from __future__ import annotations

from gate.policy.base import RULE_TYPES, Rule, register, suggest
from gate.policy.bounds import fmt, fmt_vs
from gate.policy.matrix_rules import (
    ConfusionRule,
    ImbalanceRule,
    MajorityBaselineRule,
    MetricRule,
    MinSupportRule,
    PerClassRule,
)

# isort: split
# the evidence rules register after the matrix rules: the registry's order is the order
# in which messages list the known types
from gate.policy.evidence_rules import LEAKAGE_EXAMPLES, BaselineRule, LeakageRule, TrainTestGapRule
from gate.policy.slice_rules import PerSliceRule, SliceGapRule

# isort: split
from gate.policy.deployment_rules import LatencyRule, MemoryRule, ModelContractRule, ProviderParityRule

# isort: split
from gate.policy.robustness_rules import RobustnessRule

# isort: split
from gate.policy.heldout_rules import HeldoutDuplicatesRule, LabelQualityRule, SelectiveRule

__all__ = [
    "LEAKAGE_EXAMPLES",
    "RULE_TYPES",
    "BaselineRule",
    "ConfusionRule",
    "HeldoutDuplicatesRule",
    "ImbalanceRule",
    "LabelQualityRule",
    "LatencyRule",
    "LeakageRule",
    "MajorityBaselineRule",
    "MemoryRule",
    "MetricRule",
    "MinSupportRule",
    "ModelContractRule",
    "PerClassRule",
    "PerSliceRule",
    "ProviderParityRule",
    "RobustnessRule",
    "Rule",
    "SelectiveRule",
    "SliceGapRule",
    "TrainTestGapRule",
    "fmt",
    "fmt_vs",
    "register",
    "rule_types",
    "suggest",
]


def rule_types() -> dict[str, type[Rule]]:
    return dict(RULE_TYPES)
