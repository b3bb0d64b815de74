"""The caches an evaluation may use, all under one directory:

* ``tensors/``: preprocessed 8-bit pixels per image dataset (see
  :mod:`gate.datasets.cache`);
* ``results/``: per-sample predictions per (model SHA-256, dataset SHA-256, execution
  provider, ONNX Runtime version), so that judging the same model on the same set under
  another policy skips inference entirely;
* ``digests/``: each image file's SHA-256 by its stat signature, so loading an unchanged
  set does not read every file;
* sessions: loaded ONNX Runtime sessions per (model SHA-256, provider), in memory.

Entries are written to a temporary file and renamed into place, so a reader sees a whole
entry or none. Keys are content hashes: a changed model, dataset or preprocessing can
never hit an old entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gate.datasets import TensorCache
from gate.inference import Predictions, SessionCache

log = logging.getLogger(__name__)

_RESULTS_FORMAT = "gate.results/v2"  # v2: with per-sample confidence


class ResultCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    @staticmethod
    def key(*, model_sha256: str, dataset_sha256: str, provider: str, onnxruntime: str) -> str:
        text = json.dumps(
            {
                "format": _RESULTS_FORMAT,
                "model": model_sha256,
                "dataset": dataset_sha256,
                "provider": provider,
                "onnxruntime": onnxruntime,
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str, samples: int, n_classes: int) -> Predictions | None:
        path = self.root / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as f:
                labels, scores, conf = f["labels"], f["scores"], f["confidence"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring unreadable result cache entry %s: %s", path, e)
            return None
        if (
            labels.shape != (samples,)
            or scores.shape != (samples,)
            or conf.shape != (samples,)
            or labels.dtype != np.int64
            or (samples and (labels.min() < 0 or labels.max() >= n_classes))
        ):
            log.warning("ignoring result cache entry %s: it does not fit the dataset", path)
            return None
        return Predictions(labels=labels, scores=scores.astype(np.float32), confidence=conf.astype(np.float32))

    def put(self, key: str, predictions: Predictions) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".put-", suffix=".npz", dir=self.root)
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, labels=predictions.labels, scores=predictions.scores, confidence=predictions.confidence)
                os.replace(tmp, self.root / f"{key}.npz")
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError as e:  # a cache that cannot be written only costs speed
            log.warning("result cache unavailable at %s: %s", self.root, e)


@dataclass
class Caches:
    tensors: TensorCache | None = None
    results: ResultCache | None = None
    sessions: SessionCache | None = field(default=None)
    digests: Path | None = None
    hashes: Path | None = None  # perceptual hashes of held-out sets, for leakage rules

    @classmethod
    def at(cls, root: Path, *, sessions: int = 4, threads: int = 0) -> Caches:
        """Caches under ``root``; sessions use ``threads`` intra-op threads (0: all cores)."""
        return cls(
            TensorCache(root / "tensors"),
            ResultCache(root / "results"),
            SessionCache(sessions, threads=threads),
            root / "digests",
            root / "hashes",
        )
