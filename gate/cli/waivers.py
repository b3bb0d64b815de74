"""``gate waive`` and ``gate waivers list|revoke``: grant, list and revoke waivers on a
gate server (granting and revoking need a token with the admin role)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gate.cli.connection import add_client_options, open_client
from gate.cli.exit_codes import EXIT_ERROR
from gate.errors import GateError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wv = sub.add_parser(
        "waive",
        help="let one model pass one failing rule on one dataset until a date (admin role; recorded)",
        description="Grant a waiver: while it is valid, evaluations of MODEL on DATASET report RULE as 'waived'"
        " (its real outcome kept beside it) instead of blocking. Recorded append-only with who, when and why.",
    )
    wv.add_argument("--server", required=True, help="the gate server (HOST:PORT)")
    wv.add_argument("--model", required=True, help="the model's SHA-256")
    wv.add_argument("--dataset", required=True, help="the dataset name")
    wv.add_argument("--rule", required=True, help="the rule id to waive")
    wv.add_argument("--reason", required=True, help="why (kept in the audit log and named in every report)")
    wv.add_argument(
        "--expires",
        required=True,
        metavar="DATE",
        help="YYYY-MM-DD (holds through that day, UTC) or an ISO 8601 time with offset; at most 180 days ahead",
    )
    wv.add_argument("--format", choices=["text", "json"], default="text", help="a table, or JSON")
    add_client_options(wv)
    wv.set_defaults(run=run_waive)

    ws = sub.add_parser("waivers", help="list or revoke waivers on a gate server")
    ws_sub = ws.add_subparsers(dest="waivers_command", required=True)
    ls = ws_sub.add_parser("list", help="every waiver recorded, newest first, with its state")
    ls.add_argument("--server", required=True, help="the gate server (HOST:PORT)")
    ls.add_argument("--model", default="", help="only this model SHA-256")
    ls.add_argument("--dataset", default="", help="only this dataset")
    ls.add_argument("--format", choices=["text", "json"], default="text", help="a table, or JSON")
    add_client_options(ls)
    ls.set_defaults(run=run_list)
    rv = ws_sub.add_parser("revoke", help="end a waiver now (admin role; recorded, never erased)")
    rv.add_argument("waiver_id", help="the waiver's id (gate waivers list)")
    rv.add_argument("--server", required=True, help="the gate server (HOST:PORT)")
    rv.add_argument("--reason", required=True, help="why it is revoked")
    rv.add_argument("--format", choices=["text", "json"], default="text", help="a table, or JSON")
    add_client_options(rv)
    rv.set_defaults(run=run_revoke)


def waiver_dict(message: Any) -> dict[str, str | None]:
    """A WaiverInfo message as a plain dict (empty fields as None)."""
    names = [f.name for f in message.DESCRIPTOR.fields]
    return {name: getattr(message, name) or None for name in names}


def waiver_rows(waivers: list[dict[str, Any]]) -> list[str]:
    """The waivers as an aligned text table, header first."""
    rows = [["waiver", "state", "rule", "model", "dataset", "expires (UTC)", "granted by", "reason"]]
    for w in waivers:
        rows.append(
            [
                str(w["id"])[:12],
                str(w["state"]),
                str(w["rule_id"]),
                str(w["model_sha256"])[:12],
                str(w["dataset"]),
                str(w["expires_at"]),
                str(w["granted_by"]),
                str(w["reason"]).replace("\n", " "),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _show(waivers: list[dict[str, Any]], fmt: str, *, one: bool = False) -> None:
    if fmt == "json":
        sys.stdout.write(json.dumps(waivers[0] if one else waivers, indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(waiver_rows(waivers)) + "\n")


def _answer(args: argparse.Namespace, command: str, method: str, request: Any, *, listed: bool = False) -> int:
    """Send ``request`` to the server and print the waiver it answers with (``listed``: the
    ListWaiversResponse's waivers)."""
    try:
        with open_client(args, args.server, 60) as client:
            reply = client.call(method, request)
    except GateError as e:
        print(f"gate {command}: {e.message}", file=sys.stderr)
        return EXIT_ERROR
    _show([waiver_dict(w) for w in reply.waivers] if listed else [waiver_dict(reply)], args.format, one=not listed)
    return 0


def run_waive(args: argparse.Namespace) -> int:
    from gate._proto.gate.v1 import gate_pb2 as pb

    request = pb.WaiveRequest(
        model_sha256=args.model, dataset=args.dataset, rule_id=args.rule, reason=args.reason, expires=args.expires
    )
    return _answer(args, "waive", "Waive", request)


def run_list(args: argparse.Namespace) -> int:
    from gate._proto.gate.v1 import gate_pb2 as pb

    request = pb.ListWaiversRequest(model_sha256=args.model, dataset=args.dataset)
    return _answer(args, "waivers list", "ListWaivers", request, listed=True)


def run_revoke(args: argparse.Namespace) -> int:
    from gate._proto.gate.v1 import gate_pb2 as pb

    request = pb.RevokeWaiverRequest(waiver_id=args.waiver_id, reason=args.reason)
    return _answer(args, "waivers revoke", "RevokeWaiver", request)
