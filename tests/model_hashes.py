"""Counts the SHA-256 computations over watched models' bytes, in every process that
installs it: the test process (client and in-process server) by :func:`install`, the
server's worker processes through ``tests/model_hashes_site/sitecustomize.py`` on their
PYTHONPATH.

``hashlib.sha256`` and ``hashlib.new("sha256")`` are wrapped, not replaced: every hash is
still computed by hashlib. When a hash object's digest equals a watched SHA-256 (listed
in ``$GATE_TEST_HASH_WATCH``), one line ``<pid> <module>`` is appended to
``$GATE_TEST_HASH_LOG``, where ``<module>`` is the module that asked for the digest. Each
hash object is counted once, however often its digest is read.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

SITE = Path(__file__).resolve().parent / "model_hashes_site"
_real_sha256 = hashlib.sha256
_real_new = hashlib.new


class _CountedHash:
    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._counted = False

    name = property(lambda self: self._inner.name)
    digest_size = property(lambda self: self._inner.digest_size)
    block_size = property(lambda self: self._inner.block_size)

    def update(self, data: Any) -> None:
        self._inner.update(data)

    def copy(self) -> _CountedHash:
        return _CountedHash(self._inner.copy())

    def digest(self) -> bytes:
        self._count(sys._getframe(1).f_globals.get("__name__", "?"))
        result: bytes = self._inner.digest()
        return result

    def hexdigest(self) -> str:
        self._count(sys._getframe(1).f_globals.get("__name__", "?"))
        result: str = self._inner.hexdigest()
        return result

    def _count(self, module: str) -> None:
        if self._counted:
            return
        watched = os.environ.get("GATE_TEST_HASH_WATCH", "").split(",")
        if self._inner.hexdigest() in watched:
            self._counted = True
            with open(os.environ["GATE_TEST_HASH_LOG"], "a") as f:
                f.write(f"{os.getpid()} {module}\n")


def _sha256(data: Any = b"", **kwargs: Any) -> _CountedHash:
    return _CountedHash(_real_sha256(data, **kwargs))


def _new(name: str, data: Any = b"", **kwargs: Any) -> Any:
    if name.lower().replace("-", "") == "sha256":
        return _CountedHash(_real_new(name, data, **kwargs))
    return _real_new(name, data, **kwargs)


def install() -> None:
    hashlib.sha256 = _sha256  # type: ignore[assignment]
    hashlib.new = _new  # type: ignore[assignment]


def uninstall() -> None:
    hashlib.sha256 = _real_sha256
    hashlib.new = _real_new


def counted(log: Path) -> list[tuple[int, str]]:
    """The (pid, module) of each counted hash, in order."""
    if not log.exists():
        return []
    return [(int(pid), module) for pid, module in (line.split() for line in log.read_text().splitlines())]
