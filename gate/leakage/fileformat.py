"""The fingerprint file: a training set's hashes and paths, written once by
``gate fingerprint`` and read by every evaluation that checks for leakage.

Fingerprint file (``gate.fingerprint/v1``)
------------------------------------------

All integers little-endian::

    magic    20 bytes   b"gate.fingerprint/v1\\n"
    hlen     uint32     length of the header
    header   hlen bytes UTF-8 JSON object, keys sorted, no whitespace:
                        {"algorithm": "gate.phash", "algorithm_version": 1,
                         "count": N, "paths_bytes": P, "skipped": S}
    hashes   8N bytes   N uint64 hashes
    paths    P bytes    N UTF-8 paths relative to the fingerprinted directory, each
                        followed by one NUL byte, in the order of the hashes
    digest   32 bytes   SHA-256 of everything above

``skipped`` counts images that could not be read and were left out (only with
``skip_unreadable``). The digest, in hex, is :attr:`Fingerprints.sha256`: the file's
identifier, the same for the same hashes, paths and algorithm wherever and whenever
the file was written. A reader refuses (:class:`~gate.errors.DatasetError`, naming the
file and the problem) a wrong magic or version, an unknown or missing header key, an
unknown algorithm, sizes that do not add up (truncation), a digest mismatch (damage),
invalid UTF-8, a wrong number of paths, and empty or repeated paths.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from gate.atomic import atomic_write
from gate.errors import DatasetError, UserError
from gate.leakage.phash import HASH_ALGORITHM, HASH_ALGORITHM_VERSION, Hashes, as_hashes

#: The fingerprint file's schema, the first line of the file.
SCHEMA: Final = "gate.fingerprint/v1"
_MAGIC: Final = (SCHEMA + "\n").encode()
_SCHEMA_PREFIX: Final = b"gate.fingerprint/"
_HEADER_KEYS: Final = frozenset({"algorithm", "algorithm_version", "count", "paths_bytes", "skipped"})
_MAX_HEADER: Final = 4096
_DIGEST_SIZE: Final = 32
#: Makes the error that refuses a file, naming it: ``bad("truncated")``.
_Refusal = Callable[[str], DatasetError]


@dataclass(frozen=True, eq=False)
class Fingerprints:
    """A training set's hashes and the relative path of each hashed file.

    ``hashes[i]`` is the hash of ``paths[i]``; ``skipped`` counts images that could not
    be read and were left out. :attr:`sha256` identifies the content (see the module
    docstring for the file format). The arrays are read-only.
    """

    hashes: Hashes
    paths: tuple[str, ...]
    skipped: int = 0

    def __post_init__(self) -> None:
        hashes = as_hashes(self.hashes, "hashes").copy()
        hashes.flags.writeable = False
        object.__setattr__(self, "hashes", hashes)
        paths = tuple(self.paths)
        object.__setattr__(self, "paths", paths)
        problem = _path_problem(paths, len(hashes))
        if problem is not None:
            raise ValueError(problem)
        if isinstance(self.skipped, bool) or not isinstance(self.skipped, int) or self.skipped < 0:
            raise ValueError(f"skipped must be a non-negative integer, got {self.skipped!r}")

    def __len__(self) -> int:
        return len(self.hashes)

    def __repr__(self) -> str:
        return f"Fingerprints(count={len(self)}, skipped={self.skipped}, sha256={self.sha256[:12]}...)"

    @property
    def algorithm(self) -> str:
        """``name/version`` of the hash, e.g. ``gate.phash/1``."""
        return f"{HASH_ALGORITHM}/{HASH_ALGORITHM_VERSION}"

    @functools.cached_property
    def _body(self) -> bytes:
        blob = b"".join(p.encode("utf-8") + b"\0" for p in self.paths)
        header = json.dumps(
            {
                "algorithm": HASH_ALGORITHM,
                "algorithm_version": HASH_ALGORITHM_VERSION,
                "count": len(self.hashes),
                "paths_bytes": len(blob),
                "skipped": self.skipped,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode("utf-8")
        return b"".join([_MAGIC, struct.pack("<I", len(header)), header, self.hashes.astype("<u8").tobytes(), blob])

    @functools.cached_property
    def sha256(self) -> str:
        """SHA-256 (hex) of the file's content: its identifier."""
        return hashlib.sha256(self._body).hexdigest()

    def to_bytes(self) -> bytes:
        """The fingerprint file's bytes."""
        return self._body + bytes.fromhex(self.sha256)


def _path_problem(paths: tuple[str, ...], count: int) -> str | None:
    if len(paths) != count:
        return f"{len(paths)} path(s) for {count} hash(es)"
    seen: set[str] = set()
    for i, p in enumerate(paths):
        if not isinstance(p, str) or not p:
            return f"path {i} is empty or not a string: {p!r}"
        if "\0" in p:
            return f"path {i} contains a NUL character: {p!r}"
        if p in seen:
            return f"path {p!r} appears twice"
        seen.add(p)
    return None


def save_fingerprints(fingerprints: Fingerprints, path: str | os.PathLike[str]) -> None:
    """Write a fingerprint file atomically (a temporary file flushed to disk, then a
    rename): a fingerprint is a record.

    A file that cannot be written is a :class:`~gate.errors.UserError` naming it.
    """
    target = Path(path)
    # The atomic writer would create a missing directory; a mistyped output directory
    # is refused instead, so the file never lands somewhere nobody looks for it.
    if not target.parent.is_dir():
        code = errno.ENOTDIR if target.parent.exists() else errno.ENOENT
        raise UserError(f"cannot write fingerprint file {target}: {os.strerror(code)}")
    try:
        atomic_write(target, fingerprints.to_bytes(), fsync=True)
    except OSError as exc:
        raise UserError(f"cannot write fingerprint file {target}: {exc.strerror or exc}") from exc


def load_fingerprints(source: bytes | str | os.PathLike[str], *, name: str | None = None) -> Fingerprints:
    """Read and validate a fingerprint file, from a path or from its bytes.

    ``name`` is how errors name the file (default: the path, or "fingerprint data" for
    bytes). Anything wrong is a :class:`~gate.errors.DatasetError` that says what.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        label = name or "fingerprint data"
    else:
        file = Path(source)
        label = name or str(file)
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise DatasetError(f"cannot read fingerprint file {label}: {exc.strerror or exc}") from exc
    return _parse(data, label)


def _parse(data: bytes, label: str) -> Fingerprints:
    def bad(what: str) -> DatasetError:
        return DatasetError(f"fingerprint file {label}: {what}")

    hlen = _header_length(data, bad)
    header = _header(data[len(_MAGIC) + 4 : len(_MAGIC) + 4 + hlen], bad)
    count: int = header["count"]
    paths_bytes: int = header["paths_bytes"]
    start = len(_MAGIC) + 4 + hlen
    expected = start + 8 * count + paths_bytes + _DIGEST_SIZE
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise bad(f"{what}: {len(data)} bytes, but its header promises {expected} ({count} hashes)")
    body, digest = data[:-_DIGEST_SIZE], data[-_DIGEST_SIZE:]
    if hashlib.sha256(body).digest() != digest:
        raise bad("damaged: the SHA-256 of its content does not match the one it carries")
    hashes = np.frombuffer(data, dtype="<u8", count=count, offset=start).astype(np.uint64)
    paths = _paths(data[start + 8 * count : start + 8 * count + paths_bytes], count, bad)
    return Fingerprints(hashes=hashes, paths=paths, skipped=header["skipped"])


def _header_length(data: bytes, bad: _Refusal) -> int:
    """The header's length, once the magic says this is a file of this schema."""
    if not data.startswith(_SCHEMA_PREFIX):
        raise bad(f"not a gate fingerprint file (it does not start with {SCHEMA!r})")
    if not data.startswith(_MAGIC):
        line = data[: data.find(b"\n")] if b"\n" in data[:64] else data[:40]
        found = line.decode("utf-8", "replace")
        raise bad(f"unsupported schema {found!r}; this gate reads {SCHEMA!r}")
    fixed = len(_MAGIC) + 4
    if len(data) < fixed + _DIGEST_SIZE:
        raise bad(f"truncated: {len(data)} bytes, too short for a header")
    (hlen,) = struct.unpack_from("<I", data, len(_MAGIC))
    if hlen > _MAX_HEADER or fixed + hlen > len(data):
        raise bad(f"damaged or truncated: header length {hlen} does not fit a {len(data)}-byte file")
    length: int = hlen
    return length


def _header(raw: bytes, bad: _Refusal) -> dict[str, Any]:
    """The JSON header, with exactly the schema's keys, sizes that are counts, and the
    hash algorithm this gate computes."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"damaged header (not UTF-8 JSON): {exc}") from exc
    if not isinstance(header, dict):
        raise bad("damaged header (not a JSON object)")
    missing = sorted(_HEADER_KEYS - header.keys())
    unknown = sorted(header.keys() - _HEADER_KEYS)
    if missing or unknown:
        parts = ([f"lacks {missing}"] if missing else []) + ([f"has unknown {unknown}"] if unknown else [])
        raise bad(f"header {' and '.join(parts)} for {SCHEMA}")
    for key in ("algorithm_version", "count", "paths_bytes", "skipped"):
        value = header[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(f"header '{key}' must be a non-negative integer, got {value!r}")
    if header["algorithm"] != HASH_ALGORITHM or header["algorithm_version"] != HASH_ALGORITHM_VERSION:
        raise bad(
            f"hashes made with {header['algorithm']!r} version {header['algorithm_version']!r}; this gate "
            f"computes {HASH_ALGORITHM!r} version {HASH_ALGORITHM_VERSION}, so they cannot be compared: "
            "fingerprint the training set again"
        )
    return header


def _paths(blob: bytes, count: int, bad: _Refusal) -> tuple[str, ...]:
    """The ``count`` NUL-terminated UTF-8 paths of the paths block."""
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad(f"paths are not UTF-8: {exc}") from exc
    if count == 0:
        if text:
            raise bad("paths given for no hashes")
        paths: tuple[str, ...] = ()
    else:
        if not text.endswith("\0"):
            raise bad("the last path is not NUL-terminated")
        paths = tuple(text[:-1].split("\0"))
    problem = _path_problem(paths, count)
    if problem is not None:
        raise bad(problem)
    return paths
