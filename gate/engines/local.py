"""The local engine: inference in this process, with ONNX Runtime.

Sessions come from the session cache (keyed by the model's SHA-256, never hashed again
here), batches from the tensor cache when the set is an image set, read a batch ahead on
a helper thread (:func:`gate.datasets.prefetch.prefetch`) while the model runs.

Where the model runs on CUDA and the set is an image set, the normalisation moves into
the model's graph (:mod:`gate.preprocess_graph`): 8-bit pixels cross to the device and
are normalised there, to the bit as on the host. The CPU provider keeps the host's
normalisation: the two measured within noise of each other there (benchmarks/README.md,
section h), and the host's needs no ``onnx`` and suits every model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from gate.datasets import TensorCacheUse
from gate.datasets.prefetch import prefetch
from gate.engines.base import EngineResult, ModelInput, RunOptions, prediction_table
from gate.inference import LoadedModel, auto_batch_size, check_compatible, load_model, predict
from gate.providers import CUDA

if TYPE_CHECKING:
    import numpy.typing as npt

    from gate.cache import Caches
    from gate.datasets import Dataset
    from gate.providers import Provider

log = logging.getLogger(__name__)

#: Where an image set's normalisation runs: ``auto`` (in the graph on CUDA, on the host
#: elsewhere), ``host`` or ``graph`` (on any provider; the tests use it on the CPU).
Normalisation = Literal["auto", "host", "graph"]


class LocalEngine:
    """The :class:`~gate.engines.base.InferenceEngine` that runs in this process."""

    def __init__(self, *, normalisation: Normalisation = "auto") -> None:
        self.normalisation = normalisation

    def run(self, model: ModelInput, dataset: Dataset, options: RunOptions) -> EngineResult:
        cache_report: dict[str, str] = {}
        caches = options.caches
        loaded = _session(model, options.provider, caches, cache_report)
        runtime: dict[str, Any] = loaded.runtime()
        check_compatible(loaded, dataset.classes, dataset.sample_shape)
        size = loaded.fixed_batch or options.batch_size or auto_batch_size(dataset.sample_shape)
        runtime["batch_size"] = size
        runtime["io_binding"] = loaded.provider == CUDA
        pixels_model = self._pixels_session(model, loaded, dataset, options, runtime)
        tensor_use = TensorCacheUse()
        predictions = predict(
            pixels_model or loaded,
            prefetch(_batches(dataset, size, caches, tensor_use, pixels=pixels_model is not None)),
            n_classes=len(dataset.classes),
            total=len(dataset),
            sample_ids=dataset.sample_ids,
            progress=options.progress,
            labels=np.asarray(dataset.labels, dtype=np.int64),
        )
        if caches.tensors is not None:
            cache_report["tensors"] = tensor_use.status
        return EngineResult(prediction_table(dataset, predictions), runtime, cache_report)

    def _pixels_session(
        self, model: ModelInput, loaded: LoadedModel, dataset: Dataset, options: RunOptions, runtime: dict[str, Any]
    ) -> LoadedModel | None:
        """The model with the set's normalisation in its graph, when it should run so
        (``runtime["normalisation"]`` says where it ran); None for the host's."""
        wanted = self.normalisation == "graph" or (self.normalisation == "auto" and loaded.provider == CUDA)
        source = dataset.pixel_source
        if not wanted or source is None:
            return None
        from gate.preprocess_graph import NotComposable, variant_key, with_normalisation

        preprocess = source.preprocess

        def compose(data: bytes) -> bytes:
            return with_normalisation(data, preprocess, loaded.input_name)

        try:
            composed = _session(
                model, options.provider, options.caches, {}, variant=variant_key(preprocess), transform=compose
            )
        except NotComposable as e:
            log.info("normalising on the host: %s", e)
            runtime["normalisation"] = f"host ({e})"
            return None
        runtime["normalisation"] = "graph"
        return composed


def _batches(
    dataset: Dataset, size: int, caches: Caches, use: TensorCacheUse, *, pixels: bool
) -> Iterator[npt.NDArray[Any]]:
    """Model input (or, with ``pixels``, an image set's 8-bit pixels) batch by batch."""
    if caches.tensors is not None:
        return caches.tensors.batches(dataset, size, use, pixels=pixels)
    source = dataset.pixel_source
    if pixels and source is not None:
        return source.iter_pixel_batches(size)
    return dataset.batches(size)


def _session(
    model: ModelInput, provider: Provider, caches: Caches, report: dict[str, str], **variant: Any
) -> LoadedModel:
    """The model's ONNX Runtime session: from the session cache when there is one.
    ``variant``: a derived session's ``variant`` and ``transform`` (see SessionCache.get)."""
    if caches.sessions is None:
        transform = variant.get("transform")
        data = transform(model.data) if transform is not None else model.data
        return load_model(data, provider=provider, source=model.source, sha256=model.sha256)
    loaded, hit = caches.sessions.get(
        model.data, provider=provider, source=model.source, sha256=model.sha256, **variant
    )
    report["session"] = "hit" if hit else "miss"
    return loaded
