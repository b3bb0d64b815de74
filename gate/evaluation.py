"""Transport-neutral orchestration: model + dataset + policy -> Verdict.

The CLI and the service both call :func:`evaluate`. It never raises for a bad input:
every failure becomes a Verdict with decision ERROR and an ``error`` naming the culprit.
Only a complete evaluation in which every block rule passed is PASS.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from gate.cache import Caches, ResultCache
from gate.datasets import Dataset, TensorCacheUse, load_dataset
from gate.datasets.prefetch import prefetch
from gate.errors import GateError, InternalError, ModelError, RequestError
from gate.inference import (
    Provider,
    auto_batch_size,
    check_compatible,
    load_model,
    predict,
    resolve_provider,
    runtime_versions,
)
from gate.metrics import ClassificationMetrics
from gate.policy import Policy, apply_policy, load_policy
from gate.verdict import Decision, Verdict, decide

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
PathLike = str | os.PathLike[str]


def _read_model(model: bytes | PathLike) -> tuple[bytes, str]:
    if isinstance(model, bytes):
        return model, "<bytes>"
    path = Path(model)
    try:
        return path.read_bytes(), str(path)
    except FileNotFoundError as e:
        raise ModelError(f"model file not found: {path}") from e
    except IsADirectoryError as e:
        raise ModelError(f"model path is a directory, not an ONNX file: {path}") from e
    except OSError as e:
        raise ModelError(f"cannot read model file {path}: {e.strerror}") from e


def evaluate(
    model: bytes | PathLike,
    dataset: Dataset | PathLike,
    policy: Policy | PathLike,
    *,
    provider: Provider = "auto",
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    model_name: str | None = None,
    caches: Caches | None = None,
) -> Verdict:
    """Run ``model`` on ``dataset`` and judge it by ``policy``; never raises for bad input.

    ``progress(done, total)`` is called after each batch; an exception it raises (a
    GateError such as a cancellation or a timeout) stops the evaluation with ERROR.
    ``model_name`` names the model in the verdict instead of its path. ``caches`` (see
    :mod:`gate.cache`) lets repeated evaluations skip decoding, session creation and,
    for a model and set already evaluated, inference; the verdict's ``runtime.cache``
    says what was reused.
    """
    started = time.perf_counter()
    verdict = Verdict(
        decision=Decision.ERROR,
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        runtime={**runtime_versions(), "provider": None, "requested_provider": provider},
    )
    name = model_name if model_name is not None else None if isinstance(model, bytes) else str(model)
    verdict.model = {"sha256": None, "path": name}
    try:
        _run(
            verdict,
            model,
            dataset,
            policy,
            provider=provider,
            batch_size=batch_size,
            progress=progress,
            caches=caches,
        )
    except GateError as e:
        verdict.decision = Decision.ERROR
        verdict.error = {"type": e.kind, "message": e.message}
    except Exception as e:  # fail closed on anything unforeseen, and keep the traceback
        log.exception("evaluation crashed")
        verdict.decision = Decision.ERROR
        verdict.error = {"type": InternalError.kind, "message": f"internal error: {type(e).__name__}: {e}"}
    verdict.duration_s = round(time.perf_counter() - started, 6)
    return verdict


def _run(
    verdict: Verdict,
    model: bytes | PathLike,
    dataset: Dataset | PathLike,
    policy: Policy | PathLike,
    *,
    provider: Provider,
    batch_size: int | None,
    progress: ProgressFn | None,
    caches: Caches | None,
) -> None:
    if batch_size is not None and batch_size < 1:
        raise RequestError(f"batch_size={batch_size} is not valid; it should be >= 1")
    pol = policy if isinstance(policy, Policy) else load_policy(policy)
    verdict.policy = pol.to_dict()
    caches = caches or Caches()
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, digest_cache=caches.digests)
    verdict.dataset = {
        "name": ds.name,
        "sha256": ds.sha256,
        "samples": len(ds),
        "classes": list(ds.classes),
        "source": str(ds.source_path),
    }
    pol.check_classes(ds.classes)

    data, source = _read_model(model)
    source = verdict.model["path"] or source  # messages name the model as the caller does
    sha = hashlib.sha256(data).hexdigest()
    verdict.model = {"sha256": sha, "path": verdict.model["path"], "bytes": len(data)}
    cache_report: dict[str, str] = {}
    key = ResultCache.key(
        model_sha256=sha,
        dataset_sha256=ds.sha256,
        provider=resolve_provider(provider),
        onnxruntime=runtime_versions()["onnxruntime"],
    )
    preds = caches.results.get(key, len(ds), len(ds.classes)) if caches.results else None
    if preds is not None:
        # the same model on the same set with the same runtime: its predictions are known
        cache_report["results"] = "hit"
        verdict.runtime = {
            **runtime_versions(),
            "provider": resolve_provider(provider),
            "requested_provider": provider,
        }
        if progress is not None:
            progress(len(ds), len(ds))
    else:
        if caches.sessions is not None:
            loaded, session_hit = caches.sessions.get(data, provider=provider, source=source)
            cache_report["session"] = "hit" if session_hit else "miss"
        else:
            loaded = load_model(data, provider=provider, source=source)
        verdict.runtime = loaded.runtime()
        check_compatible(loaded, ds.classes, ds.sample_shape)
        size = loaded.fixed_batch or batch_size or auto_batch_size(ds.sample_shape)
        verdict.runtime["batch_size"] = size
        verdict.runtime["io_binding"] = loaded.provider == "CUDAExecutionProvider"
        tensor_use = TensorCacheUse()
        batches = caches.tensors.batches(ds, size, tensor_use) if caches.tensors else ds.batches(size)
        preds = predict(
            loaded,
            prefetch(batches),
            n_classes=len(ds.classes),
            total=len(ds),
            sample_ids=ds.sample_ids,
            progress=progress,
        )
        if caches.tensors is not None:
            cache_report["tensors"] = tensor_use.status
        if caches.results is not None:
            caches.results.put(key, preds)
            cache_report["results"] = "miss"
    if cache_report:
        verdict.runtime["cache"] = cache_report
    metrics = ClassificationMetrics.from_predictions(ds.labels, preds.labels, ds.classes, preds.confidence)
    verdict.metrics = metrics.to_dict()
    verdict.rules = apply_policy(pol, metrics)
    verdict.decision = decide(verdict.rules)
    if verdict.decision is Decision.ERROR:
        failed = [r for r in verdict.rules if r.status.value == "error"]
        verdict.error = {
            "type": InternalError.kind,
            "message": "; ".join(f"rule '{r.id}': {r.message}" for r in failed) or "no rule results",
        }
