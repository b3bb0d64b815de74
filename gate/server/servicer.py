"""The GateService implementation: it validates requests, converts messages to domain
objects and back, and delegates to the model store, the registry, the evaluation service
(:mod:`gate.server.evaluations`) and the audit store. Errors leave as exceptions; the
interceptor turns them into status codes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import logging
import threading
from collections.abc import Iterator

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gate._proto.gate.v1 import gate_pb2 as pb
from gate._proto.gate.v1 import gate_pb2_grpc as pb_grpc
from gate.cache import Caches
from gate.config import ServerConfig
from gate.datasets.metadata import column_counts, metadata_columns
from gate.errors import NotFoundError, NotReadyError, PolicyError, RequestError
from gate.policy import parse_policy
from gate.registry import Registry
from gate.server import convert, pages
from gate.server.admission import Admission
from gate.server.auth import caller_name
from gate.server.evaluations import Accepted, EvaluationRequest, EvaluationService, Event
from gate.server.interceptors import fit_status_message
from gate.server.limits import check_evaluate_request
from gate.server.metrics import ServerMetrics
from gate.server.uploads import UploadLimits, UploadSlots, timed_requests
from gate.server.workers import Progress, WorkerPool
from gate.store import MAX_LIST_LIMIT, AuditLog
from gate.store.models import SHA256_RE, ModelStore
from gate.waivers import Waiver, new_waiver

log = logging.getLogger(__name__)

#: Pieces of a predictions file sent at once: far below any message limit.
PREDICTIONS_CHUNK_BYTES = 1 << 20
#: The most common values ListDatasets lists per metadata column (a column of per-sample
#: ids must not make the reply grow with the set); distinct_values counts them all.
MAX_LISTED_VALUES = 200


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
        self.evaluations = EvaluationService(config, store, models, pool, signing_key=signing_key)
        self.uploads = UploadSlots(UploadLimits.from_config(config))
        self.registry: Registry | None = None
        self._reload_lock = threading.Lock()

    @property
    def admission(self) -> Admission:
        return self.evaluations.admission

    @property
    def metrics(self) -> ServerMetrics | None:
        return self.evaluations.metrics

    @metrics.setter
    def metrics(self, metrics: ServerMetrics | None) -> None:
        self.evaluations.metrics = metrics

    # -- helpers ---------------------------------------------------------------------

    def _ready(self) -> Registry:
        if self.registry is None:
            raise NotReadyError("the server is still loading its datasets and policies; retry shortly")
        return self.registry

    # -- models ----------------------------------------------------------------------

    def UploadModel(self, request_iterator: Iterator[pb.ModelChunk], context: grpc.ServicerContext) -> pb.ModelRef:
        # a bounded number at once, each read with idle, total and rate limits (gate.server.uploads)
        with self.uploads.hold():
            requests = timed_requests(request_iterator, self.uploads.limits)
            try:
                return self._receive_model(requests)
            finally:
                requests.close()  # stops the stream's reading thread, whatever happened

    def _receive_model(self, requests: Iterator[pb.ModelChunk]) -> pb.ModelRef:
        first = next(requests, None)
        if first is None:
            raise RequestError("empty upload: the first chunk must carry total_size")
        if first.total_size == 0:
            raise RequestError("total_size must be the model's size in bytes (> 0)")
        declared = {"sha256": self._declared_sha(first.sha256)}

        def chunks() -> Iterator[bytes]:
            yield first.data
            for chunk in requests:
                if chunk.sha256:
                    late = self._declared_sha(chunk.sha256)
                    if declared["sha256"] and late != declared["sha256"]:
                        raise RequestError("the upload declared two different sha256 values")
                    declared["sha256"] = late
                yield chunk.data

        known = declared["sha256"]
        if known and self.models.path(known).is_file():
            # idempotent, but never on the hash alone: the bytes are hashed (not written
            # again) and must be that model, like any upload's
            stored = self.models.verify_present(known, first.total_size, chunks())
            log.info("model %s already present", known)
        else:
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
        check_evaluate_request(request)  # bounded before anything of it is recorded
        registry = self._ready()
        for event in self.evaluations.evaluate(_evaluation_request(request), registry, is_active=context.is_active):
            yield _event_message(event)

    def GetPredictions(
        self, request: pb.GetPredictionsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.PredictionsChunk]:
        data = self.evaluations.predictions_file(request.evaluation_id, request.format or "csv")
        yield pb.PredictionsChunk(total_size=len(data), data=data[:PREDICTIONS_CHUNK_BYTES])
        for start in range(PREDICTIONS_CHUNK_BYTES, len(data), PREDICTIONS_CHUNK_BYTES):
            yield pb.PredictionsChunk(data=data[start : start + PREDICTIONS_CHUNK_BYTES])
        yield pb.PredictionsChunk(sha256=hashlib.sha256(data).hexdigest())

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
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, fit_status_message(e.message))
        log.info("reloaded: %s", registry.describe())
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
        message = convert.record_to_pb(record)
        attestation = self.store.attestation(record.evaluation_id) if record.verdict is not None else None
        if attestation is not None:
            message.verdict.attestation_json = attestation
        return message

    def ReplayPolicy(self, request: pb.ReplayPolicyRequest, context: grpc.ServicerContext) -> pb.ReplayPolicyResponse:
        from gate.replay import parse_since, replay_store

        which = request.WhichOneof("policy")
        if which == "policy_name":
            policy = self._ready().policy(request.policy_name)
        elif which == "policy_yaml":
            policy = parse_policy(request.policy_yaml, source="<inline>")
        else:
            raise RequestError("the request names no policy: set policy_name or policy_yaml")
        report = replay_store(
            self.store,
            policy,
            results=self.evaluations.results_cache,
            dataset=request.dataset or None,
            since=parse_since(request.since) if request.since else None,
            limit=request.limit or None,
        )
        counts = report.counts()
        return pb.ReplayPolicyResponse(
            report_json=report.to_json(),
            evaluations=counts["evaluations"],
            now_fail=counts["now_fail"],
            now_pass=counts["now_pass"],
            not_replayable=counts["not_replayable"],
        )

    # -- waivers ---------------------------------------------------------------------

    def Waive(self, request: pb.WaiveRequest, context: grpc.ServicerContext) -> pb.WaiverInfo:
        now = self.evaluations.clock()
        waiver = new_waiver(
            model_sha256=request.model_sha256,
            dataset=request.dataset,
            rule_id=request.rule_id,
            reason=request.reason,
            expires=request.expires,
            granted_by=caller_name(self.config.tokens, context.invocation_metadata()),
            now=now,
        )
        if self.registry is not None and waiver.dataset not in self.registry.datasets:
            raise NotFoundError(f"no dataset {waiver.dataset!r} on this server")
        self.store.record_waiver(waiver)
        log.warning(
            "waiver %s granted by '%s': rule %r for model %s on dataset %r until %s: %s",
            waiver.id,
            waiver.granted_by,
            waiver.rule_id,
            waiver.model_sha256,
            waiver.dataset,
            waiver.expires_at,
            waiver.reason,
        )
        return _waiver_message(waiver, now)

    def RevokeWaiver(self, request: pb.RevokeWaiverRequest, context: grpc.ServicerContext) -> pb.WaiverInfo:
        from gate.waivers import timestamp

        if not request.reason.strip():
            raise RequestError("reason is empty: say why the waiver is revoked")
        now = self.evaluations.clock()
        waiver = self.store.record_revocation(
            request.waiver_id,
            revoked_by=caller_name(self.config.tokens, context.invocation_metadata()),
            reason=request.reason.strip(),
            revoked_at=timestamp(now),
        )
        log.warning("waiver %s revoked by '%s': %s", waiver.id, waiver.revoked_by, waiver.revoke_reason)
        return _waiver_message(waiver, now)

    def ListWaivers(self, request: pb.ListWaiversRequest, context: grpc.ServicerContext) -> pb.ListWaiversResponse:
        now = self.evaluations.clock()
        found = self.store.waivers(model_sha256=request.model_sha256.lower() or None, dataset=request.dataset or None)
        return pb.ListWaiversResponse(waivers=[_waiver_message(w, now) for w in found])

    def ListVerdicts(self, request: pb.ListVerdictsRequest, context: grpc.ServicerContext) -> pb.ListVerdictsResponse:
        limit = request.limit or 50
        if limit > MAX_LIST_LIMIT:
            raise RequestError(f"limit={limit} is not valid; it should be at most {MAX_LIST_LIMIT}")
        try:
            records = self.store.list(
                model_sha256=request.model_sha256 or None,
                dataset=request.dataset or None,
                policy=request.policy or None,
                decision=convert.DECISION_NAMES.get(request.decision),
                limit=min(limit + 1, MAX_LIST_LIMIT),  # one more tells whether a next page exists
                after=pages.decode_token(request.page_token),
            )
        except ValueError:
            raise RequestError(pages.INVALID_TOKEN) from None
        return pages.verdict_page(records, limit=limit, full=request.view == pb.LIST_VIEW_FULL)

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
                    metadata=[
                        pb.MetadataColumn(
                            name=column,
                            values=[
                                pb.MetadataValue(value=v, count=n)
                                for v, n in itertools.islice(counts.items(), MAX_LISTED_VALUES)
                            ],
                            distinct_values=len(counts),
                        )
                        for column, counts in column_counts(metadata_columns(ds.metadata)).items()
                    ],
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


def _evaluation_request(request: pb.EvaluateRequest) -> EvaluationRequest:
    which = request.WhichOneof("policy")
    return EvaluationRequest(
        model_sha256=request.model_sha256,
        dataset=request.dataset,
        policy_name=request.policy_name if which == "policy_name" else None,
        policy_yaml=request.policy_yaml if which == "policy_yaml" else None,
        labels=convert.labels_to_dict(request.labels),
        provider=convert.PROVIDERS.get(request.provider),
        batch_size=request.batch_size or None,
        model_name=request.model_name or None,
        baseline_sha256=request.baseline_sha256 or None,
        fingerprint=bytes(request.fingerprint) or None,
        reference_sha256=dict(request.reference_sha256),
    )


def _waiver_message(waiver: Waiver, now: dt.datetime) -> pb.WaiverInfo:
    fields = {k: v or "" for k, v in waiver.to_dict().items()}
    return pb.WaiverInfo(state=waiver.state(now), **fields)


def _event_message(event: Event) -> pb.EvaluateEvent:
    if isinstance(event, Accepted):
        return pb.EvaluateEvent(accepted=pb.Accepted(evaluation_id=event.evaluation_id))
    if isinstance(event, Progress):
        return pb.EvaluateEvent(progress=pb.Progress(done=event.done, total=event.total))
    message = convert.domain_verdict_to_pb(event.verdict)
    if event.attestation is not None:
        message.attestation_json = event.attestation
    return pb.EvaluateEvent(verdict=message)
