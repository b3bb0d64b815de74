"""The evaluation service: what happens to an evaluation request, whatever transport
brought it. The gRPC servicer only translates messages to and from it.

An evaluation is recorded as accepted in the audit log first, then validated (model,
dataset, policy, evidence, provider), admitted (a running slot, or a wait in the bounded
queue), loaded in a leased worker process and, once the model loads, accepted: from
there it streams progress and ends with a verdict. Every path out of :meth:`evaluate`
closes the record: a refusal before acceptance is recorded and raised; an evaluation
that ends after acceptance (a verdict, a timeout, a cancellation, a dead worker) is
recorded and its verdict returned; a call that ends early is recorded as cancelled.

The verdict a caller receives is the one in the audit log. When the log cannot take a
verdict (a full disk, say), the evaluation is recorded as an ERROR naming that cause
instead, and that ERROR is what the caller gets; when the log takes nothing at all, the
caller gets an error status, and the same ERROR is recorded as soon as the log takes
writes again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate.attest import render_attestation, sign_verdict
from gate.cache import Caches, ResultCache, stored_predictions
from gate.config import ServerConfig
from gate.errors import (
    CancelledError,
    EvaluationTimeoutError,
    GateError,
    InternalError,
    NotFoundError,
    ProviderError,
    RequestError,
)
from gate.evaluation import check_evidence
from gate.inference import cuda_runs
from gate.policy import Policy, parse_policy
from gate.policy.deployment_rules import reference_names
from gate.predictions import write_predictions
from gate.providers import Provider
from gate.registry import Registry
from gate.server.admission import Admission
from gate.server.metrics import ServerMetrics
from gate.server.workers import (
    Done,
    EvaluateJob,
    Failed,
    LoadJob,
    ModelFile,
    Progress,
    Worker,
    WorkerDiedError,
    WorkerPool,
    load_in,
)
from gate.store import AuditLog
from gate.store.models import SHA256_RE, ModelStore
from gate.verdict import Decision, Verdict
from gate.waivers import apply_waivers, utc_now

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.1  # at most ten progress events a second, plus the last one
#: Pauses between attempts to record an evaluation's ERROR when the audit log refused its verdict.
RECORD_RETRY_DELAYS_S = (0.05, 0.25, 1.0)
#: How often evaluations the audit log refused altogether are offered to it again.
UNRECORDED_RETRY_S = 1.0
#: The files a finished evaluation's predictions table can be fetched as.
PREDICTION_FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class EvaluationRequest:
    """What a caller asks: a stored model (by SHA-256) on a registered dataset under a
    registered policy (``policy_name``) or one of its own (``policy_yaml``)."""

    model_sha256: str
    dataset: str
    policy_name: str | None = None
    policy_yaml: str | None = None
    labels: Mapping[str, Any] = field(default_factory=dict)
    provider: Provider | None = None  # None: the server's default
    batch_size: int | None = None  # None: the server's default
    model_name: str | None = None
    baseline_sha256: str | None = None  # a stored champion model, for `baseline` rules
    fingerprint: bytes | None = None  # a training fingerprint file, for `leakage` rules
    # stored reference models by the name `provider_parity` rules give them (`reference: NAME`)
    reference_sha256: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Accepted:
    """The model loaded: the evaluation runs."""

    evaluation_id: str


@dataclass(frozen=True)
class Finished:
    """The evaluation's verdict, as recorded, with its signed attestation when the server signs."""

    verdict: Verdict
    attestation: str | None


Event = Accepted | Progress | Finished


@dataclass
class _Evaluation:
    """One evaluation from its acceptance in the audit log to its record's closing."""

    verdict: Verdict
    accepted: bool = False  # the model loaded and Accepted was sent
    closed: bool = False  # its result is recorded (or waiting to be: see _close)

    @property
    def evaluation_id(self) -> str:
        assert self.verdict.evaluation_id is not None
        return self.verdict.evaluation_id

    def fail(self, error: GateError) -> None:
        self.verdict.error = {"type": error.kind, "message": error.message}


@dataclass(frozen=True)
class _Plan:
    """A validated request, as the jobs its worker will run."""

    load: LoadJob
    job: EvaluateJob


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class EvaluationService:
    def __init__(
        self,
        config: ServerConfig,
        store: AuditLog,
        models: ModelStore,
        pool: WorkerPool,
        *,
        signing_key: Ed25519PrivateKey | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.models = models
        self.pool = pool
        self.signing_key = signing_key  # set: every verdict sent carries its signed attestation
        self.admission = Admission(running=config.max_concurrent_evaluations, queued=config.max_queued_evaluations)
        self.metrics: ServerMetrics | None = None
        self._unrecorded: list[Verdict] = []
        self._unrecorded_lock = threading.Lock()
        self._retrier: threading.Thread | None = None
        self._results = Caches(results=ResultCache(config.cache_dir / "results"))  # what the workers left there
        self.clock: Callable[[], dt.datetime] = utc_now  # judges which waivers are valid

    # -- one evaluation --------------------------------------------------------------------

    def evaluate(
        self, request: EvaluationRequest, registry: Registry, *, is_active: Callable[[], bool]
    ) -> Iterator[Event]:
        """Run ``request``: Accepted, Progress events, then Finished. A refusal before
        acceptance is raised (a GateError), after it is recorded."""
        evaluation = self._accept(request)
        try:
            yield from self._run(evaluation, request, registry, is_active)
        finally:
            if not evaluation.closed:  # the call ended early (cancelled, or the server stopping)
                evaluation.fail(CancelledError("the call ended before the evaluation finished"))
                with contextlib.suppress(GateError):  # logged, and recorded once the audit log takes writes
                    self._close(evaluation)

    def _accept(self, request: EvaluationRequest) -> _Evaluation:
        evaluation_id = uuid.uuid4().hex
        provider = request.provider or self.config.default_provider
        policy = request.policy_name if request.policy_yaml is None else "<inline>"
        labels = dict(request.labels)
        self.store.record_accepted(
            evaluation_id=evaluation_id,
            model_sha256=request.model_sha256,
            model_name=request.model_name,
            dataset=request.dataset,
            policy=policy or "",
            labels=labels,
            requested_provider=provider,
        )
        verdict = Verdict(
            decision=Decision.ERROR,
            started_at=_now(),
            evaluation_id=evaluation_id,
            labels=labels,
            model={"sha256": request.model_sha256, "path": request.model_name},
            dataset={"name": request.dataset},
            policy={"name": policy or ""},
            runtime={"requested_provider": provider},
        )
        return _Evaluation(verdict)

    def _run(
        self, evaluation: _Evaluation, request: EvaluationRequest, registry: Registry, is_active: Callable[[], bool]
    ) -> Iterator[Event]:
        try:
            plan = self._plan(evaluation, request, registry)
            with self.admission.slot(is_active), self.pool.lease() as worker:
                # the model must load (in the worker: a model that crashes ONNX Runtime takes
                # only the worker down) before the evaluation is accepted: a file that is not a
                # loadable ONNX model is the request's fault
                refused = load_in(worker, plan.load, self.config.evaluation_timeout_s)
                if refused is None:
                    evaluation.accepted = True
                    yield Accepted(evaluation.evaluation_id)
                    evaluation.verdict = yield from self._follow(worker, plan.job, evaluation, is_active)
            if refused is not None:
                raise refused
        except GateError as e:
            evaluation.fail(e)
            if not evaluation.accepted:
                self._close(evaluation)
                raise
        yield self._finished(evaluation)

    def _plan(self, evaluation: _Evaluation, request: EvaluationRequest, registry: Registry) -> _Plan:
        """Check everything that can be checked before a worker is taken; the model is
        located, not read: its worker reads it and verifies its SHA-256."""
        sha = request.model_sha256.lower()
        model = ModelFile(str(self.models.get(sha)), sha)
        baseline_sha = (request.baseline_sha256 or "").lower() or None
        baseline = None if baseline_sha is None else ModelFile(str(self.models.get(baseline_sha)), baseline_sha)
        dataset = registry.dataset(request.dataset)
        policy = self._policy(request, registry)
        policy.check_classes(dataset.classes)
        if request.fingerprint is not None:
            from gate.leakage import load_fingerprints

            load_fingerprints(request.fingerprint)  # a damaged file is the request's fault
        references = self._references(request, policy)
        check_evidence(
            policy,
            dataset,
            has_baseline=baseline is not None,
            has_fingerprint=request.fingerprint is not None,
            references=references,
        )
        provider = evaluation.verdict.runtime["requested_provider"]
        if provider == "cuda" and not cuda_runs():
            raise ProviderError("provider 'cuda' requested, but the CUDA execution provider cannot run on this server")
        job = EvaluateJob(
            evaluation_id=evaluation.evaluation_id,
            model=model,
            dataset_spec=str(registry.paths.get(dataset.name, dataset.source_path)),
            dataset_sha256=dataset.sha256,
            policy_yaml=policy.text,
            policy_source=policy.source,
            provider=provider,
            batch_size=request.batch_size or self.config.default_batch_size,
            model_name=request.model_name,
            labels=dict(evaluation.verdict.labels or {}),
            baseline=baseline,
            fingerprint=request.fingerprint,
            references=references,
        )
        return _Plan(LoadJob(model, provider, request.model_name or "the model"), job)

    def _references(self, request: EvaluationRequest, policy: Policy) -> dict[str, ModelFile]:
        """The stored reference models of the request, by the name the policy's rules give
        them; a name no rule gives, or a model never uploaded, is the request's fault."""
        named = reference_names(policy.rules)
        found = {}
        for name, sha in sorted(request.reference_sha256.items()):
            if name not in named:
                expected = ", ".join(f"'{n}'" for n in sorted(named)) or "none"
                raise RequestError(
                    f"reference model '{name}': no provider_parity rule of policy '{policy.name}' names it"
                    f" (the rules name: {expected})"
                )
            if not SHA256_RE.match(sha.lower()):
                raise RequestError(f"reference model '{name}': reference_sha256 {sha!r} is not 64 hex digits")
            try:
                found[name] = ModelFile(str(self.models.get(sha.lower())), sha.lower())
            except NotFoundError as e:  # the request's fault: it names what it never uploaded
                raise RequestError(f"reference model '{name}': {e.message}") from e
        return found

    @staticmethod
    def _policy(request: EvaluationRequest, registry: Registry) -> Policy:
        if request.policy_yaml is not None:
            return parse_policy(request.policy_yaml, source="<inline>")
        if request.policy_name is not None:
            return registry.policy(request.policy_name)
        raise RequestError("the request names no policy: set policy_name or policy_yaml")

    def _follow(
        self, worker: Worker, job: EvaluateJob, evaluation: _Evaluation, is_active: Callable[[], bool]
    ) -> Generator[Progress, None, Verdict]:
        """Have ``worker`` evaluate; relay its progress. Past the deadline, when the client
        goes away, or when the worker dies, this raises (and the lease kills the worker:
        the work really stops)."""
        # the time limit covers loading the model and, from here, evaluating it
        limit = self.config.evaluation_timeout_s
        deadline = time.monotonic() + limit
        last_sent = 0.0
        try:
            worker.send(job)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise EvaluationTimeoutError(f"evaluation exceeded the server's limit of {limit:g} s")
                if not is_active():
                    raise CancelledError("the client cancelled the evaluation")
                reply = worker.receive(min(0.25, remaining))
                if isinstance(reply, Progress):
                    now = time.monotonic()
                    if reply.done == reply.total or now - last_sent >= PROGRESS_INTERVAL_S:
                        last_sent = now
                        yield reply
                elif isinstance(reply, Done):
                    result = Verdict.from_dict(reply.verdict)
                    result.evaluation_id, result.labels = evaluation.evaluation_id, evaluation.verdict.labels
                    return self._apply_waivers(result)
                elif isinstance(reply, Failed):  # the job failed before evaluate could judge
                    evaluation.fail(reply.error())
                    return evaluation.verdict
        except WorkerDiedError as e:
            log.error("worker died during evaluation %s: %s", job.evaluation_id, e.message)
            raise WorkerDiedError(
                f"{e.message} while evaluating; the model may have crashed ONNX Runtime or"
                " exhausted the worker's memory"
            ) from e

    def _apply_waivers(self, verdict: Verdict) -> Verdict:
        """The verdict with the waivers valid now for its model and dataset applied."""
        if verdict.decision is not Decision.FAIL:
            return verdict
        found = self.store.waivers(model_sha256=verdict.model.get("sha256"), dataset=verdict.dataset.get("name"))
        return apply_waivers(verdict, found, at=self.clock())

    def _finished(self, evaluation: _Evaluation) -> Finished:
        verdict = self._close(evaluation)
        attestation = None
        if self.signing_key is not None:  # PASS, FAIL and ERROR alike; `gate verify` accepts only PASS
            attestation = render_attestation(sign_verdict(verdict, self.signing_key))
            self._keep_attestation(verdict, attestation)
        return Finished(verdict, attestation)

    def _keep_attestation(self, verdict: Verdict, attestation: str) -> None:
        """Keep the attestation in the audit log for GetVerdict. The verdict is recorded
        already; an attestation the log refuses is still returned to the caller."""
        assert verdict.evaluation_id is not None
        try:
            self.store.record_attestation(verdict.evaluation_id, attestation)
        except GateError as e:
            log.error("evaluation %s: its attestation could not be recorded: %s", verdict.evaluation_id, e.message)

    @property
    def results_cache(self) -> ResultCache | None:
        """The predictions tables the workers left: replays judge them without a model."""
        return self._results.results

    # -- predictions -----------------------------------------------------------------------

    def predictions_file(self, evaluation_id: str, file_format: str = "csv") -> bytes:
        """The predictions table of a finished evaluation, as the file (``csv`` or
        ``parquet``) that ``gate eval --predictions-out`` writes for the same inputs. Like
        it, only an evaluation that judged (PASS or FAIL) has one; the table is the one
        the evaluation left in the results cache."""
        if file_format not in PREDICTION_FORMATS:
            raise RequestError(
                f"format={file_format!r} is not valid; it should be one of {', '.join(PREDICTION_FORMATS)}"
            )
        record = self.store.get(evaluation_id)
        if record is None:
            raise NotFoundError(f"no evaluation with id {evaluation_id!r}")
        verdict = record.verdict or {}
        if verdict.get("verdict") not in (Decision.PASS.value, Decision.FAIL.value):
            ended = "has not ended" if record.state == "running" else f"ended {verdict.get('verdict')}"
            raise NotFoundError(f"evaluation {evaluation_id} has no predictions: it {ended}")
        table = stored_predictions(
            self._results, verdict["model"]["sha256"], verdict["dataset"]["sha256"], verdict["runtime"]["provider"]
        )
        if table is None:
            raise NotFoundError(
                f"the predictions of evaluation {evaluation_id} are no longer kept on this server; evaluate again"
            )
        with tempfile.TemporaryDirectory(prefix="gate-predictions-") as tmp:
            path = Path(tmp) / f"predictions.{file_format}"
            write_predictions(table, path)
            return path.read_bytes()

    # -- the record ------------------------------------------------------------------------

    def _close(self, evaluation: _Evaluation) -> Verdict:
        """Record how the evaluation ended (without a verdict: as ERROR) and return the
        verdict as recorded: the evaluation's own, or, when the audit log refused it, an
        ERROR naming why. Raises InternalError when the log took neither; that ERROR is
        then recorded as soon as the log takes writes again."""
        evaluation.closed = True
        verdict = evaluation.verdict
        if verdict.error is None and verdict.decision is Decision.ERROR:
            verdict.error = {"type": CancelledError.kind, "message": "the call ended before the evaluation finished"}
        if verdict.error is not None:
            verdict.decision = Decision.ERROR
        try:
            self._record(verdict)
            return verdict
        except GateError as e:
            log.error(
                "evaluation %s: its %s verdict could not be recorded: %s",
                verdict.evaluation_id,
                verdict.decision.value,
                e.message,
            )
            fallback = _unrecorded(verdict, e)
        for delay in (*RECORD_RETRY_DELAYS_S, None):
            try:
                self._record(fallback)
                return fallback
            except GateError as e:
                log.error(
                    "evaluation %s: its ERROR could not be recorded either: %s", fallback.evaluation_id, e.message
                )
                if delay is None or self.pool.closed:  # the server is stopping: its next start closes it
                    break
                time.sleep(delay)
        self._record_later(fallback)
        assert fallback.error is not None
        raise InternalError(
            f"evaluation {fallback.evaluation_id}: {fallback.error['message']}; it will be recorded as ERROR"
            " once the audit log takes writes again"
        )

    def _record(self, verdict: Verdict) -> None:
        assert verdict.evaluation_id is not None
        self.store.record_result(verdict.evaluation_id, verdict.to_dict())
        if self.metrics is not None:
            self.metrics.observe(verdict)
        log.info(
            "evaluation %s: %s%s",
            verdict.evaluation_id,
            verdict.decision.value,
            f" ({verdict.error['type']}: {verdict.error['message']})" if verdict.error else "",
            extra={"evaluation_id": verdict.evaluation_id},
        )

    def _record_later(self, verdict: Verdict) -> None:
        with self._unrecorded_lock:
            self._unrecorded.append(verdict)
            if self._retrier is None:
                self._retrier = threading.Thread(target=self._retry_unrecorded, name="gate-record-retry", daemon=True)
                self._retrier.start()

    def _retry_unrecorded(self) -> None:
        """Offer the refused evaluations to the audit log again until it takes them all
        (or the server stops: the next start records them as interrupted)."""
        while not self.pool.closed:
            time.sleep(UNRECORDED_RETRY_S)
            with self._unrecorded_lock:
                waiting = list(self._unrecorded)
                if not waiting:
                    self._retrier = None
                    return
            for verdict in waiting:
                try:
                    self._record(verdict)
                except GateError:
                    continue
                with self._unrecorded_lock:
                    self._unrecorded.remove(verdict)


def _unrecorded(verdict: Verdict, cause: GateError) -> Verdict:
    """The ERROR that stands for a verdict the audit log refused: what is known of the
    evaluation, no rules or metrics (nobody can stand behind them), and the cause."""
    what = verdict.decision.value
    if verdict.error is not None:
        what += f" ({verdict.error['type']}: {verdict.error['message']})"
    return dataclasses.replace(
        verdict,
        decision=Decision.ERROR,
        rules=[],
        metrics=None,
        baseline=None,
        train_sample=None,
        error={
            "type": InternalError.kind,
            "message": f"the {what} verdict could not be recorded in the audit log: {cause.message}",
        },
    )
