"""``gate contract``: check a model file against the ``model_contract`` rules of a policy,
without a dataset and without running the model (exit 0 PASS, 1 FAIL, 2 ERROR)."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

from gate.cli.verdict_output import add_format_options, add_report_options, deliver_verdict
from gate.verdict import Decision, Verdict


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    co = sub.add_parser(
        "contract",
        help="check a model's serving contract (inputs, outputs, opsets, size, class metadata) without a dataset",
        description=(
            "Check MODEL against the `model_contract` rules of POLICY (its other rules need a dataset and are"
            " left to `gate eval`). The model is read, never run. With --dataset, `require_class_metadata`"
            " also compares the declared classes with the dataset's, in order. Exit 0 PASS, 1 FAIL, 2 ERROR."
        ),
    )
    co.add_argument("--model", required=True, type=Path, help="ONNX model file")
    co.add_argument("--policy", "--policy-file", dest="policy", required=True, type=Path, help="policy YAML file")
    co.add_argument("--dataset", help="dataset whose class order the class metadata must follow (optional)")
    add_format_options(co)
    add_report_options(co)
    co.set_defaults(run=run_contract, attestation_out=None)


def contract_verdict(model: Path, policy: Path, dataset: str | None = None) -> Verdict:
    """The verdict of the policy's contract rules on ``model``; ERROR (never raised) for a
    bad model, policy or dataset, or a policy without contract rules."""
    from gate.deployment.contract import describe_model
    from gate.engines.base import read_model
    from gate.errors import GateError, PolicyError
    from gate.policy import load_policy
    from gate.policy.deployment_rules import ModelContractRule
    from gate.verdict import decide

    started = time.perf_counter()
    verdict = Verdict(
        decision=Decision.ERROR,
        model={"sha256": None, "path": str(model)},
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    try:
        pol = load_policy(policy)
        verdict.policy = pol.to_dict()
        rules = [r for r in pol.rules if isinstance(r, ModelContractRule)]
        if not rules:
            raise PolicyError(f"policy '{pol.name}' ({pol.source}) has no model_contract rule for `gate contract`")
        classes = _classes(dataset) if dataset is not None else None
        data = read_model(model, "model", str(model), None)
        verdict.model = {"sha256": data.sha256, "path": str(model), "bytes": len(data.data)}
        described = describe_model(data.data, data.source)
        verdict.rules = [rule.judge(described, classes) for rule in rules]
        verdict.decision = decide(verdict.rules)
    except GateError as e:
        verdict.error = {"type": e.kind, "message": e.message}
    verdict.duration_s = round(time.perf_counter() - started, 6)
    return verdict


def _classes(dataset: str) -> list[str]:
    from gate.datasets import load_dataset

    ds = load_dataset(dataset)
    verdict_classes: list[str] = list(ds.classes)
    return verdict_classes


def run_contract(args: argparse.Namespace) -> int:
    verdict = contract_verdict(args.model, args.policy, args.dataset)
    return deliver_verdict(verdict, None, args, "contract")
