"""YAML policies: reading (``yaml_source``), validation (``schema``), the rule registry
(``rules``: ``base``, ``matrix_rules``, ``evidence_rules``), threshold comparison
(``bounds``) and their application to metrics (``engine``)."""

from gate.policy.bounds import TOLERANCE
from gate.policy.engine import apply_policy
from gate.policy.rules import RULE_TYPES, Rule, register
from gate.policy.schema import MAX_POLICY_BYTES, Policy, VacuousRule, load_policy, parse_policy, vacuous_rules

__all__ = [
    "MAX_POLICY_BYTES",
    "RULE_TYPES",
    "TOLERANCE",
    "Policy",
    "Rule",
    "VacuousRule",
    "apply_policy",
    "load_policy",
    "parse_policy",
    "register",
    "vacuous_rules",
]
