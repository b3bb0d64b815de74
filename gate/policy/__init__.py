"""YAML policies: validation (``schema``), the rule registry (``rules``) and their
application to metrics (``engine``)."""

from gate.policy.engine import apply_policy
from gate.policy.rules import RULE_TYPES, Rule, register
from gate.policy.schema import MAX_POLICY_BYTES, Policy, load_policy, parse_policy

__all__ = [
    "MAX_POLICY_BYTES",
    "RULE_TYPES",
    "Policy",
    "Rule",
    "apply_policy",
    "load_policy",
    "parse_policy",
    "register",
]
