"""``gate history``: the recorded evaluations, newest first, from a running server or
straight from a configuration's audit database."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gate.cli.connection import add_client_options, open_client
from gate.cli.exit_codes import EXIT_ERROR
from gate.errors import GateError, RequestError

if TYPE_CHECKING:
    from gate.store import EvaluationRecord


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hi = sub.add_parser("history", help="list recorded evaluations, newest first")
    src = hi.add_mutually_exclusive_group()
    src.add_argument("--server", help="ask a running gate server (HOST:PORT)")
    src.add_argument("--config", type=Path, help="read the audit database of this configuration")
    src.add_argument("--data-dir", type=Path, help="read the audit database in this data directory")
    hi.add_argument("--model", default="", help="only this model SHA-256")
    hi.add_argument("--dataset", default="", help="only this dataset")
    hi.add_argument("--policy", default="", help="only this policy")
    hi.add_argument("--verdict", choices=["PASS", "FAIL", "ERROR"], help="only this verdict")
    hi.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    hi.add_argument(
        "--format", choices=["text", "json"], default="text", help="text: one line per evaluation; json: one JSON list"
    )
    add_client_options(hi)
    hi.set_defaults(run=run)


def _from_server(args: argparse.Namespace) -> list[EvaluationRecord]:
    from gate.store import EvaluationRecord
    from gate.wire import DECISION_NAMES, labels_to_dict

    with open_client(args, args.server, 60) as client:
        # summaries, page after page: the decision is all a row shows of the verdict
        found = client.list_verdicts(
            model_sha256=args.model,
            dataset=args.dataset,
            policy=args.policy,
            decision=args.verdict,
            limit=args.limit,
            full=False,
        )
    return [
        EvaluationRecord(
            evaluation_id=r.evaluation_id,
            state=r.state,
            created_at=r.created_at,
            finished_at=r.finished_at or None,
            model_sha256=r.model_sha256,
            model_name=None,
            dataset=r.dataset,
            policy=r.policy,
            labels=labels_to_dict(r.labels),
            requested_provider="",
            verdict={"verdict": DECISION_NAMES[r.verdict.decision]} if r.verdict.decision else None,
        )
        for r in found
    ]


def _from_store(args: argparse.Namespace) -> list[EvaluationRecord]:
    from gate.config import load_config
    from gate.store import open_store, sqlite_path

    # the configuration's store: its SQLite file, or the PostgreSQL database replicas share
    if args.data_dir is not None:
        target = str(args.data_dir / "audit.sqlite3")
    else:
        target = load_config(args.config).store_target
    db = sqlite_path(target)
    if db is not None and not db.is_file():
        raise RequestError(f"no audit database at {db}")
    with open_store(target) as store:
        return store.list(
            model_sha256=args.model or None,
            dataset=args.dataset or None,
            policy=args.policy or None,
            decision=args.verdict,
            limit=args.limit,
        )


def history_rows(records: list[dict[str, Any]]) -> list[str]:
    """The records as an aligned text table, header first."""
    rows = [["created (UTC)", "evaluation", "verdict", "model", "dataset", "policy", "labels"]]
    for r in records:
        labels = r.get("labels") or {}
        shown = [f"{k}={v}" for k, v in labels.items() if k != "extra"] + [
            f"{k}={v}" for k, v in (labels.get("extra") or {}).items()
        ]
        rows.append(
            [
                r["created_at"],
                r["evaluation_id"][:12],
                r["verdict"] or r["state"].upper(),
                (r["model_sha256"] or "")[:12],
                r["dataset"],
                r["policy"],
                " ".join(shown),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _summary(r: EvaluationRecord) -> dict[str, Any]:
    return {
        "evaluation_id": r.evaluation_id,
        "state": r.state,
        "created_at": r.created_at,
        "finished_at": r.finished_at,
        "model_sha256": r.model_sha256,
        "dataset": r.dataset,
        "policy": r.policy,
        "labels": r.labels,
        "verdict": r.decision,
    }


def run(args: argparse.Namespace) -> int:
    try:
        found = _from_server(args) if args.server else _from_store(args)
    except GateError as e:
        print(f"gate history: {e.message}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as e:
        print(f"gate history: {e}", file=sys.stderr)
        return EXIT_ERROR
    records = [_summary(r) for r in found]
    if args.format == "json":
        sys.stdout.write(json.dumps(records, indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(history_rows(records)) + "\n")
    return 0
