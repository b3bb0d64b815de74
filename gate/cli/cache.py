"""``gate cache info`` and ``gate cache prune``: the caches' size per cache and version,
and collecting the versions this gate no longer reads (see :mod:`gate.cache_admin`)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gate.cli.exit_codes import EXIT_ERROR
from gate.errors import GateError

if TYPE_CHECKING:
    from gate.cache_admin import VersionUsage

DESCRIPTION = (
    "Each cache (tensors, results, hashes, digests) keeps its entries in one directory per version of the code"
    " that filled them; only the current version is read. `info` lists every version with its size and state;"
    " `prune` removes the stale versions (and with --older-than the current entries not used for that long)."
    " The directory is --cache-dir, else a server's --data-dir/cache, else $GATE_CACHE_DIR, else"
    " $XDG_CACHE_HOME/gate (~/.cache/gate). Exit 0 on success, 2 when the directory cannot be read."
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cache = sub.add_parser("cache", help="show and prune the on-disk caches", description=DESCRIPTION)
    actions = cache.add_subparsers(dest="cache_command", required=True)
    info = actions.add_parser("info", help="size per cache and version", description=DESCRIPTION)
    _where(info)
    info.set_defaults(run=run_info)
    prune = actions.add_parser("prune", help="remove stale cache versions", description=DESCRIPTION)
    _where(prune)
    prune.add_argument(
        "--older-than",
        metavar="AGE",
        help="also remove current entries not used for AGE (e.g. 30d, 12h; units s, m, h, d, w)",
    )
    prune.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")
    prune.set_defaults(run=run_prune)


def _where(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--cache-dir", type=Path, metavar="DIR", help="the cache directory (as `gate eval --cache-dir`)")
    where.add_argument("--data-dir", type=Path, metavar="DIR", help="a server's data_dir: its caches are in DIR/cache")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")


def _root(args: argparse.Namespace) -> Path:
    if args.cache_dir is not None:
        return Path(args.cache_dir)
    if args.data_dir is not None:
        return Path(args.data_dir) / "cache"
    from gate.cli.eval import default_cache_dir

    return default_cache_dir()


def run_info(args: argparse.Namespace) -> int:
    from gate.cache_admin import inspect

    root = _root(args)
    try:
        usages = inspect(root)
    except (GateError, OSError) as e:
        return _fail("info", e)
    if args.format == "json":
        print(json.dumps({"cache_dir": str(root), "versions": [u.to_dict() for u in usages]}, indent=2))
        return 0
    total = sum(u.bytes for u in usages)
    print(f"cache directory {root}: {_size(total)} in {sum(u.entries for u in usages)} entries")
    rows = [("cache", "version", "state", "entries", "size", "last used", "made by")]
    for u in usages:
        d = u.to_dict()
        rows.append(
            (u.cache, u.tag or "(unversioned)", d["state"], str(u.entries), _size(u.bytes), _when(u.last_used), _by(u))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def run_prune(args: argparse.Namespace) -> int:
    from gate.cache_admin import parse_age, prune

    root = _root(args)
    try:
        older_than = parse_age(args.older_than) if args.older_than is not None else None
        report = prune(root, older_than=older_than, dry_run=args.dry_run)
    except (GateError, OSError) as e:
        return _fail("prune", e)
    if args.format == "json":
        print(json.dumps({"cache_dir": str(root), "dry_run": args.dry_run, **report.to_dict()}, indent=2))
        return 0
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"{verb} {report.removed_entries} entries ({_size(report.removed_bytes)})"
        f" and {len(report.removed_versions)} stale versions; kept {report.kept_entries} entries"
        f" ({_size(report.kept_bytes)}) in {root}"
    )
    for name in report.removed_versions:
        print(f"  {name}")
    for name in report.skipped_links:
        print(f"skipped {name}: its directory is a symbolic link, which prune never follows")
    return 0


def _fail(command: str, e: GateError | OSError) -> int:
    message = e.message if isinstance(e, GateError) else f"{e.strerror or e}: {e.filename}"
    print(f"gate cache {command}: {message}", file=sys.stderr)
    return EXIT_ERROR


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _when(t: float | None) -> str:
    return "-" if t is None else dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _by(u: VersionUsage) -> str:
    c = u.components
    if not c:
        return "-"
    return f"gate {c.get('gate')}, numpy {c.get('numpy')}, Pillow {c.get('pillow')}, code {c.get('code')}"
