"""``gate demo``: gate a good and a bad digits model through a local server (see
:mod:`gate.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dm = sub.add_parser(
        "demo",
        help="the demo: gate a good and a bad digits model through a local server",
        description=(
            "Build an imbalanced held-out set from scikit-learn's digits, train a good model and one"
            " whose rare class was starved, start a server on the embedded defaults, gate both over"
            " gRPC and print the verdicts. Exit 0 when the good model passes and the bad one fails."
        ),
    )
    dm.add_argument("--data-dir", type=Path, default=Path("gate-data"), help="where data goes (default ./gate-data)")
    dm.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gate.demo import run as run_demo

    return run_demo(args.data_dir)
