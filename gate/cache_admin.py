"""What is in a cache directory, and collecting what is no longer served (``gate cache
info`` and ``gate cache prune``).

A cache directory (``gate eval``'s ``--cache-dir``, or a server's ``data_dir/cache``)
holds one sub-directory per on-disk cache, and in it one directory per version of the
code that filled it (:mod:`gate.cache_version`). Only the current version of each cache
is ever read; other versions, and files from before caches were versioned, are stale:
``prune`` removes them, and with ``older_than`` also the current entries not used for
that long (an entry's modification time is the last time it was written or served).

Pruning never follows a symbolic link (a link is removed as a link; a cache directory that
is itself a link is skipped, named in the report, since its entries live elsewhere), never
touches a directory that is not one of the caches nor, inside one, a directory whose name
is not a version's tag, and leaves temporary files younger than an hour
alone, since a running evaluation may be about to rename one into place. Removing an
entry a running server is reading is safe: the reader keeps its open file, and the next
evaluation rebuilds the entry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate.cache_version import TAG, VERSION_FILE, CacheVersion
from gate.errors import RequestError

__all__ = ["CACHES", "PruneReport", "VersionUsage", "current_versions", "inspect", "parse_age", "prune"]

#: The on-disk caches, by directory name.
CACHES = ("tensors", "results", "hashes", "digests", "corrupted")
#: Temporary files younger than this may belong to a write in progress.
TEMP_GRACE_S = 3600.0
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def current_versions() -> dict[str, CacheVersion]:
    """The version each cache is read at by this gate: the versions its caches make."""
    from gate.cache import Caches, HeldoutHashCache, ResultCache
    from gate.corruptions.suite import CorruptedPixelCache
    from gate.datasets import TensorCache

    here = Path(".")  # where does not matter: a version is made by the code, not the place
    versions = Caches(TensorCache(here), ResultCache(here), digests=here, hashes=HeldoutHashCache(here)).versions()
    return {**versions, "corrupted": CorruptedPixelCache(here).version}


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s`` or ``2w`` in seconds (RequestError otherwise)."""
    m = _AGE.match(text)
    if m is None:
        raise RequestError(f"age {text!r} is not valid; it should be a number followed by s, m, h, d or w (e.g. 30d)")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


@dataclass
class VersionUsage:
    """One version of one cache in a cache directory (``tag`` None: unversioned files)."""

    cache: str
    tag: str | None
    current: bool
    entries: int = 0
    bytes: int = 0
    last_used: float | None = None  # newest modification time of an entry
    components: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cache": self.cache,
            "version": self.tag,
            "state": "current" if self.current else "stale",
            "entries": self.entries,
            "bytes": self.bytes,
            "last_used": self.last_used,
            "components": self.components,
        }


@dataclass
class PruneReport:
    removed_entries: int = 0
    removed_bytes: int = 0
    removed_versions: list[str] = field(default_factory=list)  # "cache/tag" of the stale versions dropped
    kept_entries: int = 0
    kept_bytes: int = 0
    skipped_links: list[str] = field(default_factory=list)  # caches whose directory is a link: not entered

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _check_root(root: Path) -> None:
    if not root.is_dir():
        raise RequestError(f"no cache directory at {root}")


def _linked(directory: Path) -> bool:
    """Whether a cache's directory is a symbolic link (its entries are elsewhere: never entered)."""
    return directory.is_symlink()


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    """The directory's entries, links and all, never following one."""
    try:
        with os.scandir(directory) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return []


def _size_and_time(entry: os.DirEntry[str]) -> tuple[int, float]:
    st = entry.stat(follow_symlinks=False)
    return st.st_size, st.st_mtime


def _is_entry(entry: os.DirEntry[str]) -> bool:
    return entry.name != VERSION_FILE and not entry.name.endswith(".tmp")


def _read_components(directory: Path) -> dict[str, Any] | None:
    try:
        recorded = json.loads((directory / VERSION_FILE).read_text(encoding="utf-8"))
        components = recorded.get("components")
        return components if isinstance(components, dict) else None
    except (OSError, ValueError, AttributeError):
        return None


def inspect(root: Path) -> list[VersionUsage]:
    """Every version of every cache found under ``root``, current ones first."""
    _check_root(root)
    current = current_versions()
    found: list[VersionUsage] = []
    for cache in CACHES:
        legacy = VersionUsage(cache, None, current=False)
        for entry in _entries(root / cache):
            if entry.is_dir(follow_symlinks=False):
                usage = VersionUsage(cache, entry.name, current=entry.name == current[cache].tag)
                usage.components = _read_components(Path(entry.path))
                for item in _entries(Path(entry.path)):
                    if _is_entry(item):
                        _count(usage, item)
                found.append(usage)
            else:
                _count(legacy, entry)
        if legacy.entries:
            found.append(legacy)
    return sorted(found, key=lambda u: (CACHES.index(u.cache), not u.current, u.tag or ""))


def _count(usage: VersionUsage, entry: os.DirEntry[str]) -> None:
    size, mtime = _size_and_time(entry)
    usage.entries += 1
    usage.bytes += size
    usage.last_used = mtime if usage.last_used is None else max(usage.last_used, mtime)


def prune(
    root: Path, *, older_than: float | None = None, dry_run: bool = False, now: float | None = None
) -> PruneReport:
    """Remove stale versions and unversioned files; with ``older_than`` (seconds), also the
    current entries not used for that long. ``dry_run`` counts without removing."""
    _check_root(root)
    clock = time.time() if now is None else now
    current = current_versions()
    report = PruneReport()
    for cache in CACHES:
        if _linked(root / cache):
            report.skipped_links.append(cache)
            continue
        for entry in _entries(root / cache):
            if entry.is_dir(follow_symlinks=False) and entry.name == current[cache].tag:
                _prune_current(Path(entry.path), older_than, clock, dry_run, report)
            elif entry.is_dir(follow_symlinks=False) and TAG.match(entry.name):
                _drop_version(Path(entry.path), f"{cache}/{entry.name}", clock, dry_run, report)
            elif entry.is_dir(follow_symlinks=False):
                continue  # not a version gate made (a wrong --cache-dir's own folder): never removed
            elif not _young_temp(entry, clock):
                _drop_file(entry, dry_run, report)
    return report


def _prune_current(directory: Path, older_than: float | None, clock: float, dry_run: bool, report: PruneReport) -> None:
    for item in _entries(directory):
        if item.name == VERSION_FILE:
            continue
        size, mtime = _size_and_time(item)
        temp = item.name.endswith(".tmp")
        unused = older_than is not None and not temp and clock - mtime > older_than
        if (temp and not _young_temp(item, clock)) or unused:
            _drop_file(item, dry_run, report)
        elif _is_entry(item):
            report.kept_entries += 1
            report.kept_bytes += size


def _young_temp(entry: os.DirEntry[str], clock: float) -> bool:
    """A temporary file a write in progress may still rename into place."""
    return entry.name.endswith(".tmp") and clock - _size_and_time(entry)[1] <= TEMP_GRACE_S


def _drop_version(directory: Path, name: str, clock: float, dry_run: bool, report: PruneReport) -> None:
    young_temp = False
    for item in _entries(directory):
        if item.is_dir(follow_symlinks=False):  # not written by gate: removed with the version
            if not dry_run:
                shutil.rmtree(item.path, ignore_errors=True)
            continue
        if _young_temp(item, clock):  # an older gate still running may be about to rename it
            young_temp = True
            continue
        _drop_file(item, dry_run, report, count=_is_entry(item))
    if young_temp:
        return  # the version goes with its last write, next time
    if not dry_run:
        try:
            directory.rmdir()
        except OSError:
            return  # something appeared meanwhile: it goes next time
    report.removed_versions.append(name)


def _drop_file(entry: os.DirEntry[str], dry_run: bool, report: PruneReport, *, count: bool = True) -> None:
    size, _ = _size_and_time(entry)
    if not dry_run:
        try:
            os.unlink(entry.path)  # a link is removed as a link
        except FileNotFoundError:
            return
    if count:
        report.removed_entries += 1
        report.removed_bytes += size
