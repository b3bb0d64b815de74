"""``gate replay``: what a policy would have said of the evaluations already recorded,
judged from their stored evidence (no model runs), from a server or an audit database."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gate.cli.connection import add_client_options, open_client
from gate.cli.exit_codes import EXIT_ERROR
from gate.errors import GateError, RequestError

if TYPE_CHECKING:
    from gate.replay import ReplayReport, ReplayRow


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rp = sub.add_parser(
        "replay",
        help="judge recorded evaluations again by another policy, from their stored evidence (no model runs)",
        description="Re-judge recorded evaluations by POLICY from what their verdicts stored. Exit 0 unless the"
        " replay itself fails (2), whatever the verdicts.",
    )
    rp.add_argument("--policy", required=True, type=Path, help="the policy YAML file to replay")
    src = rp.add_mutually_exclusive_group()
    src.add_argument("--server", help="ask a running gate server (HOST:PORT)")
    src.add_argument("--config", type=Path, help="read the audit database of this configuration")
    src.add_argument("--data-dir", type=Path, help="read the audit database in this data directory")
    rp.add_argument("--dataset", default="", help="only evaluations on this dataset")
    rp.add_argument("--since", default="", metavar="DATE", help="only evaluations accepted on or after DATE")
    rp.add_argument("--limit", type=int, default=0, help="at most this many evaluations, newest first (default 1000)")
    rp.add_argument(
        "--format",
        choices=["text", "json", "markdown"],
        default="text",
        help="how to print the report (json: gate.replay/v1)",
    )
    add_client_options(rp)
    rp.set_defaults(run=run)


def _from_server(args: argparse.Namespace, policy_yaml: str) -> ReplayReport:
    from gate._proto.gate.v1 import gate_pb2 as pb
    from gate.replay import ReplayReport

    request = pb.ReplayPolicyRequest(policy_yaml=policy_yaml, dataset=args.dataset, since=args.since, limit=args.limit)
    with open_client(args, args.server, 300) as client:
        reply = client.call("ReplayPolicy", request)
    return ReplayReport.from_dict(json.loads(reply.report_json))


def _from_store(args: argparse.Namespace) -> ReplayReport:
    from gate.policy import load_policy
    from gate.replay import parse_since, replay_store
    from gate.store import open_store, sqlite_path

    policy = load_policy(args.policy)
    if args.data_dir is not None:
        target, cache = str(args.data_dir / "audit.sqlite3"), args.data_dir / "cache"
    else:
        from gate.config import load_config

        config = load_config(args.config)
        target, cache = config.store_target, config.cache_dir
    db = sqlite_path(target)
    if db is not None and not db.is_file():
        raise RequestError(f"no audit database at {db}")
    with open_store(target) as store:
        return replay_store(
            store,
            policy,
            results=cache / "results",  # opened only if a rule needs a predictions table
            dataset=args.dataset or None,
            since=parse_since(args.since) if args.since else None,
            limit=args.limit or None,
        )


def _row_line(r: ReplayRow) -> str:
    name = f" ({r.model_name})" if r.model_name else ""
    head = f"{r.evaluation_id[:12]}  {r.created_at}  {r.model_sha256[:12]}{name} on {r.dataset}: "
    if r.new is None:
        return head + f"{r.old or 'RUNNING'} -> not replayable: {r.reason}"
    return head + f"{r.old} -> {r.new}" + (f"  ({r.change})" if r.change != "same" else "")


def render_text(report: ReplayReport) -> str:
    out = [f"Replay of policy '{report.policy.get('name')}' (sha256 {str(report.policy.get('sha256'))[:12]})", ""]
    for r in report.rows:
        out.append(_row_line(r))
        out += [f"    blocks: {b}" for b in r.blocking if r.new != r.old]
    out += ["", report.summary()]
    return "\n".join(out) + "\n"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: ReplayReport) -> str:
    out = [f"## gate replay: policy `{_cell(report.policy.get('name'))}`", "", f"**{report.summary()}**", ""]
    out += ["| evaluation | accepted | model | dataset | recorded | now | change | blocking rules or reason |"]
    out += ["|---|---|---|---|---|---|---|---|"]
    for r in report.rows:
        why = r.reason if r.new is None else "; ".join(r.blocking)
        cells = [r.evaluation_id[:12], r.created_at, r.model_name or r.model_sha256[:12], r.dataset]
        cells += [r.old or "RUNNING", r.new or "—", r.change, why or ""]
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace) -> int:
    from gate.replay import ReplayReport

    try:
        if args.server:
            try:
                policy_yaml = args.policy.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise RequestError(f"cannot read policy {args.policy}: {e}") from e
            report = _from_server(args, policy_yaml)
        else:
            report = _from_store(args)
    except GateError as e:
        print(f"gate replay: {e.message}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as e:
        print(f"gate replay: {e}", file=sys.stderr)
        return EXIT_ERROR
    renderers: dict[str, Callable[[ReplayReport], str]] = {
        "json": ReplayReport.to_json,
        "markdown": render_markdown,
        "text": render_text,
    }
    sys.stdout.write(renderers[args.format](report))
    return 0
