"""What a cache entry was computed by: the version part of every on-disk cache's key.

A cache entry is only safe to serve when everything that could change its content is in
its key. Content hashes cover the inputs (model, dataset, spec); this module covers the
code: each cache has a code version (a constant next to the code that fills it, bumped
by any change to how it decodes, preprocesses, post-processes or stores), and every
cache's version also names gate's version and the numpy and Pillow versions that decode
pixels. Entries live in one directory per version::

    <cache dir>/<cache>/<tag>/...          e.g. results/v3-1f0c5e2a9b7d/<key>.npz
    <cache dir>/<cache>/<tag>/VERSION.json the components the tag was made from

so an entry written by other code is simply not found (a miss), and ``gate cache
prune`` can drop whole stale versions. The tag is the code version followed by the
first 12 hex digits of the SHA-256 of the components.

``GATE_CACHE_EPOCH``, when set, is one more component: changing it makes every cache
miss at once (tests use it as their hook; an operator can use it to start afresh
without deleting anything).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gate import __version__
from gate.atomic import atomic_write

log = logging.getLogger(__name__)

__all__ = ["EPOCH_VARIABLE", "TAG", "VERSION_FILE", "CacheVersion", "cache_version", "pillow_version"]

EPOCH_VARIABLE = "GATE_CACHE_EPOCH"
VERSION_FILE = "VERSION.json"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: What a version directory's name looks like (see :func:`cache_version`).
TAG = re.compile(r"^[A-Za-z0-9._-]+-[0-9a-f]{12}$")


def pillow_version() -> str:
    from PIL import __version__ as pillow  # the package's own module only: cheap

    return str(pillow)


@dataclass(frozen=True)
class CacheVersion:
    """One cache's current version: its tag and the components it was made from."""

    cache: str
    tag: str
    components: dict[str, str]

    def directory(self, root: Path) -> Path:
        """Where this version's entries live under the cache's ``root``."""
        return root / self.tag

    def mark(self, root: Path) -> None:
        """Record the components beside the entries (once), for ``gate cache info``."""
        path = self.directory(root) / VERSION_FILE
        if path.exists():
            return
        text = json.dumps({"cache": self.cache, "tag": self.tag, "components": self.components}, sort_keys=True)
        try:
            atomic_write(path, (text + "\n").encode(), fsync=False, replace=False)
        except FileExistsError:
            pass  # another process recorded the same components first
        except OSError as e:  # a cache that cannot be written only costs time
            log.warning("cannot record the cache version at %s: %s", path, e)

    def to_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, **self.components}


def cache_version(cache: str, code: str, **extra: str) -> CacheVersion:
    """The current version of ``cache``, whose filling code is at version ``code``;
    ``extra`` adds components particular to that cache (e.g. the ONNX Runtime version)."""
    components = {
        "cache": cache,
        "code": code,
        "gate": __version__,
        "numpy": np.__version__,
        "pillow": pillow_version(),
        **extra,
    }
    epoch = os.environ.get(EPOCH_VARIABLE)
    if epoch:
        components["epoch"] = epoch
    digest = hashlib.sha256(json.dumps(components, sort_keys=True).encode()).hexdigest()[:12]
    return CacheVersion(cache, f"{_SAFE.sub('-', code)}-{digest}", components)
