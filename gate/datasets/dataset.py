"""The loaded dataset: labels, class names, content hash and lazily decoded batches.

:func:`load_dataset` resolves a path (spec YAML, ``.npz``, ImageFolder directory or
manifest) to a :class:`Dataset`. Loading validates everything that can be checked
without decoding pixels (structure, labels, classes, image headers and sizes) and
hashes the content, so that errors surface before any model runs. Pixels are decoded
batch by batch in :meth:`Dataset.batches`; each file is checked against the digest
taken at load time, so the hash always describes the data that was evaluated.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from gate.atomic import atomic_write
from gate.cache_version import cache_version
from gate.datasets import images, repeats
from gate.datasets.metadata import read_sidecar
from gate.datasets.sources import (
    MANIFEST_SUFFIXES,
    ImageListing,
    NpzContent,
    read_manifest,
    read_npz,
    scan_image_folder,
)
from gate.datasets.spec import DatasetSpec, Preprocess, read_spec
from gate.errors import DatasetError

_SPEC_SUFFIXES = frozenset({".yaml", ".yml"})
#: Threads that read, hash and decode image files; the work is I/O and Pillow code
#: that releases the GIL, so a few threads help without oversubscribing the machine.
_WORKERS = max(1, min(32, os.cpu_count() or 1))
#: Samples a thread normalises at a time: big enough to amortise the hand-off.
_NORMALISE_CHUNK = 8
#: Paths per reason that the verdict lists of what was skipped (the count covers them all).
SKIPPED_LISTED = 20
#: Version tag mixed into every dataset hash; bump it when the hashing scheme changes.
_HASH_SCHEME = "gate.dataset/v1"
#: The digest cache's code version (:mod:`gate.cache_version`): bump when what it records changes.
DIGESTS_FORMAT = "v1"


class _Samples(Protocol):
    """Where a dataset's tensors come from (an in-memory array or image files)."""

    sample_shape: tuple[int, ...]

    def __len__(self) -> int: ...

    def iter_batches(self, batch_size: int) -> Iterator[npt.NDArray[Any]]: ...


class _ArraySamples:
    """Tensors stored in an ``.npz``: handed over as they are, float64 as float32."""

    def __init__(self, content: NpzContent) -> None:
        self._x = content.x
        self._dtype = content.model_dtype
        self.sample_shape: tuple[int, ...] = tuple(int(d) for d in content.x.shape[1:])

    def __len__(self) -> int:
        return len(self._x)

    def iter_batches(self, batch_size: int) -> Iterator[npt.NDArray[Any]]:
        for start in range(0, len(self._x), batch_size):
            # A C-ordered copy: callers may keep or modify a batch without touching
            # the dataset, and runtimes expect contiguous input.
            yield np.array(self._x[start : start + batch_size], dtype=self._dtype, order="C", copy=True)

    def iter_views(self, batch_size: int) -> Iterator[npt.NDArray[Any]]:
        """Batches that are read-only views of the stored array where it already has the
        model's dtype and layout (no copy of the set), else copies as ``iter_batches``."""
        x = self._x
        if x.dtype != self._dtype or not x.flags.c_contiguous:
            yield from self.iter_batches(batch_size)
            return
        for start in range(0, len(x), batch_size):
            view = x[start : start + batch_size]
            view.flags.writeable = False
            yield view


@functools.cache
def _normalise_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="gate-normalise")


class _ImageSamples:
    """Image files decoded and preprocessed on demand, one batch at a time.

    Decoding runs on a small thread pool (Pillow releases the GIL while decoding and
    resizing) and the next batch is decoded while the caller works on the current one,
    so at most two batches of tensors exist at any time.
    """

    def __init__(
        self,
        listing: ImageListing,
        preprocess: Preprocess,
        digests: list[str],
        sample_shape: tuple[int, ...],
    ) -> None:
        self._files = listing.files
        self._names = listing.sample_ids
        self._preprocess = preprocess
        self._digests = digests
        self.sample_shape = sample_shape

    def __len__(self) -> int:
        return len(self._files)

    def stored_files(self) -> list[tuple[Path, str, str]]:
        """(file, sample id, SHA-256 taken at load time) of every sample, in sample order."""
        return list(zip(self._files, self._names, self._digests, strict=True))

    @property
    def preprocess(self) -> Preprocess:
        """The steps from decoded image to model input (the normalisation among them)."""
        return self._preprocess

    @property
    def pixel_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one sample's 8-bit pixels, before normalisation."""
        if self._preprocess.layout == "NCHW":
            c, h, w = self.sample_shape
        else:
            h, w, c = self.sample_shape
        return h, w, c

    def pixels(self, i: int) -> npt.NDArray[np.uint8]:
        """Sample ``i``'s pixels after resize and crop, checked against the load-time digest."""
        name = self._names[i]
        data = _read_file(self._files[i], name)
        if hashlib.sha256(data).hexdigest() != self._digests[i]:
            # The hash reported for this dataset must describe what was evaluated.
            raise DatasetError(f"image {name} ({self._files[i]}) changed after the dataset was loaded; reload it")
        pixels = images.load_pixels(data, self._preprocess, name)
        if pixels.shape != self.pixel_shape:
            # The header promised another size than the decoder delivered.
            expected = images.describe_shape(self.sample_shape, self._preprocess)
            raise DatasetError(
                f"image {name} decodes to {pixels.shape[0]}x{pixels.shape[1]} (HxW) after preprocessing, "
                f"expected {expected}"
            )
        return pixels

    def iter_pixel_batches(self, batch_size: int) -> Iterator[npt.NDArray[np.uint8]]:
        """8-bit pixel batches (B, H, W, C), decoded on the pool a few batches ahead so
        that every decoding thread stays busy while the consumer works."""
        n = len(self._files)
        lookahead = max(2, -(-2 * _WORKERS // batch_size))
        pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="gate-decode")
        try:

            def submit(start: int) -> list[Future[npt.NDArray[np.uint8]]]:
                return [pool.submit(self.pixels, i) for i in range(start, min(start + batch_size, n))]

            starts = iter(range(0, n, batch_size))
            ahead = collections.deque(submit(start) for start in itertools.islice(starts, lookahead))
            while ahead:
                current = ahead.popleft()
                nxt = next(starts, None)
                if nxt is not None:
                    ahead.append(submit(nxt))
                out = np.empty((len(current), *self.pixel_shape), dtype=np.uint8)
                # Results are taken in sample order, so the error reported is that of
                # the first bad sample, whatever the threads' timing.
                for k, future in enumerate(current):
                    out[k] = future.result()
                yield out
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def normalise(self, pixels: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Model input for a pixel batch, normalised in slices on the shared pool (the
        numpy loops release the GIL, so slices run in parallel)."""
        if len(pixels) <= _NORMALISE_CHUNK or _WORKERS == 1:
            return images.normalise(pixels, self._preprocess)
        out = np.empty((len(pixels), *self.sample_shape), dtype=np.float32)
        slices = [slice(i, i + _NORMALISE_CHUNK) for i in range(0, len(pixels), _NORMALISE_CHUNK)]
        for _ in _normalise_pool().map(lambda sl: images.normalise(pixels[sl], self._preprocess, out[sl]), slices):
            pass
        return out

    def iter_batches(self, batch_size: int) -> Iterator[npt.NDArray[Any]]:
        for pixels in self.iter_pixel_batches(batch_size):
            yield self.normalise(pixels)


class Dataset:
    """A labelled held-out set, ready to be fed to a model batch by batch.

    Build one with :func:`load_dataset`. ``labels[i]`` is the class id of sample ``i``
    (an index into ``classes``); ``sample_ids[i]`` names it (the image path relative to
    the dataset root or manifest directory, or ``x[i]`` for ``.npz``); ``metadata[i]``
    holds a manifest row's extra columns or the sidecar table's row of the sample
    (``None`` for a set without metadata; see :mod:`gate.datasets.metadata`). ``sha256``
    identifies the content, labels, class list and preprocessing, independent of where
    the dataset lives and of its name.
    """

    name: str
    spec: DatasetSpec
    source_path: Path
    classes: list[str]
    labels: npt.NDArray[np.int64]
    sample_ids: list[str]
    metadata: list[dict[str, str]] | None
    sha256: str
    sample_shape: tuple[int, ...]
    train_sample: str | None  # the training sample's source, resolved (see load_train_sample)

    def __init__(
        self,
        *,
        spec: DatasetSpec,
        source_path: Path,
        classes: list[str],
        labels: npt.NDArray[np.int64],
        sample_ids: list[str],
        metadata: list[dict[str, str]] | None,
        sha256: str,
        samples: _Samples,
        skipped: dict[str, list[str]] | None = None,
    ) -> None:
        self.name = spec.name
        self.spec = spec
        self.train_sample = spec.train_sample
        self.source_path = source_path
        self.classes = classes
        # Read-only: the labels are part of the hash and must not drift from it.
        self.labels = labels
        self.labels.flags.writeable = False
        self.sample_ids = sample_ids
        self.metadata = metadata
        self.sha256 = sha256
        self.sample_shape = samples.sample_shape
        self._samples = samples
        #: What the source held but the dataset left out, by reason (``hidden``: hidden
        #: files and folders; ``duplicates``: repeats counted once), each in order.
        self.skipped = {reason: list(paths) for reason, paths in (skipped or {}).items() if paths}

    def __len__(self) -> int:
        return len(self._samples)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, samples={len(self)}, classes={len(self.classes)}, "
            f"sample_shape={self.sample_shape}, sha256={self.sha256[:12]}...)"
        )

    def verdict_fields(self) -> dict[str, Any]:
        """Fields for the verdict's ``dataset`` block beyond name, hash, size and classes:
        ``skipped`` (total ``count`` and, per reason, the first paths) when the source held
        anything that was left out; nothing otherwise, so an ordinary set's block is unchanged."""
        if not self.skipped:
            return {}
        listed: dict[str, Any] = {reason: paths[:SKIPPED_LISTED] for reason, paths in self.skipped.items()}
        listed["count"] = sum(len(paths) for paths in self.skipped.values())
        return {"skipped": listed}

    @property
    def pixel_source(self) -> _ImageSamples | None:
        """The decoder of an image dataset (None for tensors from an .npz)."""
        return self._samples if isinstance(self._samples, _ImageSamples) else None

    def batches(self, batch_size: int) -> Iterator[npt.NDArray[Any]]:
        """Consecutive batches in sample order, each of shape ``(b, *sample_shape)``.

        Every batch holds ``batch_size`` samples except possibly the last. Images are
        decoded only when their batch is requested.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        return self._samples.iter_batches(batch_size)

    def input_batches(self, batch_size: int) -> Iterator[npt.NDArray[Any]]:
        """The batches of :meth:`batches` for an inference engine that only reads them:
        an ``.npz`` set's batches are read-only views of its array instead of copies (a
        copy of a 200 MB set is a measurable part of a small model's evaluation). Never
        for a caller who may keep or modify a batch. A subclass with its own
        :meth:`batches` is read through them."""
        if isinstance(self._samples, _ArraySamples) and type(self).batches is Dataset.batches:
            return self._samples.iter_views(batch_size)
        return self.batches(batch_size)


def load_dataset(path: str | os.PathLike[str], *, digest_cache: Path | None = None) -> Dataset:
    """Load a dataset from a spec YAML, an ``.npz``, an ImageFolder or a manifest.

    ``digest_cache`` (a directory) remembers each image file's SHA-256 and size by its
    stat signature (size, mtime, ctime, inode), so loading a large unchanged set again
    does not read every file; a file whose signature changed is read and hashed anew.
    (Decoding still checks every file it reads against its digest.) An ``.npz`` set's
    SHA-256 is remembered there the same way (see :class:`_NpzDigest`).

    Raises :class:`DatasetError` for any problem with the spec, the source or a sample.
    """
    given = Path(path)
    suffix = given.suffix.lower()
    if suffix in _SPEC_SUFFIXES and not given.is_dir():
        spec = read_spec(given)
        source = Path(spec.source)
        if not source.is_absolute():
            source = given.parent / source
        for field in ("train_sample", "metadata"):
            named = getattr(spec, field)
            if named is not None and not Path(named).is_absolute():
                spec = spec.model_copy(update={field: str(given.parent / named)})
        return _load(spec, source, f"source of dataset spec {given}", digest_cache)
    if not given.exists():
        raise DatasetError(f"dataset not found: {given}")
    if not (given.is_dir() or suffix == ".npz" or suffix in MANIFEST_SUFFIXES):
        raise DatasetError(_unsupported(given))
    default = DatasetSpec(
        # A directory has no extension to strip: its whole (resolved, so "." works)
        # name is used.
        name=given.resolve().name if given.is_dir() else given.stem,
        source=str(given),
        preprocess=None if suffix == ".npz" and not given.is_dir() else Preprocess(),
    )
    return _load(default, given, "dataset", digest_cache)


def load_train_sample(ds: Dataset, *, digest_cache: Path | None = None) -> Dataset:
    """The training sample named by ``ds``'s spec, read with ``ds``'s classes (in its
    order) and preprocessing. Raises DatasetError when there is none or it cannot be read."""
    if ds.train_sample is None:
        raise DatasetError(f"dataset '{ds.name}' has no training sample (`train_sample:` in its spec)")
    path = Path(ds.train_sample)
    npz = path.suffix.lower() == ".npz" and not path.is_dir()
    if npz != (ds.spec.preprocess is None):
        kinds = "an .npz" if npz else "an image"
        held = "images" if ds.spec.preprocess is not None else "tensors (.npz)"
        raise DatasetError(
            f"training sample {path} of dataset '{ds.name}' is {kinds} source, but the held-out set holds {held};"
            " both must be fed to the model the same way"
        )
    spec = ds.spec.model_copy(
        update={
            "name": f"{ds.name} (training sample)",
            "source": str(path),
            "classes": list(ds.classes),
            "train_sample": None,
            "metadata": None,
        }
    )
    train = _load(spec, path, f"training sample of dataset '{ds.name}'", digest_cache)
    if train.sample_shape != ds.sample_shape:
        raise DatasetError(
            f"training sample {path} gives samples of shape {list(train.sample_shape)}, the held-out set"
            f" {list(ds.sample_shape)}"
        )
    return train


def _unsupported(path: Path) -> str:
    return (
        f"unsupported dataset source {path}: expected an ImageFolder directory, an .npz "
        "file, a .csv/.jsonl manifest, or (given directly) a .yaml/.yml dataset spec"
    )


def _load(spec: DatasetSpec, source: Path, what: str, digest_cache: Path | None) -> Dataset:
    try:
        resolved = source.resolve()
    except (OSError, RuntimeError) as exc:
        raise DatasetError(f"cannot resolve {what} {source}: {exc}") from exc
    if not resolved.exists():
        raise DatasetError(f"{what} not found: {resolved}")
    if resolved.is_dir():
        return _load_images(spec, resolved, scan_image_folder(resolved, spec.classes), digest_cache)
    # The kind comes from the name as written: a link called data.npz may point at a
    # file whose own name says nothing.
    suffix = source.suffix.lower()
    if suffix == ".npz":
        return _load_npz(spec, resolved, digest_cache)
    if suffix in MANIFEST_SUFFIXES:
        if spec.metadata is not None:
            raise DatasetError(
                f"dataset spec '{spec.name}': `metadata:` names a table for an ImageFolder or .npz set; the"
                f" manifest {resolved} holds its metadata as columns beyond path,label"
            )
        return _load_images(spec, resolved, read_manifest(resolved, spec.classes), digest_cache)
    raise DatasetError(_unsupported(resolved))


def _load_npz(spec: DatasetSpec, path: Path, digest_cache: Path | None) -> Dataset:
    if spec.preprocess is not None:
        raise DatasetError(
            f"dataset spec '{spec.name}': 'preprocess' does not apply to the .npz source "
            f"{path} (its tensors go to the model as they are); remove the preprocess section"
        )
    known = _NpzDigest(digest_cache, path, spec.classes)
    content = read_npz(path, spec.classes)
    sample_ids = [f"x[{i}]" for i in range(len(content.labels))]
    metadata = None if spec.metadata is None else read_sidecar(Path(spec.metadata), "npz", sample_ids)
    sha256 = known.get()
    if sha256 is None:
        digest = _hash_header("npz", content.classes, None)
        for array in (content.x, content.y, content.labels):
            _hash_array(digest, array)
        sha256 = digest.hexdigest()
        known.put(sha256)
    if metadata is not None:  # only then: the hash of a set without metadata stays what it was
        sha256 = hashlib.sha256(sha256.encode() + b"\n" + _canonical(metadata)).hexdigest()
    return Dataset(
        spec=spec,
        source_path=path,
        classes=content.classes,
        labels=content.labels,
        sample_ids=sample_ids,
        metadata=metadata,
        sha256=sha256,
        samples=_ArraySamples(content),
    )


def _load_images(spec: DatasetSpec, source: Path, listing: ImageListing, digest_cache: Path | None) -> Dataset:
    preprocess = spec.preprocess if spec.preprocess is not None else Preprocess()
    effective = spec.model_copy(update={"preprocess": preprocess})
    if spec.metadata is not None:
        table = read_sidecar(Path(spec.metadata), "images", listing.sample_ids, known=listing.hidden)
        listing = dataclasses.replace(listing, metadata=table)
    file_digests, out_size = _scan_files(listing, preprocess, _DigestCache(digest_cache, source, preprocess))
    again = repeats.repeated_samples(
        listing.sample_ids,
        listing.labels,
        listing.classes,
        file_digests,
        count_once=spec.duplicates == "count_once",
    )
    skipped = {"hidden": listing.hidden, "duplicates": repeats.describe(listing.sample_ids, again)}
    keep = [i for i in range(len(listing.files)) if i not in again]
    if again:
        listing = _subset(listing, keep)
        file_digests = [file_digests[i] for i in keep]
    digest = _hash_header("images", listing.classes, preprocess)
    for i, file_digest in enumerate(file_digests):
        entry: list[Any] = [listing.sample_ids[i], listing.labels[i], file_digest]
        if listing.metadata is not None and listing.metadata[i]:
            entry.append(listing.metadata[i])
        digest.update(b"\n" + _canonical(entry))
    return Dataset(
        spec=effective,
        source_path=source,
        classes=listing.classes,
        labels=np.asarray(listing.labels, dtype=np.int64),
        sample_ids=listing.sample_ids,
        metadata=listing.metadata,
        sha256=digest.hexdigest(),
        samples=_ImageSamples(listing, preprocess, file_digests, images.sample_shape(out_size, preprocess)),
        skipped=skipped,
    )


def _subset(listing: ImageListing, keep: list[int]) -> ImageListing:
    """``listing`` with only the samples at ``keep`` (in that order)."""
    return dataclasses.replace(
        listing,
        files=[listing.files[i] for i in keep],
        sample_ids=[listing.sample_ids[i] for i in keep],
        labels=[listing.labels[i] for i in keep],
        metadata=None if listing.metadata is None else [listing.metadata[i] for i in keep],
    )


def _scan_files(
    listing: ImageListing, preprocess: Preprocess, known: _DigestCache
) -> tuple[list[str], tuple[int, int]]:
    """Every file's SHA-256, and the (height, width) every sample has after resize and crop.

    Files whose stat signature the digest cache remembers are not read; the rest are read
    and hashed on the pool. A size that differs from the first image's is an error.
    """
    file_digests: list[str] = []
    first: tuple[str, tuple[int, int], tuple[int, int]] | None = None
    facts = [known.get(f, known.signature(f)) if known.path is not None else None for f in listing.files]

    def scan(i: int) -> tuple[str, tuple[int, int]]:
        name = listing.sample_ids[i]
        signature = known.signature(listing.files[i])
        data = _read_file(listing.files[i], name)
        size = images.probe_size(data, name, exif_transpose=preprocess.exif_transpose)
        file_digest = hashlib.sha256(data).hexdigest()
        known.put(listing.files[i], signature, file_digest, size)
        return file_digest, size

    misses = [i for i, fact in enumerate(facts) if fact is None]
    pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="gate-scan")
    try:
        fresh = pool.map(scan, misses)  # lazily, in order: the first bad sample is reported
        for i in range(len(listing.files)):
            fact = facts[i]
            file_digest, size = fact if fact is not None else next(fresh)
            name = listing.sample_ids[i]
            out = images.output_size(size, preprocess, name)
            file_digests.append(file_digest)
            if first is None:
                first = (name, size, out)
            elif out != first[2]:
                raise DatasetError(_size_mismatch(name, size, out, first, preprocess))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    assert first is not None  # the readers refuse empty datasets
    known.save()
    return file_digests, first[2]


class _DigestCache:
    """File digests and image sizes by stat signature, one JSON file per dataset source."""

    def __init__(self, root: Path | None, source: Path, preprocess: Preprocess) -> None:
        # Sizes depend on EXIF handling: a set read both ways keeps two files.
        key = f"{source}|exif" if preprocess.exif_transpose else str(source)
        self.version = cache_version("digests", DIGESTS_FORMAT)
        self.root = root
        where = None if root is None else self.version.directory(root)
        self.path = None if where is None else where / f"{hashlib.sha256(key.encode()).hexdigest()}.json"
        self._old: dict[str, list[Any]] = {}
        self._new: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        if self.path is not None:
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                if isinstance(loaded, dict) and loaded.get("scheme") == _HASH_SCHEME:
                    self._old = loaded["files"]
            except (OSError, ValueError, KeyError, TypeError):
                self._old = {}

    @staticmethod
    def signature(file: Path) -> list[int] | None:
        try:
            st = file.stat()
        except OSError:
            return None  # reading it will report the problem
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]

    def get(self, file: Path, signature: list[int] | None) -> tuple[str, tuple[int, int]] | None:
        if self.path is None:
            return None
        entry = self._old.get(str(file)) if signature is not None else None
        if entry is None or entry[0] != signature:
            return None
        with self._lock:
            self._new[str(file)] = entry
        return str(entry[1]), (int(entry[2][0]), int(entry[2][1]))

    def put(self, file: Path, signature: list[int] | None, digest: str, size: tuple[int, int]) -> None:
        if self.path is not None and signature is not None:
            with self._lock:
                self._new[str(file)] = [signature, digest, list(size)]

    def save(self) -> None:
        if self.path is None or self._new == self._old:
            return
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs time next load
            atomic_write(self.path, json.dumps({"scheme": _HASH_SCHEME, "files": self._new}), fsync=False)
            if self.root is not None:
                self.version.mark(self.root)


class _NpzDigest:
    """An ``.npz`` set's SHA-256 by the file's identity: its path, the classes the spec
    gives, and its stat signature (size, mtime, ctime, inode) taken before and after the
    file is read. Hashing 200 MB costs about as much as running a small model on it; an
    unchanged file is not hashed again. A signature that moved while the file was read
    (a write in progress) is neither trusted nor stored: the set is hashed as read."""

    def __init__(self, root: Path | None, path: Path, spec_classes: list[str] | None) -> None:
        key = _canonical({"npz": str(path), "classes": spec_classes})
        self.version = cache_version("digests", DIGESTS_FORMAT)
        self.root = root
        where = None if root is None else self.version.directory(root)
        self.path = None if where is None else where / f"npz-{hashlib.sha256(key).hexdigest()}.json"
        self._before = _DigestCache.signature(path) if self.path is not None else None
        self._file = path

    def _unchanged(self) -> bool:
        return self._before is not None and _DigestCache.signature(self._file) == self._before

    def get(self) -> str | None:
        """The remembered SHA-256, when the file is the one it was taken from (call after reading it)."""
        if self.path is None or not self._unchanged():
            return None
        try:
            entry = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("scheme") != _HASH_SCHEME or entry.get("signature") != self._before:
            return None
        sha256 = entry.get("sha256")
        return sha256 if isinstance(sha256, str) else None

    def put(self, sha256: str) -> None:
        if self.path is None or not self._unchanged():
            return
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs time next load
            text = json.dumps({"scheme": _HASH_SCHEME, "signature": self._before, "sha256": sha256})
            atomic_write(self.path, text, fsync=False)
            if self.root is not None:
                self.version.mark(self.root)


def _size_mismatch(
    name: str,
    size: tuple[int, int],
    out: tuple[int, int],
    first: tuple[str, tuple[int, int], tuple[int, int]],
    preprocess: Preprocess,
) -> str:
    first_name, first_size, first_out = first
    if preprocess.resize is None and preprocess.crop is None:
        return (
            f"image {name} is {size[0]}x{size[1]} (HxW) but the expected size (that of "
            f"the first image, {first_name}) is {first_out[0]}x{first_out[1]}; images of "
            "different sizes need preprocess.resize and/or preprocess.crop"
        )
    return (
        f"image {name} ({size[0]}x{size[1]} HxW) becomes {out[0]}x{out[1]} after "
        f"resize/crop but the expected size (from the first image, {first_name}, "
        f"{first_size[0]}x{first_size[1]}) is {first_out[0]}x{first_out[1]}; set "
        "preprocess.resize to [height, width] or add preprocess.crop so that every "
        "image ends up the same size"
    )


def _read_file(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read image {name} ({path}): {exc}") from exc


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _hash_header(kind: str, classes: list[str], preprocess: Preprocess | None) -> hashlib._Hash:
    # Name, description and location are left out on purpose: the same data and
    # preprocessing must hash the same wherever it is stored and whatever it is called.
    digest = hashlib.sha256()
    digest.update(
        _canonical(
            {
                "scheme": _HASH_SCHEME,
                "kind": kind,
                "classes": classes,
                "preprocess": None if preprocess is None else preprocess.identity(),
            }
        )
    )
    return digest


def _hash_array(digest: hashlib._Hash, array: npt.NDArray[Any]) -> None:
    contiguous = np.ascontiguousarray(array)
    digest.update(b"\n" + _canonical({"dtype": contiguous.dtype.str, "shape": contiguous.shape}))
    # the array's own buffer, not a copy of it (a 200 MB set took 0.1 s to copy)
    digest.update(contiguous.reshape(-1).view(np.uint8).data if contiguous.size else b"")
