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
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from gate.cache import Caches, ResultCache
from gate.datasets import Dataset, TensorCacheUse, load_dataset, load_train_sample
from gate.datasets.prefetch import prefetch
from gate.errors import GateError, InternalError, ModelError, RequestError
from gate.inference import (
    Predictions,
    auto_batch_size,
    check_compatible,
    load_model,
    predict,
    resolve_provider,
    runtime_versions,
)
from gate.metrics import ClassificationMetrics
from gate.policy import Policy, apply_policy, load_policy
from gate.policy.context import NEEDS, BaselineRun, LeakageInputs, RuleContext, TrainSample
from gate.providers import Engine, Provider
from gate.stats import mcnemar_exact, paired_bootstrap
from gate.verdict import Decision, Verdict, decide

if TYPE_CHECKING:
    from gate.leakage import Fingerprints

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
PathLike = str | os.PathLike[str]


def _read_model(model: bytes | PathLike, what: str = "model") -> tuple[bytes, str]:
    if isinstance(model, bytes):
        return model, "<bytes>"
    path = Path(model)
    try:
        return path.read_bytes(), str(path)
    except FileNotFoundError as e:
        raise ModelError(f"{what} file not found: {path}") from e
    except IsADirectoryError as e:
        raise ModelError(f"{what} path is a directory, not an ONNX file: {path}") from e
    except OSError as e:
        raise ModelError(f"cannot read {what} file {path}: {e.strerror}") from e


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
    baseline: bytes | PathLike | None = None,
    baseline_name: str | None = None,
    fingerprint: bytes | PathLike | None = None,
    engine: Engine = "local",
    ray_address: str | None = None,
) -> Verdict:
    """Run ``model`` on ``dataset`` and judge it by ``policy``; never raises for bad input.

    ``progress(done, total)`` is called after each batch; an exception it raises (a
    GateError such as a cancellation or a timeout) stops the evaluation with ERROR.
    ``model_name`` names the model in the verdict instead of its path. ``caches`` (see
    :mod:`gate.cache`) lets repeated evaluations skip decoding, session creation and,
    for a model and set already evaluated, inference; the verdict's ``runtime.cache``
    says what was reused.

    ``baseline`` is the champion model: it runs on the same samples, the verdict's
    ``baseline`` section compares the two (paired bootstrap interval of the accuracy
    difference, McNemar table), and ``baseline`` rules judge the comparison.
    ``fingerprint`` is a training fingerprint file (``gate fingerprint``) for ``leakage``
    rules. ``engine="ray"`` shards inference over a Ray cluster (``ray_address``, or a
    local one); the verdict is the same as the local engine's.
    """
    started = time.perf_counter()
    verdict = Verdict(
        decision=Decision.ERROR,
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        runtime={**runtime_versions(), "provider": None, "requested_provider": provider},
    )
    name = model_name if model_name is not None else None if isinstance(model, bytes) else str(model)
    verdict.model = {"sha256": None, "path": name}
    request = _Request(
        provider=provider,
        batch_size=batch_size,
        progress=progress,
        caches=caches or Caches(),
        engine=engine,
        ray_address=ray_address,
    )
    try:
        _run(verdict, model, dataset, policy, request, baseline, baseline_name, fingerprint)
    except GateError as e:
        verdict.decision = Decision.ERROR
        verdict.error = {"type": e.kind, "message": e.message}
    except Exception as e:  # fail closed on anything unforeseen, and keep the traceback
        log.exception("evaluation crashed")
        verdict.decision = Decision.ERROR
        verdict.error = {"type": InternalError.kind, "message": f"internal error: {type(e).__name__}: {e}"}
    verdict.duration_s = round(time.perf_counter() - started, 6)
    return verdict


@dataclass
class _Request:
    provider: Provider
    batch_size: int | None
    progress: ProgressFn | None
    caches: Caches
    engine: Engine
    ray_address: str | None


@dataclass
class _Run:
    """One model on one set: its predictions and metrics, and how they were obtained."""

    sha256: str
    size: int
    predictions: Predictions
    metrics: ClassificationMetrics
    runtime: dict[str, Any]
    cache: dict[str, str]


def _run_model(data: bytes, sha: str, source: str, ds: Dataset, req: _Request, *, progress: ProgressFn | None) -> _Run:
    """Run one model (``sha``: its SHA-256) over one set with the requested engine; results cache first."""
    caches = req.caches
    cache_report: dict[str, str] = {}
    key = ResultCache.key(
        model_sha256=sha,
        dataset_sha256=ds.sha256,
        provider=resolve_provider(req.provider),
        onnxruntime=runtime_versions()["onnxruntime"],
    )
    preds = caches.results.get(key, len(ds), len(ds.classes)) if caches.results else None
    metrics: ClassificationMetrics | None = None
    if preds is not None:
        # the same model on the same set with the same runtime: its predictions are known
        cache_report["results"] = "hit"
        runtime: dict[str, Any] = {
            **runtime_versions(),
            "provider": resolve_provider(req.provider),
            "requested_provider": req.provider,
        }
        if progress is not None:
            progress(len(ds), len(ds))
    elif req.engine == "ray":
        from gate.engines.ray_engine import evaluate_sharded

        sharded = evaluate_sharded(
            data,
            ds,
            provider=req.provider,
            batch_size=req.batch_size,
            address=req.ray_address,
            progress=progress,
            source=source,
        )
        preds = sharded.predictions
        runtime = {**runtime_versions(), "requested_provider": req.provider, **sharded.runtime}
        # the verdict's numbers come from the reduced per-shard counts
        metrics = ClassificationMetrics.from_confusion(sharded.confusion, ds.classes, sharded.calibration)
    else:
        if caches.sessions is not None:
            loaded, session_hit = caches.sessions.get(data, provider=req.provider, source=source)
            cache_report["session"] = "hit" if session_hit else "miss"
        else:
            loaded = load_model(data, provider=req.provider, source=source)
        runtime = loaded.runtime()
        check_compatible(loaded, ds.classes, ds.sample_shape)
        size = loaded.fixed_batch or req.batch_size or auto_batch_size(ds.sample_shape)
        runtime["batch_size"] = size
        runtime["io_binding"] = loaded.provider == "CUDAExecutionProvider"
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
    if cache_report.get("results") != "hit" and caches.results is not None:
        caches.results.put(key, preds)
        cache_report["results"] = "miss"
    if metrics is None:
        metrics = ClassificationMetrics.from_predictions(ds.labels, preds.labels, ds.classes, preds.confidence)
    return _Run(sha, len(data), preds, metrics, runtime, cache_report)


def check_evidence(pol: Policy, ds: Dataset, *, has_baseline: bool, has_fingerprint: bool) -> None:
    """Refuse, before any inference, a policy whose rules need evidence the request lacks
    (RequestError listing each rule); the service calls it before accepting an evaluation."""
    missing = []
    for rule in pol.rules:
        if rule.needs == "baseline" and not has_baseline:
            missing.append(f"rule '{rule.id}' ({rule.type}) needs {NEEDS['baseline']}")
        elif rule.needs == "fingerprint" and not has_fingerprint:
            missing.append(f"rule '{rule.id}' ({rule.type}) needs {NEEDS['fingerprint']}")
        elif rule.needs == "train_sample" and ds.train_sample is None:
            missing.append(
                f"rule '{rule.id}' ({rule.type}) needs a training sample, and dataset '{ds.name}' has none"
                " (add `train_sample:` to its spec)"
            )
    if missing:
        raise RequestError(
            f"policy '{pol.name}' cannot be applied to this request:\n" + "\n".join(f"  - {m}" for m in missing)
        )


def _run(
    verdict: Verdict,
    model: bytes | PathLike,
    dataset: Dataset | PathLike,
    policy: Policy | PathLike,
    req: _Request,
    baseline: bytes | PathLike | None,
    baseline_name: str | None,
    fingerprint: bytes | PathLike | None,
) -> None:
    if req.batch_size is not None and req.batch_size < 1:
        raise RequestError(f"batch_size={req.batch_size} is not valid; it should be >= 1")
    if req.engine not in ("local", "ray"):
        raise RequestError(f"unknown engine '{req.engine}'; choose local or ray")
    pol = policy if isinstance(policy, Policy) else load_policy(policy)
    verdict.policy = pol.to_dict()
    caches = req.caches
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, digest_cache=caches.digests)
    verdict.dataset = {
        "name": ds.name,
        "sha256": ds.sha256,
        "samples": len(ds),
        "classes": list(ds.classes),
        "source": str(ds.source_path),
        **ds.verdict_fields(),
    }
    pol.check_classes(ds.classes)
    check_evidence(pol, ds, has_baseline=baseline is not None, has_fingerprint=fingerprint is not None)
    prints = _read_fingerprint(fingerprint) if fingerprint is not None else None

    data, source = _read_model(model, "model")
    source = verdict.model["path"] or source  # messages name the model as the caller does
    sha = hashlib.sha256(data).hexdigest()
    verdict.model = {"sha256": sha, "path": verdict.model["path"], "bytes": len(data)}
    run = _run_model(data, sha, source, ds, req, progress=req.progress)
    verdict.runtime = run.runtime
    if run.cache:
        verdict.runtime["cache"] = run.cache
    verdict.metrics = run.metrics.to_dict()
    context = RuleContext(run.metrics)

    if baseline is not None:
        context = replace(context, baseline=_run_baseline(verdict, baseline, baseline_name, ds, run, req))
    if "train_sample" in pol.needs:
        context = replace(context, train_sample=_run_train_sample(verdict, data, source, ds, req))
    if prints is not None:
        context = replace(context, leakage=_leakage_inputs(ds, prints, caches))

    verdict.rules = apply_policy(pol, run.metrics, context)
    verdict.decision = decide(verdict.rules)
    if verdict.decision is Decision.ERROR:
        failed = [r for r in verdict.rules if r.status.value == "error"]
        verdict.error = {
            "type": InternalError.kind,
            "message": "; ".join(f"rule '{r.id}': {r.message}" for r in failed) or "no rule results",
        }


def _run_baseline(
    verdict: Verdict, baseline: bytes | PathLike, name: str | None, ds: Dataset, run: _Run, req: _Request
) -> BaselineRun:
    """Run the champion on the same samples and record the paired comparison."""
    data, _source = _read_model(baseline, "baseline model")
    label = name if name is not None else None if isinstance(baseline, bytes) else str(baseline)
    sha = hashlib.sha256(data).hexdigest()
    shown = label or f"sha256 {sha[:12]}"
    try:
        champion = _run_model(data, sha, f"(baseline) {shown}", ds, req, progress=None)
    except GateError as e:  # the same kind of error, saying which model it was about
        e.message = f"baseline model {shown}: {e.message}"
        e.args = (e.message,)
        raise
    champion_correct = champion.predictions.labels == ds.labels
    challenger_correct = run.predictions.labels == ds.labels
    interval = paired_bootstrap(champion_correct, challenger_correct)
    verdict.baseline = {
        "model": {"sha256": champion.sha256, "path": label, "bytes": champion.size},
        "metrics": champion.metrics.to_dict(),
        "comparison": {
            "accuracy_difference": interval.to_dict() if interval is not None else None,
            "mcnemar": mcnemar_exact(champion_correct, challenger_correct).to_dict(),
        },
    }
    return BaselineRun(
        model=verdict.baseline["model"],
        metrics=champion.metrics,
        labels=ds.labels,
        champion_correct=champion_correct,
        challenger_correct=challenger_correct,
    )


def _run_train_sample(verdict: Verdict, data: bytes, source: str, ds: Dataset, req: _Request) -> TrainSample:
    train = load_train_sample(ds, digest_cache=req.caches.digests)
    run = _run_model(data, verdict.model["sha256"], source, train, req, progress=None)
    verdict.train_sample = {
        "name": train.name,
        "sha256": train.sha256,
        "samples": len(train),
        "source": str(train.source_path),
        "metrics": run.metrics.to_dict(),
    }
    return TrainSample(train.name, str(train.source_path), run.metrics)


def _read_fingerprint(fingerprint: bytes | PathLike) -> Fingerprints:
    from gate.leakage import load_fingerprints

    return load_fingerprints(fingerprint)


def _leakage_inputs(ds: Dataset, prints: Fingerprints, caches: Caches) -> LeakageInputs:
    """The held-out set's perceptual hashes (kept per dataset content, so that gating the
    same set again does not decode every image again) and the training fingerprints."""
    from gate.leakage import HASH_ALGORITHM, HASH_ALGORITHM_VERSION, hash_dataset

    path = (
        caches.hashes / f"{ds.sha256}-{HASH_ALGORITHM}-{HASH_ALGORITHM_VERSION}.npy"
        if caches.hashes is not None
        else None
    )
    hashes = None
    if path is not None:
        try:
            kept = np.load(path, allow_pickle=False)
            if kept.shape == (len(ds),) and kept.dtype == np.uint64:
                hashes = kept
        except (OSError, ValueError):
            pass  # absent or damaged: hash again
    if hashes is None:
        hashes = hash_dataset(ds)
        if path is not None:
            _write_atomically(path, hashes)
    return LeakageInputs(hashes, ds.sample_ids, prints, prints.sha256)


def _write_atomically(path: Path, array: npt.NDArray[Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".put-", suffix=".npy", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, array)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as e:  # a cache that cannot be written only costs time
        log.warning("held-out hash cache unavailable at %s: %s", path.parent, e)
