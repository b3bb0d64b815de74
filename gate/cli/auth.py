"""``gate token``: bearer tokens for the server's ``tokens:`` configuration, which stores
only their SHA-256."""

from __future__ import annotations

import argparse
import secrets
import sys

from gate.cli.exit_codes import EXIT_ERROR
from gate.tokens import token_sha256


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tok = sub.add_parser("token", help="make bearer tokens for the server's `tokens:` configuration")
    tok_sub = tok.add_subparsers(dest="token_command", required=True)
    tok_sub.add_parser(
        "new", help="print a fresh random token and its SHA-256 (the configuration takes the hash)"
    ).set_defaults(run=run)
    tok_sub.add_parser("hash", help="read a token on stdin and print its SHA-256").set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.token_command == "new":
        token = secrets.token_urlsafe(32)  # 256 random bits: an unsalted hash is safe to store
        print(f"token: {token}")
        print(f"sha256: {token_sha256(token)}")
        return 0
    token = sys.stdin.read().strip()
    if not token:
        print("gate token hash: no token on stdin", file=sys.stderr)
        return EXIT_ERROR
    print(token_sha256(token))
    return 0
