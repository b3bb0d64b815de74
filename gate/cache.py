"""The caches an evaluation may use, all under one directory:

* ``tensors/``: preprocessed 8-bit pixels per image dataset (see
  :mod:`gate.datasets.cache`);
* ``results/``: the predictions table (:mod:`gate.predictions`) per (model SHA-256,
  dataset SHA-256, execution provider, ONNX Runtime version): the one store of
  predictions, so that judging the same model on the same set under another policy
  skips inference entirely, and a stored table can be judged without the model
  (:func:`stored_predictions`);
* ``digests/``: each image file's SHA-256 by its stat signature, so loading an unchanged
  set does not read every file;
* ``hashes/``: the perceptual hashes of each held-out set, for ``leakage`` rules;
* sessions: loaded ONNX Runtime sessions per (model SHA-256, provider), in memory.

Entries are written whole or not at all (:mod:`gate.atomic`). Keys are content hashes: a
changed model, dataset or preprocessing can never hit an old entry. Each on-disk cache
keeps its entries in the directory of its version (:mod:`gate.cache_version`: the code
that fills it, gate's, numpy's and Pillow's versions), so an entry computed by other
code is a miss. A cache that cannot be read or written only costs time: its entry is
ignored, with a warning. ``gate cache info|prune`` (:mod:`gate.cache_admin`) shows and
collects them.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gate.atomic import atomic_write
from gate.cache_version import CacheVersion, cache_version
from gate.datasets import Dataset, TensorCache
from gate.datasets import cache as datasets_cache
from gate.datasets.cache import touch
from gate.datasets.dataset import DIGESTS_FORMAT
from gate.inference import SessionCache, resolve_provider, runtime_versions
from gate.predictions import PredictionTable
from gate.providers import PROVIDERS

log = logging.getLogger(__name__)

#: The results cache's code version: bump when the stored table or inference's
#: post-processing (probabilities, ranking, what a column holds) changes.
#: v5: the table with the given label's probability (``label_score``); v4: the table
#: carries the set's metadata columns; v3: the whole predictions table without them; v2:
#: predicted class and confidence.
RESULTS_FORMAT = "v5"
#: The held-out hash cache's code version (the hash algorithm's own version is in each key).
HASHES_FORMAT = "v1"
_METADATA = "metadata."  # prefix of the metadata columns' names in an entry
_COLUMNS = ("sample_id", "label", "predicted", "confidence", "top_k_class", "top_k_score", "label_score")


class ResultCache:
    """Predictions tables by content key (see :meth:`key`), one ``.npz`` file each."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # predictions depend on the decoded pixels too: the decoder's version is part of theirs
        self.version = cache_version("results", RESULTS_FORMAT, decoder=datasets_cache.TENSORS_FORMAT)

    @staticmethod
    def key(*, model_sha256: str, dataset_sha256: str, provider: str, onnxruntime: str) -> str:
        text = json.dumps(
            {
                "format": f"gate.results/{RESULTS_FORMAT}",
                "model": model_sha256,
                "dataset": dataset_sha256,
                "provider": provider,
                "onnxruntime": onnxruntime,
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str, dataset: Dataset | None = None) -> PredictionTable | None:
        """The stored table, or None when absent or damaged, or when it does not fit
        ``dataset`` (its classes, sample ids and labels)."""
        path = self.version.directory(self.root) / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as f:
                columns: dict[str, Any] = {name: f[name] for name in _COLUMNS}
                if np.isnan(columns["label_score"]).any():
                    columns["label_score"] = None
                table = PredictionTable(
                    classes=tuple(str(c) for c in f["classes"]),
                    **columns,
                    metadata={n[len(_METADATA) :]: f[n] for n in f.files if n.startswith(_METADATA)},
                )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("ignoring unreadable result cache entry %s: %s", path, e)
            return None
        if not _consistent(table) or (dataset is not None and not _fits(table, dataset)):
            log.warning("ignoring result cache entry %s: it does not fit the dataset", path)
            return None
        touch(path)
        return table

    def put(self, key: str, table: PredictionTable) -> None:
        arrays: dict[str, Any] = {name: getattr(table, name) for name in _COLUMNS}
        if table.label_score is None:  # a table built without it: stored as "unknown" (NaN)
            arrays["label_score"] = np.full(len(table), np.nan, dtype=np.float32)
        arrays["classes"] = np.asarray(table.classes, dtype=np.str_)
        arrays.update({_METADATA + name: values for name, values in table.metadata.items()})
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        try:
            atomic_write(self.version.directory(self.root) / f"{key}.npz", buffer.getvalue(), fsync=False)
        except OSError as e:  # a cache that cannot be written only costs speed
            log.warning("result cache unavailable at %s: %s", self.root, e)
            return
        self.version.mark(self.root)


def _consistent(table: PredictionTable) -> bool:
    k = len(table.classes)
    indices = (table.label, table.predicted, table.top_k_class)
    return all(a.dtype == np.int64 and (a.size == 0 or (a.min() >= 0 and a.max() < k)) for a in indices)


def _fits(table: PredictionTable, ds: Dataset) -> bool:
    return (
        table.classes == tuple(ds.classes)
        and len(table) == len(ds)
        and np.array_equal(table.label, np.asarray(ds.labels))
        and table.sample_id.tolist() == list(ds.sample_ids)
    )


def results_key(model_sha256: str, dataset_sha256: str, provider: str) -> str:
    """The results cache key of a model on a set with a provider (``auto``, ``cpu``,
    ``cuda``, or ONNX Runtime's name of the provider that ran) and this ONNX Runtime."""
    ran = resolve_provider(provider) if provider in PROVIDERS else provider
    return ResultCache.key(
        model_sha256=model_sha256,
        dataset_sha256=dataset_sha256,
        provider=ran,
        onnxruntime=runtime_versions()["onnxruntime"],
    )


def stored_predictions(caches: Caches, model_sha256: str, dataset_sha256: str, provider: str) -> PredictionTable | None:
    """The predictions table an earlier evaluation of this model on this set (by content)
    stored, when there is one: a new policy can be judged on it without the model."""
    if caches.results is None:
        return None
    return caches.results.get(results_key(model_sha256, dataset_sha256, provider))


class HeldoutHashCache:
    """Perceptual hashes of held-out sets, one ``.npy`` per (dataset SHA-256, hash
    algorithm and version), so gating a set again with a leakage rule does not decode
    every image again."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.version = cache_version("hashes", HASHES_FORMAT, decoder=datasets_cache.TENSORS_FORMAT)

    def hashes(
        self, ds: Dataset, algorithm: str, compute: Callable[[Dataset], npt.NDArray[np.uint64]]
    ) -> npt.NDArray[np.uint64]:
        """The set's hashes: stored ones when they fit, else ``compute(ds)``, then stored."""
        path = self.version.directory(self.root) / f"{ds.sha256}-{algorithm}.npy"
        try:
            kept = np.load(path, allow_pickle=False)
            if kept.shape == (len(ds),) and kept.dtype == np.uint64:
                stored: npt.NDArray[np.uint64] = kept
                touch(path)
                return stored
        except (OSError, ValueError):
            pass  # absent or damaged: hash again
        hashes = compute(ds)
        buffer = io.BytesIO()
        np.save(buffer, hashes)
        try:
            atomic_write(path, buffer.getvalue(), fsync=False)
            self.version.mark(self.root)
        except OSError as e:  # a cache that cannot be written only costs time
            log.warning("held-out hash cache unavailable at %s: %s", self.root, e)
        return hashes


@dataclass
class Caches:
    tensors: TensorCache | None = None
    results: ResultCache | None = None
    sessions: SessionCache | None = field(default=None)
    digests: Path | None = None
    hashes: HeldoutHashCache | None = None  # perceptual hashes of held-out sets, for leakage rules

    def versions(self) -> dict[str, CacheVersion]:
        """The version of each on-disk cache in use (see :mod:`gate.cache_version`)."""
        used: dict[str, CacheVersion | None] = {
            "tensors": self.tensors.version if self.tensors is not None else None,
            "results": self.results.version if self.results is not None else None,
            "hashes": self.hashes.version if self.hashes is not None else None,
            "digests": cache_version("digests", DIGESTS_FORMAT) if self.digests is not None else None,
        }
        return {name: version for name, version in used.items() if version is not None}

    @classmethod
    def at(cls, root: Path, *, sessions: int = 4, threads: int = 0) -> Caches:
        """Caches under ``root``; sessions use ``threads`` intra-op threads (0: all cores)."""
        return cls(
            TensorCache(root / "tensors"),
            ResultCache(root / "results"),
            SessionCache(sessions, threads=threads),
            root / "digests",
            HeldoutHashCache(root / "hashes"),
        )

    def with_sessions(self) -> Caches:
        """These caches, given an in-memory session cache for one evaluation when they have
        none: every run of the same model within the evaluation (the candidate's pass and
        the suites that run it again: corruptions, another provider, latency) shares one
        ONNX Runtime session, created once."""
        return self if self.sessions is not None else replace(self, sessions=SessionCache(2))

    @classmethod
    def digests_only(cls, root: Path) -> Caches:
        """Only the file digests under ``root`` (``gate eval --no-cache``): what is decoded,
        inferred and judged is computed afresh; a file is not hashed again while its
        identity (path and stat signature) is unchanged."""
        return cls(digests=root / "digests")
