"""The ``gate`` command line. Exit codes (a contract): 0 PASS, 1 FAIL, 2 ERROR.

Flags and environment are read here and nowhere deeper. With ``--format json`` stdout
carries exactly one JSON document; logs always go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gate import __version__
from gate.errors import GateError
from gate.inference import PROVIDERS
from gate.report import RENDERERS
from gate.verdict import Decision

EXIT_ERROR = 2


def _write_atomic(path: Path, text: str) -> None:
    """Write the whole file or nothing: a reader never sees half a verdict."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gate", description="Production-readiness gate for ONNX image classifiers.")
    p.add_argument("--version", action="version", version=f"gate {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True)

    ev = sub.add_parser(
        "eval",
        help="evaluate a model on a held-out set against a policy",
        description=(
            "Run MODEL on DATASET and judge it by POLICY. Exit 0 PASS, 1 FAIL, 2 ERROR. DATASET is a"
            " dataset spec YAML, an .npz file (x, y, optional classes; tensors go to the model as they"
            " are), an ImageFolder directory (class/image files; RGB, NCHW, pixels divided by 255, no"
            " resize) or a .csv/.jsonl manifest (path,label)."
        ),
    )
    ev.add_argument("--model", required=True, help="ONNX model file")
    ev.add_argument("--dataset", required=True, help="dataset spec YAML, .npz, ImageFolder directory or manifest")
    ev.add_argument("--policy", required=True, help="policy YAML file")
    ev.add_argument("--format", choices=sorted(RENDERERS), default="text", help="report format (default: text)")
    ev.add_argument("--output", type=Path, help="write the report to this file (atomically) instead of stdout")
    ev.add_argument("--provider", choices=PROVIDERS, default="auto", help="execution provider (default: auto)")
    ev.add_argument(
        "--batch-size", type=int, help="samples per inference batch (default: 64; 1 for fixed-batch models)"
    )

    pol = sub.add_parser("policy", help="work with policy files")
    pol_sub = pol.add_subparsers(dest="policy_command", required=True)
    val = pol_sub.add_parser("validate", help="check a policy file; exit 0 when valid, 2 when not")
    val.add_argument("policy", help="policy YAML file")
    val.add_argument("--dataset", help="also check the class names against this dataset")
    return p


def _cmd_eval(args: argparse.Namespace) -> int:
    from gate.evaluation import evaluate

    verdict = evaluate(args.model, args.dataset, args.policy, provider=args.provider, batch_size=args.batch_size)
    text = RENDERERS[args.format](verdict)
    if args.output is not None:
        try:
            _write_atomic(args.output, text)
        except OSError as e:
            print(f"gate eval: cannot write {args.output}: {e.strerror}", file=sys.stderr)
            return EXIT_ERROR
        print(f"verdict {verdict.decision.value} written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if verdict.error:
        logging.getLogger("gate").error("%s: %s", verdict.error["type"], verdict.error["message"])
    return verdict.exit_code


def _cmd_policy_validate(args: argparse.Namespace) -> int:
    from gate.datasets import load_dataset
    from gate.policy import load_policy

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
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "eval":
            return _cmd_eval(args)
        return _cmd_policy_validate(args)
    except KeyboardInterrupt:
        print("gate: interrupted", file=sys.stderr)
        return EXIT_ERROR


def entry() -> None:
    """Console-script entry point."""
    code = main()
    assert code in (d.exit_code for d in Decision) or code == EXIT_ERROR
    sys.exit(code)


if __name__ == "__main__":
    entry()
