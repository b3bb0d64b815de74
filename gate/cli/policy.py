"""``gate policy validate``: check a policy file (and its class names against a dataset)
without running a model."""

from __future__ import annotations

import argparse
import sys

from gate.cli.exit_codes import EXIT_ERROR
from gate.errors import GateError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pol = sub.add_parser("policy", help="work with policy files")
    pol_sub = pol.add_subparsers(dest="policy_command", required=True)
    val = pol_sub.add_parser("validate", help="check a policy file; exit 0 when valid, 2 when not")
    val.add_argument("policy", help="policy YAML file")
    val.add_argument("--dataset", help="also check the class names against this dataset")
    val.set_defaults(run=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    from gate.datasets import load_dataset
    from gate.policy import load_policy, vacuous_rules

    try:
        policy = load_policy(args.policy)
        where = ""
        if args.dataset:
            ds = load_dataset(args.dataset)
            policy.check_classes(ds.classes)
            where = f" against dataset '{ds.name}' ({len(ds.classes)} classes)"
    except GateError as e:
        print(f"{e.kind}: {e.message}", file=sys.stderr)
        return EXIT_ERROR
    print(f"policy '{policy.name}' ({args.policy}) is valid{where}: {len(policy.rules)} rules, sha256 {policy.sha256}")
    for rule in policy.rules:
        print(f"  {rule.severity.value:5}  {rule.id}  ({rule.type})")
    for vacuous in vacuous_rules(policy):  # valid, but a rule no model can fail is likely a mistake
        print(f"warning: {vacuous}: no model can fail this rule", file=sys.stderr)
    return 0
