"""The local engine: inference in this process, with ONNX Runtime.

Sessions come from the session cache (keyed by the model's SHA-256, never hashed again
here), batches from the tensor cache when the set is an image set, read a batch ahead on
a helper thread (:func:`gate.datasets.prefetch.prefetch`) while the model runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gate.datasets import TensorCacheUse
from gate.datasets.prefetch import prefetch
from gate.engines.base import EngineResult, ModelInput, RunOptions, prediction_table
from gate.inference import LoadedModel, auto_batch_size, check_compatible, load_model, predict
from gate.providers import CUDA

if TYPE_CHECKING:
    from gate.cache import Caches
    from gate.datasets import Dataset
    from gate.providers import Provider


class LocalEngine:
    """The :class:`~gate.engines.base.InferenceEngine` that runs in this process."""

    def run(self, model: ModelInput, dataset: Dataset, options: RunOptions) -> EngineResult:
        cache_report: dict[str, str] = {}
        caches = options.caches
        loaded = _session(model, options.provider, caches, cache_report)
        runtime: dict[str, Any] = loaded.runtime()
        check_compatible(loaded, dataset.classes, dataset.sample_shape)
        size = loaded.fixed_batch or options.batch_size or auto_batch_size(dataset.sample_shape)
        runtime["batch_size"] = size
        runtime["io_binding"] = loaded.provider == CUDA
        tensor_use = TensorCacheUse()
        batches = caches.tensors.batches(dataset, size, tensor_use) if caches.tensors else dataset.batches(size)
        predictions = predict(
            loaded,
            prefetch(batches),
            n_classes=len(dataset.classes),
            total=len(dataset),
            sample_ids=dataset.sample_ids,
            progress=options.progress,
            labels=np.asarray(dataset.labels, dtype=np.int64),
        )
        if caches.tensors is not None:
            cache_report["tensors"] = tensor_use.status
        return EngineResult(prediction_table(dataset, predictions), runtime, cache_report)


def _session(model: ModelInput, provider: Provider, caches: Caches, report: dict[str, str]) -> LoadedModel:
    """The model's ONNX Runtime session: from the session cache when there is one."""
    if caches.sessions is None:
        return load_model(model.data, provider=provider, source=model.source, sha256=model.sha256)
    loaded, hit = caches.sessions.get(model.data, provider=provider, source=model.source, sha256=model.sha256)
    report["session"] = "hit" if hit else "miss"
    return loaded
