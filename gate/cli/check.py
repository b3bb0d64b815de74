"""The commands that ask a running gate server: ``gate check`` (upload a model and gate
it on a registered held-out set, the remote ``gate eval``) and ``gate health``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gate.cli.connection import add_client_options, open_client
from gate.cli.eval import add_evidence_options, add_label_issues_option, check_label_issues_out
from gate.cli.exit_codes import EXIT_ERROR
from gate.cli.verdict_output import Progress, add_format_options, add_report_options, deliver_verdict
from gate.errors import GateError, RequestError
from gate.providers import PROVIDERS
from gate.verdict import Decision, Verdict


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ck = sub.add_parser(
        "check",
        help="gate a model through a gate server",
        description=(
            "Upload MODEL to the gate server and evaluate it on the server's registered held-out set"
            " DATASET with POLICY (a registered policy name, or with --policy-file a local policy file sent"
            " inline)."
            " Same exit codes and verdict JSON as `gate eval`: 0 PASS, 1 FAIL, 2 ERROR."
        ),
    )
    ck.add_argument("--server", required=True, help="HOST:PORT of the gate server")
    ck.add_argument("--model", required=True, type=Path, help="ONNX model file")
    ck.add_argument("--dataset", required=True, help="name of a dataset registered on the server")
    policy = ck.add_mutually_exclusive_group(required=True)
    policy.add_argument("--policy", help="registered policy name (for a local policy file: --policy-file)")
    policy.add_argument("--policy-file", type=Path, metavar="FILE", help="local policy YAML file, sent inline")
    add_format_options(ck)
    ck.add_argument("--provider", choices=PROVIDERS, help="execution provider (default: the server's)")
    ck.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="label the evaluation (pipeline_id=..., git_sha=..., or any key); repeatable",
    )
    ck.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the verdict (default 3600)")
    add_evidence_options(ck)
    ck.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="[NAME=]FILE",
        help=(
            "a reference model for `provider_parity` rules with `reference: NAME` (uploaded like the champion);"
            " FILE alone stands for the NAME its file name gives; repeatable"
        ),
    )
    ck.add_argument(
        "--attestation-out",
        type=Path,
        metavar="FILE",
        help="write the server's signed attestation of the verdict there (for `gate verify` in a deploy step)",
    )
    ck.add_argument(
        "--predictions-out",
        type=Path,
        metavar="FILE",
        help="write the per-sample predictions table there (.csv or .parquet, as `gate eval` does) on PASS or FAIL",
    )
    add_label_issues_option(ck)
    add_report_options(ck)
    add_client_options(ck)
    ck.set_defaults(run=run_check)

    he = sub.add_parser("health", help="ask a gate server whether it is serving (exit 0) or not (exit 1)")
    he.add_argument("--server", default="127.0.0.1:50051", help="HOST:PORT (default 127.0.0.1:50051)")
    he.add_argument("--service", default="", help="service name to ask about (default: the whole server)")
    he.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    add_client_options(he)
    he.set_defaults(run=run_health)


def parse_labels(pairs: list[str]) -> dict[str, Any]:
    """``--label KEY=VALUE`` pairs as the Labels message wants them: the known keys, then ``extra``."""
    labels: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise RequestError(f"--label {pair!r} is not valid; it should be KEY=VALUE")
        if key in ("pipeline_id", "git_sha"):
            labels[key] = value
        else:
            extra[key] = value
    if extra:
        labels["extra"] = extra
    return labels


def parse_references(entries: list[str]) -> dict[str, Path]:
    """``--reference [NAME=]FILE`` entries by NAME: an existing FILE alone is named by its
    file name (what a rule's ``reference:`` usually says), else the text before the first
    ``=`` is the NAME."""
    found: dict[str, Path] = {}
    for entry in entries:
        name, sep, file = entry.partition("=")
        if Path(entry).is_file() or not sep:
            name, file = Path(entry).name, entry
        if not name or not file:
            raise RequestError(f"--reference {entry!r} is not valid; it should be FILE or NAME=FILE")
        if name in found:
            raise RequestError(f"--reference names '{name}' twice ({found[name]} and {file})")
        found[name] = Path(file)
    return found


def _upload_references(client: Any, references: dict[str, tuple[Path, bytes]]) -> dict[str, str]:
    """Upload each reference model as the champion is (content-addressed: the server keeps
    one copy of each); reference name -> its SHA-256."""
    return {name: client.upload_model(data, filename=path.name).sha256 for name, (path, data) in references.items()}


def _request_error(args: argparse.Namespace, kind: str, message: str) -> Verdict:
    """The ERROR verdict of a check that never got a verdict from the server."""
    return Verdict(
        decision=Decision.ERROR,
        model={"sha256": None, "path": str(args.model)},
        error={"type": kind, "message": message},
    )


def policy_file(args: argparse.Namespace) -> Path | None:
    """The local policy file to send inline, or None for a registered policy name.

    ``--policy`` naming an existing file is the older spelling of ``--policy-file``: it
    still works, with a note, because guessing from the file system can pick a local
    file where a registered name was meant.
    """
    if args.policy_file is not None:
        path: Path = args.policy_file
        return path
    if Path(args.policy).is_file():
        print(f"gate check: --policy with a file is deprecated; use --policy-file {args.policy}", file=sys.stderr)
        return Path(args.policy)
    return None


def _evaluate_remotely(args: argparse.Namespace, progress: Progress) -> tuple[Verdict, str | None]:
    """Upload the model (and the champion), evaluate, and return the verdict and its attestation."""
    if args.predictions_out is not None:  # refused before the server spends an evaluation on it
        from gate.predictions import check_predictions_path

        check_predictions_path(args.predictions_out)
    check_label_issues_out(args)
    local_policy = policy_file(args)
    labels = parse_labels(args.label)
    references = {name: (path, path.read_bytes()) for name, path in parse_references(args.reference).items()}
    data = args.model.read_bytes()
    champion = args.baseline.read_bytes() if args.baseline is not None else None
    prints = args.fingerprint.read_bytes() if args.fingerprint is not None else b""
    policy_yaml = local_policy.read_text(encoding="utf-8") if local_policy is not None else None
    with open_client(args, args.server, args.timeout) as client:
        # the client hashes each model once, as it streams it, and checks the server's reference
        model_ref = client.upload_model(data, filename=args.model.name)
        champion_sha = client.upload_model(champion, filename=args.baseline.name).sha256 if champion is not None else ""
        reference_shas = _upload_references(client, references)
        evaluation = client.evaluate(
            model_ref.sha256,
            args.dataset,
            policy_name=None if policy_yaml is not None else args.policy,
            policy_yaml=policy_yaml,
            labels=labels,
            provider=args.provider,
            model_name=str(args.model),
            on_progress=progress,
            baseline_sha256=champion_sha,
            fingerprint=prints,
            reference_sha256=reference_shas,
        )
        if args.predictions_out is not None and evaluation.document["verdict"] in ("PASS", "FAIL"):
            client.save_predictions(evaluation.evaluation_id, args.predictions_out)
    return Verdict.from_dict(evaluation.document), evaluation.attestation


def run_check(args: argparse.Namespace) -> int:
    from gate.client import GateClientError

    progress = Progress(args.quiet)
    attestation: str | None = None
    try:
        verdict, attestation = _evaluate_remotely(args, progress)
    except GateClientError as e:
        verdict = _request_error(args, "ServiceError", e.message)
    except RequestError as e:
        verdict = _request_error(args, e.kind, e.message)
    except OSError as e:
        verdict = _request_error(args, "RequestError", f"cannot read {e.filename}: {e.strerror}")
    finally:
        progress.end()
    code = deliver_verdict(verdict, attestation, args, "check")
    from gate.heldout.issues_file import deliver_label_issues

    return code if deliver_label_issues(verdict, args.label_issues_out, "check") else EXIT_ERROR


def run_health(args: argparse.Namespace) -> int:
    try:
        with open_client(args, args.server, args.timeout) as client:
            status = client.health(args.service)
    except GateError as e:
        print(f"gate health: {args.server}: {e.message}", file=sys.stderr)
        return 1
    print(status)
    return 0 if status == "SERVING" else 1
