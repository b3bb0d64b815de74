"""The model store: content-addressed ONNX model files, next to the audit log in
``gate.store`` because both are what the server keeps.

Model files live at ``<data_dir>/models/<sha256>.onnx`` (or ``models_dir``). An upload is
written to a temporary file of its own (a unique name, created exclusively) in the same
directory, its size and SHA-256 are verified, and only then is it renamed into place with
one atomic ``rename``: a partial or mismatched upload never becomes a visible model, and
two uploads of the same bytes — from two threads, or from two servers sharing the
directory — each rename a complete file of the same content onto the same name, so a
reader sees the old file or the new one, never a mix, and neither upload fails.

The bytes of an upload are always hashed and compared with the declared SHA-256, also
when a model of that hash is already stored: naming a stored hash proves nothing, and an
upload that does not hash to it is refused like any other mismatch. When the hash is
declared up front and the model is already stored, the bytes are only hashed, not
written again.

The temporary file's name is chosen only once the hash is known (a client may declare it
in its last chunk), which is why this module writes its own temporary file rather than
going through :mod:`gate.atomic`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import queue
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gate.errors import NotFoundError, OverloadedError, RequestError

log = logging.getLogger(__name__)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

#: Temporary upload files older than this (seconds since their last write) were left by a
#: server that died mid-upload; younger ones may belong to a live upload, perhaps another
#: server's in a shared model store, and are left alone.
STALE_UPLOAD_S = 6 * 3600

#: What a write that found the disk (or this process's file-size limit) full fails with.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass(frozen=True)
class StoredModel:
    sha256: str
    size: int
    path: Path
    already_present: bool = False


class _Receiver:
    """Hashes (and, given a file, writes) an upload's chunks on a second thread while the
    caller's thread receives, counting bytes against the declared and the server's limits."""

    def __init__(self, expected_size: int, max_bytes: int, sink: BinaryIO | None) -> None:
        self.expected_size = expected_size
        self.max_bytes = max_bytes
        self.digest = hashlib.sha256()
        self.size = 0
        self._sink = sink
        self._pending: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._failure: list[BaseException] = []

    def _consume(self) -> None:
        while (chunk := self._pending.get()) is not None:
            if not self._failure:
                try:
                    self.digest.update(chunk)  # both release the GIL for large buffers
                    if self._sink is not None:
                        self._sink.write(chunk)
                except BaseException as e:
                    self._failure.append(e)

    def receive(self, chunks: Iterable[bytes]) -> None:
        """Take every chunk; raise what the sink failed with, or a size problem."""
        worker = threading.Thread(target=self._consume, name="gate-upload-writer")
        worker.start()
        try:
            for chunk in chunks:
                self.size += len(chunk)
                if self.size > self.max_bytes:
                    raise OverloadedError(f"upload exceeds this server's limit of {self.max_bytes} bytes")
                if self.size > self.expected_size:
                    raise RequestError(f"upload exceeds its declared total_size of {self.expected_size} bytes")
                if self._failure:
                    break
                self._pending.put(chunk)
        finally:
            self._pending.put(None)
            worker.join()
        if self._failure:
            raise _storage_error(self._failure[0])
        if self.size != self.expected_size:
            raise RequestError(f"upload ended after {self.size} of the declared {self.expected_size} bytes")

    def check_hash(self, declared: str) -> None:
        if not declared:
            raise RequestError("the upload declared no sha256 (in its first or its last chunk)")
        actual = self.digest.hexdigest()
        if actual != declared:
            raise RequestError(f"sha256 mismatch: the upload hashes to {actual}, not the declared {declared}")


def _storage_error(error: BaseException) -> BaseException:
    """A full disk is the server's capacity running out (RESOURCE_EXHAUSTED for the
    caller), not an unexpected fault; anything else stays as it is."""
    if isinstance(error, OSError) and error.errno in _NO_SPACE:
        log.error("an upload could not be stored: %s", error)
        return OverloadedError("no space left on the server to store the model; try again later")
    return error


class ModelStore:
    """Content-addressed ONNX model files."""

    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        root.mkdir(parents=True, exist_ok=True)
        self.remove_stale_uploads()

    def remove_stale_uploads(self, max_age_s: float = STALE_UPLOAD_S) -> list[Path]:
        """Remove temporary upload files untouched for ``max_age_s``; return them."""
        removed = []
        cutoff = time.time() - max_age_s
        for stale in self.root.glob(".upload-*"):
            try:
                if stale.stat().st_mtime < cutoff:
                    stale.unlink()
                    removed.append(stale)
            except FileNotFoundError:
                pass  # finished (renamed) or removed by someone else meanwhile
        return removed

    def path(self, sha256: str) -> Path:
        if not SHA256_RE.match(sha256):
            raise RequestError(f"model_sha256={sha256!r} is not valid; it should be 64 lowercase hex digits")
        return self.root / f"{sha256}.onnx"

    def get(self, sha256: str) -> Path:
        path = self.path(sha256)
        if not path.is_file():
            raise NotFoundError(f"no model with sha256 {sha256} on this server; upload it first")
        return path

    def read(self, sha256: str) -> bytes:
        """A stored model's bytes, verified against its name: a file damaged on disk (or
        cut short by a crash right after its upload) is removed and reported, never used."""
        path = self.get(sha256)
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            path.unlink(missing_ok=True)
            raise NotFoundError(f"the stored model {sha256} was damaged on disk and has been removed; upload it again")
        return data

    def _check_size(self, expected_size: int) -> None:
        if expected_size > self.max_bytes:
            raise OverloadedError(
                f"model of {expected_size} bytes exceeds this server's limit of {self.max_bytes} bytes"
            )

    def put(self, expected_size: int, chunks: Iterable[bytes], declared_sha256: Callable[[], str]) -> StoredModel:
        """Store a model from ``chunks`` after verifying its size and its SHA-256 against
        ``declared_sha256()`` (asked once the stream has ended: a client may declare the
        hash in its first chunk or, hashing as it streams, in its last).

        Hashing and writing run on a second thread while the first receives, and there
        is no fsync: a file cut short by a crash is caught by :meth:`read`, which verifies
        the hash. So the upload runs at the speed of the network. A full disk is
        :class:`OverloadedError`; the temporary file is removed whatever happens.
        """
        self._check_size(expected_size)
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=".upload-", dir=self.root)
        except OSError as e:
            raise _storage_error(e) from e
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb", buffering=0) as f:
                receiver = _Receiver(expected_size, self.max_bytes, f)
                receiver.receive(chunks)
            declared = declared_sha256()
            receiver.check_hash(declared)
            target = self.path(declared)
            present = target.exists()
            os.replace(tmp, target)
            return StoredModel(declared, receiver.size, target, already_present=present)
        finally:
            tmp.unlink(missing_ok=True)

    def verify_present(self, sha256: str, expected_size: int, chunks: Iterable[bytes]) -> StoredModel:
        """For an upload whose hash, declared up front, is already stored: hash the bytes
        sent without writing them, and refuse them unless they are that model."""
        self._check_size(expected_size)
        receiver = _Receiver(expected_size, self.max_bytes, None)
        receiver.receive(chunks)
        receiver.check_hash(sha256)
        return StoredModel(sha256, receiver.size, self.path(sha256), already_present=True)

    def total_bytes(self) -> int:
        total = 0
        for p in self.root.glob("*.onnx"):
            with contextlib.suppress(FileNotFoundError):  # removed (damaged) since the listing
                total += p.stat().st_size
        return total
