"""Transport-neutral orchestration: model + dataset + policy -> Verdict.

The CLI and the service both call :func:`evaluate`. It never raises for a bad input:
every failure becomes a Verdict with decision ERROR and an ``error`` naming the culprit.
Only a complete evaluation in which every block rule passed is PASS.

The steps: resolve the inputs (each model file read once and hashed once), check the
policy's classes and evidence, run one inference pass per model and set (an engine of
:mod:`gate.engines`, or the results cache) giving a predictions table, compute every
number from the tables, judge, and build the verdict. The helpers return what they
found; only this module's :func:`_run` writes into the Verdict.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from gate.cache import Caches, results_key
from gate.datasets import Dataset, load_dataset, load_train_sample
from gate.datasets.metadata import metadata_columns
from gate.deployment.diagnosis import diagnose
from gate.deployment.steps import ReferenceSource, contract_stop, describe, measure, reference_sources
from gate.engines import engine_for
from gate.engines.base import ModelInput, ProgressFn, RunOptions, read_model
from gate.errors import GateError, InternalError, RequestError
from gate.heldout.audit import audit_heldout
from gate.inference import resolve_provider, runtime_versions
from gate.metrics import ClassificationMetrics
from gate.policy import Policy, apply_policy, load_policy
from gate.policy.context import NEEDS, BaselineRun, LeakageInputs, RuleContext, TrainSample
from gate.policy.deployment_rules import deployment_problems
from gate.policy.robustness_rules import RobustnessRule
from gate.policy.slice_rules import slice_problems, verdict_slices
from gate.predictions import PredictionTable, check_predictions_path, write_predictions
from gate.providers import Engine, Provider
from gate.verdict import Decision, Verdict, decide

if TYPE_CHECKING:
    from gate.leakage import Fingerprints

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
ModelSource = bytes | PathLike


def evaluate(
    model: ModelSource,
    dataset: Dataset | PathLike,
    policy: Policy | PathLike,
    *,
    provider: Provider = "auto",
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    model_name: str | None = None,
    caches: Caches | None = None,
    baseline: ModelSource | None = None,
    baseline_name: str | None = None,
    fingerprint: bytes | PathLike | None = None,
    engine: Engine = "local",
    ray_address: str | None = None,
    model_sha256: str | None = None,
    baseline_sha256: str | None = None,
    predictions_out: PathLike | None = None,
    references: Mapping[str, ReferenceSource] | None = None,
) -> Verdict:
    """Run ``model`` on ``dataset`` and judge it by ``policy``; never raises for bad input.

    ``progress(done, total)`` is called after each batch; an exception it raises (a
    GateError such as a cancellation or a timeout) stops the evaluation with ERROR.
    ``model_name`` names the model in the verdict instead of its path. ``caches`` (see
    :mod:`gate.cache`) lets repeated evaluations skip decoding, session creation and,
    for a model and set already evaluated, inference; the verdict's ``runtime.cache``
    says what was reused. ``model_sha256`` / ``baseline_sha256``: the SHA-256 the model
    files should have; the bytes read are checked against it (ModelError otherwise).

    ``baseline`` is the champion model: it runs on the same samples, the verdict's
    ``baseline`` section compares the two (paired bootstrap interval of the accuracy
    difference, McNemar table), and ``baseline`` rules judge the comparison.
    ``fingerprint`` is a training fingerprint file (``gate fingerprint``) for ``leakage``
    rules. ``engine="ray"`` shards inference over a Ray cluster (``ray_address``, or a
    local one); the verdict is the same as the local engine's. ``predictions_out``
    (``.csv`` or ``.parquet``) receives the candidate's predictions table when the
    verdict is PASS or FAIL (see :mod:`gate.predictions`). ``references``: the reference
    models ``provider_parity`` rules name, by name (default: files beside the policy file);
    a ``PinnedModel`` is a stored file checked against its SHA-256 as it is read.
    """
    started = time.perf_counter()
    verdict = Verdict(
        decision=Decision.ERROR,
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        runtime={**runtime_versions(), "provider": None, "requested_provider": provider},
    )
    name = model_name if model_name is not None else None if isinstance(model, bytes) else str(model)
    verdict.model = {"sha256": None, "path": name}
    request = _Request(provider, batch_size, progress, (caches or Caches()).with_sessions(), engine, ray_address)
    try:
        inputs = _Inputs(
            model, model_sha256, baseline, baseline_name, baseline_sha256, fingerprint, predictions_out, references
        )
        _run(verdict, dataset, policy, inputs, request)
    except GateError as e:
        verdict.decision = Decision.ERROR
        verdict.error = {"type": e.kind, "message": e.message}
    except Exception as e:  # fail closed on anything unforeseen, and keep the traceback
        log.exception("evaluation crashed")
        verdict.decision = Decision.ERROR
        verdict.error = {"type": InternalError.kind, "message": f"internal error: {type(e).__name__}: {e}"}
    verdict.duration_s = round(time.perf_counter() - started, 6)
    return verdict


@dataclass(frozen=True)
class _Request:
    provider: Provider
    batch_size: int | None
    progress: ProgressFn | None
    caches: Caches
    engine: Engine
    ray_address: str | None


@dataclass(frozen=True)
class _Inputs:
    """The models and evidence of one request, as the caller gave them."""

    model: ModelSource
    model_sha256: str | None
    baseline: ModelSource | None
    baseline_name: str | None
    baseline_sha256: str | None
    fingerprint: bytes | PathLike | None
    predictions_out: PathLike | None
    references: Mapping[str, ReferenceSource] | None = None


@dataclass(frozen=True)
class _Run:
    """One model on one set: its predictions table, the metrics from it, and how they were obtained."""

    model: ModelInput
    table: PredictionTable
    metrics: ClassificationMetrics
    runtime: dict[str, Any]
    cache: dict[str, str]


def check_evidence(
    pol: Policy, ds: Dataset, *, has_baseline: bool, has_fingerprint: bool, references: Collection[str] = ()
) -> None:
    """Refuse, before any inference, a policy whose rules need evidence the request lacks
    (RequestError listing each rule); the service calls it before accepting an evaluation."""
    missing = []
    images = ds.pixel_source is not None
    for rule in pol.rules:
        if rule.needs == "baseline" and not has_baseline:
            missing.append(f"rule '{rule.id}' ({rule.type}) needs {NEEDS['baseline']}")
        elif rule.needs == "fingerprint" and not has_fingerprint:
            missing.append(f"rule '{rule.id}' ({rule.type}) needs {NEEDS['fingerprint']}")
        elif isinstance(rule, RobustnessRule) and (why := rule.refusal(images=images, has_baseline=has_baseline)):
            missing.append(f"rule '{rule.id}' ({rule.type}): {why}")
        elif rule.needs == "train_sample" and ds.train_sample is None:
            missing.append(
                f"rule '{rule.id}' ({rule.type}) needs a training sample, and dataset '{ds.name}' has none"
                " (add `train_sample:` to its spec)"
            )
    missing += deployment_problems(pol.rules, has_baseline=has_baseline, references=list(references))
    missing += slice_problems(pol.rules, metadata_columns(ds.metadata))
    if missing:
        raise RequestError(
            f"policy '{pol.name}' cannot be applied to this request:\n" + "\n".join(f"  - {m}" for m in missing)
        )


def _run(verdict: Verdict, dataset: Dataset | PathLike, policy: Policy | PathLike, inp: _Inputs, req: _Request) -> None:
    if req.batch_size is not None and req.batch_size < 1:
        raise RequestError(f"batch_size={req.batch_size} is not valid; it should be >= 1")
    engine_for(req.engine)  # an unknown engine is refused before anything is read
    pol = policy if isinstance(policy, Policy) else load_policy(policy)
    verdict.policy = pol.to_dict()
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, digest_cache=req.caches.digests)
    verdict.dataset = {
        "name": ds.name,
        "sha256": ds.sha256,
        "samples": len(ds),
        "classes": list(ds.classes),
        "source": str(ds.source_path),
        **ds.verdict_fields(),
    }
    pol.check_classes(ds.classes)
    refs = reference_sources(pol, inp.references)
    check_evidence(
        pol, ds, has_baseline=inp.baseline is not None, has_fingerprint=inp.fingerprint is not None, references=refs
    )
    prints = _read_fingerprint(inp.fingerprint) if inp.fingerprint is not None else None
    if inp.predictions_out is not None:
        check_predictions_path(inp.predictions_out)

    candidate = read_model(inp.model, "model", verdict.model["path"], inp.model_sha256)
    verdict.model = {"sha256": candidate.sha256, "path": verdict.model["path"], "bytes": len(candidate.data)}
    description = describe(pol, candidate)
    if (stopped := contract_stop(pol, description, ds.classes)) is not None:
        verdict.rules, verdict.decision = stopped, decide(stopped)
        return
    run = _run_model(candidate, ds, req, progress=req.progress)
    verdict.runtime = run.runtime
    if run.cache:  # what each cache gave, and the version of each cache in use
        versions = {name: version.tag for name, version in req.caches.versions().items()}
        verdict.runtime["cache"] = {**run.cache, "versions": versions}
    verdict.metrics = run.metrics.to_dict() | verdict_slices(run.table, pol.rules)
    diagnose(verdict, run.metrics)
    context = RuleContext(run.metrics, table=run.table)
    champion = _run_baseline(inp, ds, req) if inp.baseline is not None else None
    champion_model = champion.model if champion is not None else None
    if champion is not None:
        evidence = _comparison(champion, _baseline_label(inp), run)
        verdict.baseline = evidence.to_dict()
        context = replace(context, baseline=evidence)
    if "train_sample" in pol.needs:
        verdict.train_sample, train = _run_train_sample(candidate, ds, req)
        context = replace(context, train_sample=train)
    if prints is not None:
        context = replace(context, leakage=_leakage_inputs(ds, prints, req.caches))
    deployment = measure(pol, description, (candidate, champion_model), ds, provider=req.provider, references=refs)
    if deployment is not None:
        verdict.metrics = {**verdict.metrics, **deployment.metrics()}
        context = replace(context, deployment=deployment)
    if "robustness" in pol.needs:
        from gate.corruptions.evidence import robustness_step  # the corruption suite only where a rule asks

        context = robustness_step(
            verdict.metrics, pol, ds, context, _corrupted_runner(req), (run, champion), caches=req.caches
        )
    context = _audit_heldout(verdict, pol, ds, context, champion, req)

    verdict.rules = apply_policy(pol, run.metrics, context)
    verdict.decision = decide(verdict.rules)
    if verdict.decision is Decision.ERROR:
        failed = [r for r in verdict.rules if r.status.value == "error"]
        verdict.error = {
            "type": InternalError.kind,
            "message": "; ".join(f"rule '{r.id}': {r.message}" for r in failed) or "no rule results",
        }
    elif inp.predictions_out is not None:
        _export(run.table, inp.predictions_out)


def _corrupted_runner(req: _Request) -> Callable[[ModelInput, Dataset], PredictionTable]:
    """Runs a model on a corrupted view: the same engine, without the clean tensor cache
    (the view caches its own pixels per cell)."""
    plain = replace(req, caches=replace(req.caches, tensors=None))
    return lambda model, view: _run_model(model, view, plain, progress=req.progress).table


def _audit_heldout(
    verdict: Verdict, pol: Policy, ds: Dataset, context: RuleContext, champion: _Run | None, req: _Request
) -> RuleContext:
    """The held-out audit the policy's rules ask for (:mod:`gate.heldout.audit`), into the verdict."""
    found = audit_heldout(pol, ds, context, champion.table if champion is not None else None, req.caches)
    if found.metrics:
        verdict.metrics = {**(verdict.metrics or {}), **found.metrics}
    verdict.dataset_audit = {**(verdict.dataset_audit or {}), **found.audit} or verdict.dataset_audit
    return found.context


def _baseline_label(inp: _Inputs) -> str | None:
    """How the verdict names the champion: as the caller does, or by its path."""
    if inp.baseline_name is not None:
        return inp.baseline_name
    return None if isinstance(inp.baseline, bytes) else str(inp.baseline)


def _run_model(model: ModelInput, ds: Dataset, req: _Request, *, progress: ProgressFn | None) -> _Run:
    """One model over one set: the table from the results cache, else from the requested engine."""
    results = req.caches.results
    key = results_key(model.sha256, ds.sha256, req.provider)
    table = results.get(key, ds) if results is not None else None
    if table is not None:
        # the same model on the same set with the same runtime: its predictions are known
        runtime = {**runtime_versions(), "provider": resolve_provider(req.provider), "requested_provider": req.provider}
        if progress is not None:
            progress(len(ds), len(ds))
        return _Run(model, table, table.metrics(), runtime, {"results": "hit"})
    engine = engine_for(req.engine, ray_address=req.ray_address)
    ran = engine.run(model, ds, RunOptions(req.provider, req.batch_size, progress, req.caches))
    if results is not None:
        results.put(key, ran.table)
        ran.cache["results"] = "miss"
    return _Run(model, ran.table, ran.table.metrics(), ran.runtime, ran.cache)


def _run_baseline(inp: _Inputs, ds: Dataset, req: _Request) -> _Run:
    """The champion on the candidate's samples; its errors say they are about the champion."""
    assert inp.baseline is not None
    label = _baseline_label(inp)
    data = read_model(inp.baseline, "baseline model", label, inp.baseline_sha256)
    shown = label or f"sha256 {data.sha256[:12]}"
    try:
        return _run_model(replace(data, source=f"(baseline) {shown}"), ds, req, progress=None)
    except GateError as e:  # the same kind of error, saying which model it was about
        e.message = f"baseline model {shown}: {e.message}"
        e.args = (e.message,)
        raise


def _comparison(champion: _Run, label: str | None, candidate: _Run) -> BaselineRun:
    """The evidence ``baseline`` rules judge: the two tables paired sample by sample."""
    return BaselineRun(
        model={"sha256": champion.model.sha256, "path": label, "bytes": len(champion.model.data)},
        metrics=champion.metrics,
        labels=candidate.table.label,
        champion_correct=champion.table.correct,
        challenger_correct=candidate.table.correct,
    )


def _run_train_sample(model: ModelInput, ds: Dataset, req: _Request) -> tuple[dict[str, Any], TrainSample]:
    """The candidate on the set's training sample: the verdict's ``train_sample`` section and the evidence."""
    train = load_train_sample(ds, digest_cache=req.caches.digests)
    run = _run_model(model, train, req, progress=None)
    section = {
        "name": train.name,
        "sha256": train.sha256,
        "samples": len(train),
        "source": str(train.source_path),
        "metrics": run.metrics.to_dict(),
    }
    return section, TrainSample(train.name, str(train.source_path), run.metrics)


def _read_fingerprint(fingerprint: bytes | PathLike) -> Fingerprints:
    from gate.leakage import load_fingerprints

    return load_fingerprints(fingerprint)


def _leakage_inputs(ds: Dataset, prints: Fingerprints, caches: Caches) -> LeakageInputs:
    """The held-out set's perceptual hashes (kept per dataset content by the hash cache)
    and the training fingerprints."""
    from gate.leakage import HASH_ALGORITHM, HASH_ALGORITHM_VERSION, hash_dataset

    algorithm = f"{HASH_ALGORITHM}-{HASH_ALGORITHM_VERSION}"
    hashes = caches.hashes.hashes(ds, algorithm, hash_dataset) if caches.hashes is not None else hash_dataset(ds)
    return LeakageInputs(hashes, ds.sample_ids, prints, prints.sha256)


def _export(table: PredictionTable, path: PathLike) -> None:
    try:
        write_predictions(table, path)
    except OSError as e:
        raise RequestError(f"cannot write predictions file {path}: {e.strerror or e}") from e
