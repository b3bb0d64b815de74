"""Where a verdict goes once ``gate eval`` or ``gate check`` has it: the report on stdout
or in ``--output``, every report in ``--report-dir``, the signed attestation file and
the CI job summary; and the progress bar shown while it is computed.

Every file is written whole or not at all (:mod:`gate.atomic`): a CD step never reads
half a verdict. The renderers are imported when a verdict is written, not when the
parser is built, so ``gate --help`` loads no numerical code.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from gate.atomic import atomic_write
from gate.cli.exit_codes import EXIT_ERROR
from gate.verdict import Verdict

# the names of gate.report.RENDERERS, sorted (a test keeps the two equal)
REPORT_FORMATS = ("html", "json", "junit", "markdown", "text")
REPORT_FILES = {"json": "verdict.json", "markdown": "report.md", "junit": "junit.xml", "html": "report.html"}


def add_format_options(p: argparse.ArgumentParser) -> None:
    """``--format`` and ``--output``: the one report a command prints or writes."""
    p.add_argument("--format", choices=REPORT_FORMATS, default="text", help="report format (default: text)")
    p.add_argument("--output", type=Path, help="write the report to this file (atomically) instead of stdout")


def add_report_options(p: argparse.ArgumentParser) -> None:
    """``--report-dir`` (every report at once) and ``--quiet``."""
    p.add_argument(
        "--report-dir",
        type=Path,
        help="also write every report there: " + ", ".join(REPORT_FILES.values()),
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar on stderr")


class Progress:
    """A progress bar on stderr, only when stderr is a terminal and not ``--quiet``."""

    WIDTH = 30

    def __init__(self, quiet: bool) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.shown = False
        self.started = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or (done < total and now - self.last < 0.1):
            return
        self.last = now
        filled = self.WIDTH * done // max(total, 1)
        rate = done / max(now - self.started, 1e-9)
        sys.stderr.write(f"\rgate: [{'#' * filled}{'.' * (self.WIDTH - filled)}] {done}/{total} samples, {rate:,.0f}/s")
        sys.stderr.flush()
        self.shown = True

    def end(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


def deliver_verdict(verdict: Verdict, attestation: str | None, args: argparse.Namespace, command: str) -> int:
    """Log the verdict's error, write the attestation and the reports; the exit code.

    A verdict whose attestation cannot be written exits 2 whatever the verdict: the
    deploy step that reads the attestation would otherwise find none, or a stale one.
    """
    if verdict.error:
        logging.getLogger("gate").error("%s: %s", verdict.error["type"], verdict.error["message"])
    written = write_attestation(args.attestation_out, attestation, command)
    code = emit_verdict(verdict, args, command)
    return code if written else EXIT_ERROR


def write_attestation(path: Path | None, text: str | None, command: str) -> bool:
    """Write the attestation to ``path`` atomically; with none to write, remove what is
    there (a stale one must not pass for this verdict's). False when it cannot be written."""
    if path is None:
        return True
    try:
        if text is None:
            path.unlink(missing_ok=True)
            print(f"gate {command}: no attestation came with the verdict; nothing written to {path}", file=sys.stderr)
        else:
            atomic_write(path, text, fsync=True)
    except OSError as e:
        print(f"gate {command}: cannot write {path}: {e.strerror}", file=sys.stderr)
        return False
    return True


def emit_verdict(verdict: Verdict, args: argparse.Namespace, command: str) -> int:
    """Print (or write) the report; write the report directory and the CI job summary."""
    from gate.report import renderer  # the renderers asked for alone

    try:
        if args.report_dir is not None:
            for fmt, name in REPORT_FILES.items():
                atomic_write(args.report_dir / name, renderer(fmt)(verdict), fsync=True)
            print(f"reports written to {args.report_dir}", file=sys.stderr)
        text = renderer(args.format)(verdict)
        if args.output is not None:
            atomic_write(args.output, text, fsync=True)
            print(f"verdict {verdict.decision.value} written to {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
    except OSError as e:
        print(f"gate {command}: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return EXIT_ERROR
    _append_job_summary(verdict, command)
    return verdict.exit_code


def _append_job_summary(verdict: Verdict, command: str) -> None:
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not summary:
        return
    from gate.report import render_markdown

    try:
        with open(summary, "a", encoding="utf-8") as f:
            f.write(render_markdown(verdict) + "\n")
    except OSError as e:  # a missing job summary must not change the gate's answer
        print(f"gate {command}: cannot append to GITHUB_STEP_SUMMARY ({summary}): {e.strerror}", file=sys.stderr)
