"""What the server owns: the content-addressed model store, and the registered held-out
datasets and policies (addressed by name).

Model files live at ``<data_dir>/models/<sha256>.onnx`` (or ``models_dir``). An upload is
written to a temporary file of its own (a unique name, created exclusively) in the same
directory, its size and SHA-256 are verified, and only then is it renamed into place with
one atomic ``rename``: a partial or mismatched upload never becomes a visible model, and
two uploads of the same bytes — from two threads, or from two servers sharing the
directory — each rename a complete file of the same content onto the same name, so a
reader sees the old file or the new one, never a mix, and neither upload fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gate.datasets import Dataset, load_dataset
from gate.errors import DatasetError, NotFoundError, OverloadedError, PolicyError, RequestError
from gate.policy import Policy, load_policy

log = logging.getLogger(__name__)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

#: Temporary upload files older than this (seconds since their last write) were left by a
#: server that died mid-upload; younger ones may belong to a live upload, perhaps another
#: server's in a shared model store, and are left alone.
STALE_UPLOAD_S = 6 * 3600


@dataclass(frozen=True)
class StoredModel:
    sha256: str
    size: int
    path: Path
    already_present: bool = False


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

    def put(self, expected_size: int, chunks: Iterable[bytes], declared_sha256: Callable[[], str]) -> StoredModel:
        """Store a model from ``chunks`` after verifying its size and its SHA-256 against
        ``declared_sha256()`` (asked once the stream has ended: a client may declare the
        hash in its first chunk or, hashing as it streams, in its last).

        Hashing and writing run on a second thread while the first receives, and there
        is no fsync: a file cut short by a crash is caught by :meth:`read`, which verifies
        the hash. So the upload runs at the speed of the network.
        """
        if expected_size > self.max_bytes:
            raise OverloadedError(
                f"model of {expected_size} bytes exceeds this server's limit of {self.max_bytes} bytes"
            )
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(prefix=".upload-", dir=self.root)
        tmp = Path(tmp_name)
        pending: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        failure: list[BaseException] = []

        def write() -> None:
            with os.fdopen(fd, "wb", buffering=0) as f:
                while (chunk := pending.get()) is not None:
                    if not failure:
                        try:
                            digest.update(chunk)  # both release the GIL for large buffers
                            f.write(chunk)
                        except BaseException as e:
                            failure.append(e)

        writer = threading.Thread(target=write, name="gate-upload-writer")
        writer.start()
        size = 0
        try:
            try:
                for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise OverloadedError(f"upload exceeds this server's limit of {self.max_bytes} bytes")
                    if size > expected_size:
                        raise RequestError(f"upload exceeds its declared total_size of {expected_size} bytes")
                    if failure:
                        break
                    pending.put(chunk)
            finally:
                pending.put(None)
                writer.join()
            if failure:
                raise failure[0]
            if size != expected_size:
                raise RequestError(f"upload ended after {size} of the declared {expected_size} bytes")
            declared = declared_sha256()
            if not declared:
                raise RequestError("the upload declared no sha256 (in its first or its last chunk)")
            target = self.path(declared)
            actual = digest.hexdigest()
            if actual != declared:
                raise RequestError(f"sha256 mismatch: the upload hashes to {actual}, not the declared {declared}")
            present = target.exists()
            os.replace(tmp, target)
            return StoredModel(declared, size, target, already_present=present)
        finally:
            tmp.unlink(missing_ok=True)

    def total_bytes(self) -> int:
        total = 0
        for p in self.root.glob("*.onnx"):
            with contextlib.suppress(FileNotFoundError):  # removed (damaged) since the listing
                total += p.stat().st_size
        return total


def _spec_files(paths: Iterable[Path], suffixes: tuple[str, ...]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(f for f in p.iterdir() if f.suffix in suffixes and not f.name.startswith("."))
        else:
            yield p


class Registry:
    """The registered held-out datasets and policies, loaded once at start-up."""

    def __init__(
        self, datasets: dict[str, Dataset], policies: dict[str, Policy], paths: dict[str, Path] | None = None
    ) -> None:
        self.datasets = datasets
        self.policies = policies
        self.paths = paths or {}  # dataset name -> the file it was loaded from

    @classmethod
    def load(
        cls, dataset_paths: Iterable[Path], policy_paths: Iterable[Path], *, digest_cache: Path | None = None
    ) -> Registry:
        """Load every dataset spec and policy; any problem (a bad file, a duplicate name)
        stops the load with one error listing them all: a gate does not serve half its
        configuration."""
        problems: list[str] = []
        datasets: dict[str, Dataset] = {}
        paths: dict[str, Path] = {}
        for path in _spec_files(dataset_paths, (".yaml", ".yml")):
            try:
                ds = load_dataset(path, digest_cache=digest_cache)
            except DatasetError as e:
                problems.append(f"dataset {path}: {e.message}")
                continue
            if ds.name in datasets:
                problems.append(
                    f"dataset {path}: the name '{ds.name}' is already taken by {datasets[ds.name].source_path}"
                )
            datasets[ds.name] = ds
            paths[ds.name] = path
        policies: dict[str, Policy] = {}
        for path in _spec_files(policy_paths, (".yaml", ".yml")):
            try:
                policy = load_policy(path)
            except PolicyError as e:
                problems.append(e.message)
                continue
            if policy.name in policies:
                problems.append(
                    f"policy {path}: the name '{policy.name}' is already taken by {policies[policy.name].source}"
                )
            policies[policy.name] = policy
        if not datasets:
            problems.append("no dataset is registered")
        if not policies:
            problems.append("no policy is registered")
        if problems:
            raise RequestError(
                "the server's datasets and policies did not load:\n" + "\n".join(f"  - {p}" for p in problems)
            )
        return cls(datasets, policies, paths)

    def dataset(self, name: str) -> Dataset:
        try:
            return self.datasets[name]
        except KeyError:
            raise NotFoundError(
                f"unknown dataset '{name}'; this server has: {', '.join(sorted(self.datasets))}"
            ) from None

    def policy(self, name: str) -> Policy:
        try:
            return self.policies[name]
        except KeyError:
            raise NotFoundError(
                f"unknown policy '{name}'; this server has: {', '.join(sorted(self.policies))}"
            ) from None
