"""The ``gate`` command line. Exit codes (a contract): 0 PASS, 1 FAIL, 2 ERROR.

Flags and environment are read here and nowhere deeper (``GATE_TOKEN`` included: the
bearer token of the commands that talk to a server). With ``--format json`` stdout
carries exactly one JSON document; logs always go to stderr.

Each command group is a module of this package that registers its subcommands and
options (``register``) beside the code that runs them; this module builds the parser
from them and dispatches. A command imports what it needs when it runs, so commands
that never run a model (``gate verify``, ``gate token``, ``gate history``, ``gate key
show``, ``gate policy validate``, ``gate --help``) do not load ONNX Runtime.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from gate import __version__
from gate.cli import attest, auth, cache, check, contract, demo, fingerprint, history, policy, serve
from gate.cli import diff as diff_command
from gate.cli import eval as eval_command
from gate.cli import replay as replay_command
from gate.cli import waivers as waiver_commands
from gate.cli.exit_codes import EXIT_ERROR
from gate.logs import configure as configure_logging
from gate.verdict import Decision

# in the order `gate --help` lists them
COMMAND_GROUPS = (
    eval_command,
    check,
    contract,
    serve,
    history,
    demo,
    policy,
    fingerprint,
    auth,
    attest,
    cache,
    replay_command,
    diff_command,
    waiver_commands,
)

# the commands each group registers (a test keeps this equal to what their `register` adds)
GROUP_OF_COMMAND = {
    "eval": eval_command,
    "check": check,
    "health": check,
    "contract": contract,
    "serve": serve,
    "history": history,
    "demo": demo,
    "policy": policy,
    "fingerprint": fingerprint,
    "token": auth,
    "verify": attest,
    "key": attest,
    "cache": cache,
    "replay": replay_command,
    "diff": diff_command,
    "waive": waiver_commands,
    "waivers": waiver_commands,
}


def build_parser(*, command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line: every command group's subcommands, each with its ``run``.

    Given ``command``, the one about to run, only its group's subcommands are built (some
    200 options fewer to build for a single evaluation); they parse and print exactly as in
    the whole parser. An unknown command, or none, gets every group, so that ``gate
    --help`` and the message for a mistyped command list them all."""
    p = argparse.ArgumentParser(prog="gate", description="Production-readiness gate for ONNX image classifiers.")
    p.add_argument("--version", action="version", version=f"gate {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True)
    group = GROUP_OF_COMMAND.get(command) if command is not None else None
    for each in COMMAND_GROUPS if group is None else (group,):
        each.register(sub)
    return p


def command_named(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs: its first argument that is not an option (``gate``'s own
    options take no value), or None."""
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(command=command_named(argv)).parse_args(argv)
    # the server reports what it does; the other commands only problems
    level = (logging.INFO if args.command == "serve" else logging.WARNING, logging.INFO, logging.DEBUG)[
        min(args.verbose, 2)
    ]
    configure_logging(level, "text")
    args.log_level = level
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        print("gate: interrupted", file=sys.stderr)
        return EXIT_ERROR
    return code


def entry() -> None:
    """Console-script entry point."""
    code = main()
    assert code in (d.exit_code for d in Decision) or code == EXIT_ERROR
    sys.exit(code)


__all__ = ["EXIT_ERROR", "GROUP_OF_COMMAND", "build_parser", "command_named", "entry", "main"]
