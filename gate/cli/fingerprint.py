"""``gate fingerprint``: perceptual hashes of a training set, for ``leakage`` rules (see
:mod:`gate.leakage`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gate.cli.exit_codes import EXIT_ERROR
from gate.errors import GateError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fp = sub.add_parser(
        "fingerprint",
        help="perceptual hashes of training images, for `leakage` rules",
        description=(
            "Hash every image under TRAIN_DIR (any tree of image files, e.g. an ImageFolder) with a 64-bit"
            " perceptual hash that survives resizing and re-encoding, and write them to OUTPUT (a"
            " gate.fingerprint/v1 file). Give it to `gate eval --fingerprint` or `gate check --fingerprint`."
            " Exit 0 when written, 2 when an image cannot be read (nothing is written)."
        ),
    )
    fp.add_argument("train_dir", type=Path, metavar="TRAIN_DIR", help="directory of training images")
    fp.add_argument("-o", "--output", required=True, type=Path, metavar="OUTPUT", help="fingerprint file to write")
    fp.add_argument("--workers", type=int, help="parallel hashing workers (default: one per core)")
    fp.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gate.leakage import fingerprint_command

    try:
        prints = fingerprint_command(args.train_dir, args.output, args.workers)
    except GateError as e:
        print(f"gate fingerprint: {e.message}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{len(prints)} images fingerprinted into {args.output} (sha256 {prints.sha256})")
    return 0
