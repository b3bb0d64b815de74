"""The suspects file for the held-out set's owner (``--label-issues-out FILE.csv``):
one row per suspected label error, most doubtful first, read from a verdict's
``dataset_audit.label_issues`` (so ``gate eval`` and ``gate check`` write the same file).

Columns: ``sample_id, given_label, suggested_label, confidence,
given_label_probability``. Written whole or not at all.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gate.atomic import atomic_file
from gate.errors import RequestError
from gate.verdict import Decision, Verdict

COLUMNS = ("sample_id", "given_label", "suggested_label", "confidence", "given_label_probability")


def check_issues_path(path: str | os.PathLike[str], *, others: Mapping[str, Path | None] | None = None) -> Path:
    """``path`` if it names a .csv file that none of the command's ``others`` outputs (option
    -> file) names too, else a RequestError naming it: written last, the suspects would
    replace the predictions table or the report written there."""
    target = Path(path)
    if target.suffix.lower() != ".csv":
        raise RequestError(f"label issues file {target}: use a .csv file name (got '{target.suffix or 'no suffix'}')")
    for option, other in (others or {}).items():
        if other is not None and _same_file(target, other):
            raise RequestError(f"label issues file {target}: {option} names the same file; give each its own")
    return target


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same path once links are followed, or (both
    existing) one file under two names, as a hard link gives."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def label_issues_of(audit: dict[str, Any] | None) -> dict[str, Any] | None:
    """The verdict's label audit, or None when the verdict holds none."""
    found = (audit or {}).get("label_issues")
    return found if isinstance(found, dict) else None


def write_label_issues(section: dict[str, Any], path: str | os.PathLike[str]) -> int:
    """Write the suspects of ``section`` (a verdict's ``dataset_audit.label_issues``) to
    ``path``; the number of rows written."""
    target = check_issues_path(path)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    rows = section.get("issues", [])
    for row in rows:
        writer.writerow(row)
    try:
        with atomic_file(target, fsync=True, mode=0o644) as f:
            f.write(text.getvalue().encode("utf-8"))
    except OSError as e:
        raise RequestError(f"cannot write label issues file {target}: {e.strerror or e}") from e
    return len(rows)


def deliver_label_issues(verdict: Verdict, path: Path | None, command: str) -> bool:
    """Write the suspects file a command was asked for (``path``; None: not asked). False,
    with the reason on stderr, when it was asked for and cannot be written: the verdict
    holds no label audit (its policy has no ``label_quality`` rule) or the file cannot be
    written. An ERROR verdict writes nothing; it says why itself."""
    if path is None or verdict.decision is Decision.ERROR:
        return True
    section = label_issues_of(verdict.dataset_audit)
    if section is None:
        print(
            f"gate {command}: --label-issues-out {path}: the verdict holds no label audit;"
            " the policy needs a `label_quality` rule",
            file=sys.stderr,
        )
        return False
    try:
        written = write_label_issues(section, path)
    except RequestError as e:
        print(f"gate {command}: {e.message}", file=sys.stderr)
        return False
    total = section.get("count", written)
    listed = f" (the first {written} of {total}: the verdict lists no more)" if written != total else ""
    print(f"gate {command}: {written} suspected label error(s) written to {path}{listed}", file=sys.stderr)
    return True
