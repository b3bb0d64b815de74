"""Whole files or nothing: every file gate writes for others to read goes through here.

A writer fills a temporary file in the target's directory and renames it over the
target, so a reader sees either the old file or the complete new one, never half of
it; on any error the temporary file is removed. ``fsync`` is an explicit choice at
each call site: files that are records (verdicts, reports, keys, fingerprints) are
flushed to disk before the rename; caches, whose damage is detected and only costs
time, are not.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def sync_directory(directory: Path) -> None:
    """Flush a directory's entries, so a rename into it survives a power loss."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike[str],
    *,
    fsync: bool,
    mode: int = 0o600,
    replace: bool = True,
) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``path`` when the block ends without an error.

    ``mode`` is the new file's permission bits. With ``replace=False`` an existing
    ``path`` is never overwritten: the block's file is linked in only if ``path`` does
    not exist yet, and :class:`FileExistsError` is raised otherwise (another writer got
    there first). The parent directory is created when missing.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # (with shutil and its compressors) only for a command that writes

    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if replace:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # atomic, and never replaces an existing file
        if fsync:
            sync_directory(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | str,
    *,
    fsync: bool,
    mode: int = 0o600,
    replace: bool = True,
) -> None:
    """Write ``data`` (text is UTF-8) to ``path`` whole or not at all; see :func:`atomic_file`."""
    with atomic_file(path, fsync=fsync, mode=mode, replace=replace) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
