"""The GateService implementation: it validates requests, converts messages to domain
objects and back, and delegates to the model store, the registry, ``evaluate`` and the
audit store. Errors leave as exceptions; the interceptor turns them into status codes.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Generator, Iterator

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate._proto.gate.v1 import gate_pb2 as pb
from gate._proto.gate.v1 import gate_pb2_grpc as pb_grpc
from gate.attest import render_attestation, sign_verdict
from gate.cache import Caches
from gate.config import ServerConfig
from gate.errors import (
    CancelledError,
    EvaluationTimeoutError,
    GateError,
    InternalError,
    NotFoundError,
    NotReadyError,
    PolicyError,
    ProviderError,
    RequestError,
)
from gate.evaluation import check_evidence
from gate.inference import cuda_runs
from gate.policy import Policy, parse_policy
from gate.registry import SHA256_RE, ModelStore, Registry
from gate.server import convert
from gate.server.admission import Admission
from gate.server.metrics import ServerMetrics
from gate.server.workers import EvaluateJob, LoadJob, Worker, WorkerDiedError, WorkerPool, load_in, model_crash
from gate.store import AuditLog
from gate.verdict import Decision, Verdict

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.1  # at most ten progress events a second, plus the last one


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class GateServicer(pb_grpc.GateServiceServicer):  # type: ignore[misc,unused-ignore]
    def __init__(
        self,
        config: ServerConfig,
        store: AuditLog,
        models: ModelStore,
        caches: Caches,
        pool: WorkerPool,
        *,
        signing_key: Ed25519PrivateKey | None = None,
    ) -> None:
        self.config = config
        self.signing_key = signing_key  # set: every verdict sent carries its signed attestation
        self.caches = caches
        self.pool = pool
        self.store = store
        self.models = models
        self.admission = Admission(running=config.max_concurrent_evaluations, queued=config.max_queued_evaluations)
        self.registry: Registry | None = None
        self.metrics: ServerMetrics | None = None
        self._reload_lock = threading.Lock()

    # -- helpers ---------------------------------------------------------------------

    def _ready(self) -> Registry:
        if self.registry is None:
            raise NotReadyError("the server is still loading its datasets and policies; retry shortly")
        return self.registry

    # -- models ----------------------------------------------------------------------

    def UploadModel(self, request_iterator: Iterator[pb.ModelChunk], context: grpc.ServicerContext) -> pb.ModelRef:
        first = next(request_iterator, None)
        if first is None:
            raise RequestError("empty upload: the first chunk must carry total_size")
        if first.total_size == 0:
            raise RequestError("total_size must be the model's size in bytes (> 0)")
        declared = {"sha256": self._declared_sha(first.sha256)}

        def chunks() -> Iterator[bytes]:
            yield first.data
            for chunk in request_iterator:
                if chunk.sha256:
                    late = self._declared_sha(chunk.sha256)
                    if declared["sha256"] and late != declared["sha256"]:
                        raise RequestError("the upload declared two different sha256 values")
                    declared["sha256"] = late
                yield chunk.data

        known = declared["sha256"]
        if known and self.models.path(known).is_file():
            # idempotent: drain the stream, verifying nothing is lost by skipping the write
            size = sum(len(c) for c in chunks())
            if size != first.total_size:
                raise RequestError(f"upload ended after {size} of the declared {first.total_size} bytes")
            log.info("model %s already present", known)
            return pb.ModelRef(sha256=known, size=self.models.path(known).stat().st_size, already_present=True)
        stored = self.models.put(first.total_size, chunks(), lambda: declared["sha256"])
        log.info("stored model %s (%d bytes, %s)", stored.sha256, stored.size, first.filename or "unnamed")
        return pb.ModelRef(sha256=stored.sha256, size=stored.size, already_present=stored.already_present)

    @staticmethod
    def _declared_sha(value: str) -> str:
        if value and not SHA256_RE.match(value.lower()):
            raise RequestError(f"sha256={value!r} is not valid; it should be 64 hex digits")
        return value.lower()

    # -- evaluations -----------------------------------------------------------------

    def Evaluate(self, request: pb.EvaluateRequest, context: grpc.ServicerContext) -> Iterator[pb.EvaluateEvent]:
        registry = self._ready()
        evaluation_id = uuid.uuid4().hex
        labels = convert.labels_to_dict(request.labels)
        which = request.WhichOneof("policy")
        policy_label = request.policy_name if which == "policy_name" else "<inline>"
        provider = convert.PROVIDERS.get(request.provider, self.config.default_provider)
        model_name = request.model_name or None
        self.store.record_accepted(
            evaluation_id=evaluation_id,
            model_sha256=request.model_sha256,
            model_name=model_name,
            dataset=request.dataset,
            policy=policy_label,
            labels=labels,
            requested_provider=provider,
        )
        verdict = Verdict(
            decision=Decision.ERROR,
            started_at=_now(),
            evaluation_id=evaluation_id,
            labels=labels,
            model={"sha256": request.model_sha256, "path": model_name},
            dataset={"name": request.dataset},
            policy={"name": policy_label},
            runtime={"requested_provider": provider},
        )
        admitted = False
        worker: Worker | None = None
        try:
            self.models.get(request.model_sha256.lower())
            baseline_sha = request.baseline_sha256.lower() or None
            if baseline_sha is not None:
                self.models.get(baseline_sha)
            dataset = registry.dataset(request.dataset)
            policy = self._policy(request, registry)
            policy.check_classes(dataset.classes)
            fingerprint = bytes(request.fingerprint) or None
            if fingerprint is not None:
                from gate.leakage import load_fingerprints

                load_fingerprints(fingerprint)  # a damaged file is the request's fault
            check_evidence(
                policy, dataset, has_baseline=baseline_sha is not None, has_fingerprint=fingerprint is not None
            )
            if provider == "cuda" and not cuda_runs():
                raise ProviderError(
                    "provider 'cuda' requested, but the CUDA execution provider cannot run on this server"
                )
            self.admission.acquire(context.is_active)
            admitted = True
            model_bytes = self.models.read(request.model_sha256.lower())
            # the model must load (in the worker: a model that crashes ONNX Runtime takes
            # only the worker down) before the evaluation is accepted: a file that is not a
            # loadable ONNX model is the request's fault, INVALID_ARGUMENT
            worker = self.pool.take()
            try:
                load_in(
                    worker, LoadJob(model_bytes, provider, model_name or "the model"), self.config.evaluation_timeout_s
                )
            except WorkerDiedError as e:
                self.pool.replace(worker)
                worker = None
                raise model_crash(e) from e
            except EvaluationTimeoutError:
                self.pool.replace(worker)
                worker = None
                raise
        except GateError as e:
            if worker is not None:
                self.pool.give_back(worker)
            if admitted:
                self.admission.release()
            verdict.error = {"type": e.kind, "message": e.message}
            self._finish(verdict)
            raise
        # the time limit covers loading the model (above) and, from here, evaluating it
        deadline = time.monotonic() + self.config.evaluation_timeout_s
        job = EvaluateJob(
            evaluation_id=evaluation_id,
            model=model_bytes,
            dataset_spec=str(registry.paths.get(dataset.name, dataset.source_path)),
            dataset_sha256=dataset.sha256,
            policy_yaml=policy.text,
            policy_source=policy.source,
            provider=provider,
            batch_size=request.batch_size or self.config.default_batch_size,
            model_name=model_name,
            labels=labels,
            baseline=self.models.read(baseline_sha) if baseline_sha is not None else None,
            fingerprint=fingerprint,
        )
        recorded = False
        try:
            yield pb.EvaluateEvent(accepted=pb.Accepted(evaluation_id=evaluation_id))
            verdict = yield from self._run(worker, job, context, verdict, deadline)
            # recorded before it is sent: a verdict a client has seen is always in the audit log
            if not self._finish(verdict):
                # a verdict that could not be recorded is not sent as PASS or FAIL: the
                # client gets (and the log gets, if it can still take it) a bare ERROR
                verdict.decision = Decision.ERROR
                verdict.rules, verdict.metrics = [], None
                verdict.error = {
                    "type": InternalError.kind,
                    "message": "the verdict could not be recorded in the audit log; see the server log",
                }
                self._finish(verdict)
            recorded = True
            self.admission.release()
            message = convert.domain_verdict_to_pb(verdict)
            if self.signing_key is not None:  # PASS, FAIL and ERROR alike; `gate verify` accepts only PASS
                message.attestation_json = render_attestation(sign_verdict(verdict, self.signing_key))
            yield pb.EvaluateEvent(verdict=message)
        finally:
            if not recorded:  # the call ended early (cancelled, or the server stopping)
                self._finish(verdict)
                self.admission.release()

    def _policy(self, request: pb.EvaluateRequest, registry: Registry) -> Policy:
        which = request.WhichOneof("policy")
        if which == "policy_name":
            return registry.policy(request.policy_name)
        if which == "policy_yaml":
            return parse_policy(request.policy_yaml, source="<inline>")
        raise RequestError("the request names no policy: set policy_name or policy_yaml")

    def _run(
        self, worker: Worker, job: EvaluateJob, context: grpc.ServicerContext, verdict: Verdict, deadline: float
    ) -> Generator[pb.EvaluateEvent, None, Verdict]:
        """Have ``worker`` evaluate; relay its progress as events. Past the deadline, when
        the client goes away, or if the call ends early, the worker is killed (the work
        really stops) and replaced; a worker that dies ends the evaluation as ERROR."""
        clean = False
        try:
            worker.send(job)
            last_sent = 0.0
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    verdict.error = {
                        "type": EvaluationTimeoutError.kind,
                        "message": f"evaluation exceeded the server's limit of {self.config.evaluation_timeout_s:g} s",
                    }
                    return verdict
                if not context.is_active():
                    verdict.error = {"type": CancelledError.kind, "message": "the client cancelled the evaluation"}
                    return verdict
                try:
                    message = worker.receive(min(0.25, remaining))
                except WorkerDiedError as e:
                    log.error(
                        "worker died during evaluation %s: %s",
                        job.evaluation_id,
                        e.message,
                        extra={"evaluation_id": job.evaluation_id},
                    )
                    verdict.error = {
                        "type": WorkerDiedError.kind,
                        "message": f"{e.message} while evaluating; the model may have crashed ONNX Runtime or"
                        " exhausted the worker's memory",
                    }
                    return verdict
                if message is None:
                    continue
                if message[0] == "progress":
                    done, total = message[1], message[2]
                    now = time.monotonic()
                    if done == total or now - last_sent >= PROGRESS_INTERVAL_S:
                        last_sent = now
                        yield pb.EvaluateEvent(progress=pb.Progress(done=done, total=total))
                elif message[0] == "verdict":
                    clean = True
                    result = Verdict.from_dict(message[1])
                    result.evaluation_id, result.labels = verdict.evaluation_id, verdict.labels
                    return result
                else:  # ("error", kind, message): the job failed before evaluate could judge
                    clean = True
                    verdict.error = {"type": message[1], "message": message[2]}
                    return verdict
        finally:
            if clean:
                self.pool.give_back(worker)
            else:
                self.pool.replace(worker)

    def _finish(self, verdict: Verdict) -> bool:
        """Record the verdict (an evaluation that ended without one is recorded as ERROR);
        False when it could not be recorded."""
        if verdict.error is None and verdict.decision is Decision.ERROR:
            verdict.error = {"type": CancelledError.kind, "message": "the call ended before the evaluation finished"}
        if verdict.error is not None:
            verdict.decision = Decision.ERROR
        assert verdict.evaluation_id is not None
        try:
            self.store.record_result(verdict.evaluation_id, verdict.to_dict())
        except GateError as e:  # e.g. the store closed under a server that is stopping
            log.error("evaluation could not be recorded: %s", e.message, extra={"evaluation_id": verdict.evaluation_id})
            return False
        if self.metrics is not None:
            self.metrics.observe(verdict)
        log.info(
            "evaluation %s: %s%s",
            verdict.evaluation_id,
            verdict.decision.value,
            f" ({verdict.error['type']}: {verdict.error['message']})" if verdict.error else "",
            extra={"evaluation_id": verdict.evaluation_id},
        )
        return True

    # -- administration ------------------------------------------------------------

    def reload(self) -> Registry:
        """Load the configured datasets and policies afresh and swap them in; on any
        problem the error lists them all and the registry in service stays."""
        with self._reload_lock:  # concurrent reloads would otherwise race to the swap
            registry = Registry.load(self.config.datasets, self.config.policies, digest_cache=self.caches.digests)
            # one assignment: a call sees the old registry or the new one, never a mix, and
            # an evaluation that already started keeps the one it started with
            self.registry = registry
        return registry

    def Reload(self, request: pb.ReloadRequest, context: grpc.ServicerContext) -> pb.ReloadResponse:
        try:
            registry = self.reload()
        except RequestError as e:
            log.warning("reload refused; still serving the previous datasets and policies: %s", e.message)
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, e.message)
        log.info(
            "reloaded: %d datasets (%s) and %d policies (%s)",
            len(registry.datasets),
            ", ".join(sorted(registry.datasets)),
            len(registry.policies),
            ", ".join(sorted(registry.policies)),
        )
        return pb.ReloadResponse(
            datasets=[
                pb.DatasetInfo(name=name, sha256=ds.sha256, samples=len(ds), classes=ds.classes)
                for name, ds in sorted(registry.datasets.items())
            ],
            policies=[
                pb.PolicyInfo(name=name, sha256=policy.sha256, source=policy.source)
                for name, policy in sorted(registry.policies.items())
            ],
        )

    # -- the record ------------------------------------------------------------------

    def GetVerdict(self, request: pb.GetVerdictRequest, context: grpc.ServicerContext) -> pb.EvaluationRecord:
        record = self.store.get(request.evaluation_id)
        if record is None:
            raise NotFoundError(f"no evaluation with id {request.evaluation_id!r}")
        return convert.record_to_pb(record)

    def ListVerdicts(self, request: pb.ListVerdictsRequest, context: grpc.ServicerContext) -> pb.ListVerdictsResponse:
        limit = request.limit or 50
        if limit > 10_000:
            raise RequestError(f"limit={limit} is not valid; it should be at most 10000")
        records = self.store.list(
            model_sha256=request.model_sha256 or None,
            dataset=request.dataset or None,
            policy=request.policy or None,
            decision=convert.DECISION_NAMES.get(request.decision),
            limit=limit,
        )
        return pb.ListVerdictsResponse(records=[convert.record_to_pb(r) for r in records])

    def ListDatasets(self, request: pb.ListDatasetsRequest, context: grpc.ServicerContext) -> pb.ListDatasetsResponse:
        registry = self._ready()
        entries = []
        for name, ds in sorted(registry.datasets.items()):
            support = [int((ds.labels == i).sum()) for i in range(len(ds.classes))]
            entries.append(
                pb.DatasetEntry(
                    name=name,
                    sha256=ds.sha256,
                    samples=len(ds),
                    classes=ds.classes,
                    description=(ds.spec.description or "").strip(),
                    support=support,
                )
            )
        return pb.ListDatasetsResponse(datasets=entries)

    def ListPolicies(self, request: pb.ListPoliciesRequest, context: grpc.ServicerContext) -> pb.ListPoliciesResponse:
        registry = self._ready()
        return pb.ListPoliciesResponse(
            policies=[
                pb.PolicyEntry(
                    name=name,
                    sha256=p.sha256,
                    description=(p.description or "").strip(),
                    rule_ids=[r.id for r in p.rules],
                    yaml=p.text,
                )
                for name, p in sorted(registry.policies.items())
            ]
        )

    def ValidatePolicy(
        self, request: pb.ValidatePolicyRequest, context: grpc.ServicerContext
    ) -> pb.ValidatePolicyResponse:
        try:
            policy = parse_policy(request.policy_yaml, source="<inline>")
            if request.dataset:
                policy.check_classes(self._ready().dataset(request.dataset).classes)
        except PolicyError as e:
            return pb.ValidatePolicyResponse(valid=False, problems=e.problems or [e.message])
        return pb.ValidatePolicyResponse(valid=True, name=policy.name, sha256=policy.sha256)
