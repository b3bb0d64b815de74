"""The one directory walker for image folders: what lies under a root, sorted, with an
explicit policy for symbolic links.

ImageFolder datasets and the training-set collection both list files with
:func:`walk_images`; each decides what to make of the entries that are not images.
Hidden entries (a name starting with ``.``) are never descended into or listed as files,
but they are reported, so that nothing is left out without a word.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gate.datasets.images import IMAGE_EXTENSIONS
from gate.errors import DatasetError

#: ``inside_root``: a link is followed only when its target lies inside the root (a link
#: that leaves it is a :class:`DatasetError`, as a manifest path that leaves its
#: directory is); ``follow``: every link is followed wherever it points.
LinkPolicy = Literal["inside_root", "follow"]


@dataclass
class Walk:
    """What a walk found. Paths are relative to the root, with ``/`` separators."""

    #: (relative path, path) of every image file, sorted by relative path.
    images: list[tuple[str, Path]] = field(default_factory=list)
    #: Sub-directories visited (not hidden), sorted; a top-level one has no ``/``.
    folders: list[str] = field(default_factory=list)
    #: Hidden files and folders skipped (folders end in ``/``), sorted.
    hidden: list[str] = field(default_factory=list)
    #: Regular files whose extension is not an image's, sorted.
    others: list[str] = field(default_factory=list)
    #: Broken links and entries that are neither files nor folders, sorted.
    irregular: list[str] = field(default_factory=list)


def walk_images(root: Path, *, links: LinkPolicy) -> Walk:
    """Everything under ``root`` (recursively), sorted, links handled by ``links``.

    A folder reached twice (a link loop, or two links to one folder) is a
    :class:`DatasetError`: its files would otherwise count twice.
    """
    real_root = root.resolve()
    walk = Walk()
    seen: set[Path] = set()
    stack = [root]
    while stack:
        directory = stack.pop()
        real = directory.resolve()
        if real in seen:
            rel = directory.relative_to(root).as_posix()
            raise DatasetError(f"{root}: directory '{rel}' is reached twice through symbolic links")
        seen.add(real)
        for entry in _entries(directory):
            p = Path(entry.path)
            rel = p.relative_to(root).as_posix()
            if entry.name.startswith("."):
                walk.hidden.append(rel + "/" if entry.is_dir() else rel)
                continue
            if links == "inside_root" and entry.is_symlink():
                _check_inside(root, real_root, p, rel)
            if entry.is_dir():
                walk.folders.append(rel)
                stack.append(p)
            elif not entry.is_file():
                walk.irregular.append(rel)
            elif p.suffix.lower() in IMAGE_EXTENSIONS:
                walk.images.append((rel, p))
            else:
                walk.others.append(rel)
    walk.images.sort(key=lambda item: item[0])
    for names in (walk.folders, walk.hidden, walk.others, walk.irregular):
        names.sort()
    return walk


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        return sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as exc:
        raise DatasetError(f"cannot list {directory}: {exc.strerror or exc}") from exc


def _check_inside(root: Path, real_root: Path, link: Path, rel: str) -> None:
    try:
        target = link.resolve()
    except (OSError, RuntimeError) as exc:
        raise DatasetError(f"{root}: cannot resolve the link '{rel}': {exc}") from exc
    if not target.is_relative_to(real_root):
        raise DatasetError(
            f"{root}: '{rel}' is a symbolic link to {target}, outside the dataset directory {real_root};"
            " links that leave the dataset are refused"
        )
