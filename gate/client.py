"""A thin Python client of the gate service, used by ``gate check`` and the demo.

Errors from the server arrive as :class:`GateClientError`, carrying the gRPC status
code name and the server's message. TLS (with a client certificate for mutual TLS) and a
bearer token are options of :class:`GateClient`; a client-side setting that cannot work
(an unreadable certificate file, half a key pair) is a :class:`RequestError`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gate._proto.gate.v1 import gate_pb2 as pb
from gate._proto.gate.v1 import gate_pb2_grpc as pb_grpc
from gate.atomic import atomic_write
from gate.config import DEFAULT_MAX_MESSAGE_BYTES, REPLY_SIZE_FACTOR
from gate.errors import GateError, RequestError
from gate.wire import labels_to_pb

CHUNK_BYTES = 1 << 20
#: Client-side load balancing policies: one server at a time, or each call to the next.
LOAD_BALANCING = ("pick_first", "round_robin")
PROVIDERS = {"auto": pb.PROVIDER_AUTO, "cuda": pb.PROVIDER_CUDA, "cpu": pb.PROVIDER_CPU, None: pb.PROVIDER_UNSPECIFIED}


class GateClientError(GateError):
    """A call to the gate service failed; ``code`` is the gRPC status code's name."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


@dataclass(frozen=True)
class Evaluation:
    evaluation_id: str
    verdict: pb.Verdict

    @property
    def document(self) -> dict[str, Any]:
        """The verdict JSON document (gate.verdict/v1)."""
        doc: dict[str, Any] = json.loads(self.verdict.verdict_json)
        return doc

    @property
    def attestation(self) -> str | None:
        """The server's signed statement of this verdict (gate.attestation/v1 JSON text,
        see gate.attest), or None when the server sent none."""
        return self.verdict.attestation_json or None


def _rpc(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except grpc.RpcError as e:
            raise GateClientError(e.code().name, e.details() or "") from e

    wrapper.__doc__ = fn.__doc__
    return wrapper


def _read_pem(option: str, path: str | os.PathLike[str] | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise RequestError(f"{option}: cannot read {path}: {e.strerror}") from e


def _channel_credentials(
    tls_ca: str | os.PathLike[str] | None,
    tls_cert: str | os.PathLike[str] | None,
    tls_key: str | os.PathLike[str] | None,
) -> grpc.ChannelCredentials:
    if (tls_cert is None) != (tls_key is None):
        raise RequestError("a client certificate needs its key: give tls_cert and tls_key together")
    return grpc.ssl_channel_credentials(
        root_certificates=_read_pem("tls_ca", tls_ca),  # None: the system's trusted roots
        private_key=_read_pem("tls_key", tls_key),
        certificate_chain=_read_pem("tls_cert", tls_cert),
    )


class GateClient:
    """A connection to a gate server.

    TLS is used when ``tls`` is true or any ``tls_*`` file is given: ``tls_ca`` is the
    PEM bundle that signed the server's certificate (default: the system's roots),
    ``tls_cert``/``tls_key`` the client certificate a mutual-TLS server asks for, and
    ``tls_server_name`` the name expected in the server's certificate when it differs
    from the target's host. ``token`` is sent as ``authorization: Bearer <token>`` with
    every call; without TLS it crosses the network in clear text. ``max_message_bytes``
    should match the server's setting.

    ``target`` may name several servers: ``dns:///gate-headless.gate.svc:50051`` (every
    address the name resolves to, re-resolved as replicas come and go) or
    ``ipv4:10.0.0.5:50051,10.0.0.6:50051``. ``load_balancing="round_robin"`` spreads calls
    over all of them; the default, ``pick_first``, sends every call to one.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = None,
        tls: bool = False,
        tls_ca: str | os.PathLike[str] | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        tls_server_name: str | None = None,
        token: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        load_balancing: str | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] = ()
        if token is not None:
            if not token or not token.isascii() or not token.isprintable() or " " in token:
                raise RequestError("the token must be non-empty printable ASCII without spaces")
            self._metadata = (("authorization", f"Bearer {token}"),)
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", REPLY_SIZE_FACTOR * max_message_bytes),
        ]
        if load_balancing is not None:
            if load_balancing not in LOAD_BALANCING:
                raise RequestError(
                    f"load_balancing={load_balancing!r} is not valid; it should be one of {', '.join(LOAD_BALANCING)}"
                )
            config: dict[str, Any] = {"loadBalancingConfig": [{load_balancing: {}}]}
            options.append(("grpc.service_config", json.dumps(config)))
        if tls or tls_ca is not None or tls_cert is not None or tls_key is not None:
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            credentials = _channel_credentials(tls_ca, tls_cert, tls_key)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        elif tls_server_name:
            raise RequestError("tls_server_name applies only to TLS: give tls_ca (or tls) as well")
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = pb_grpc.GateServiceStub(self._channel)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GateClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @_rpc
    def health(self, service: str = "") -> str:
        stub = health_pb2_grpc.HealthStub(self._channel)
        reply = stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=self.timeout or 10, metadata=self._metadata
        )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    @_rpc
    def upload_model(self, model: bytes | Path, *, filename: str = "", chunk_bytes: int = CHUNK_BYTES) -> pb.ModelRef:
        """Stream a model in chunks; returns the server's reference (its SHA-256).

        The hash is computed while streaming and declared in the last chunk, so hashing
        overlaps the transfer; the server verifies it, and so does this method."""
        data = Path(model).read_bytes() if isinstance(model, Path) else model
        digest = hashlib.sha256()
        view = memoryview(data)

        def chunks() -> Iterator[pb.ModelChunk]:
            first = True
            for start in range(0, len(data), chunk_bytes):
                piece = view[start : start + chunk_bytes]
                digest.update(piece)
                if first:
                    yield pb.ModelChunk(total_size=len(data), filename=filename, data=bytes(piece))
                    first = False
                else:
                    yield pb.ModelChunk(data=bytes(piece))
            yield pb.ModelChunk(sha256=digest.hexdigest())

        ref: pb.ModelRef = self._stub.UploadModel(chunks(), timeout=self.timeout, metadata=self._metadata)
        if ref.sha256 != digest.hexdigest():
            raise GateClientError("DATA_LOSS", f"the server stored {ref.sha256}, not {digest.hexdigest()}")
        return ref

    @_rpc
    def evaluate(
        self,
        model_sha256: str,
        dataset: str,
        *,
        policy_name: str | None = None,
        policy_yaml: str | None = None,
        labels: Mapping[str, Any] | None = None,
        provider: str | None = None,
        batch_size: int = 0,
        model_name: str = "",
        on_progress: Callable[[int, int], None] | None = None,
        baseline_sha256: str = "",
        fingerprint: bytes = b"",
        reference_sha256: Mapping[str, str] | None = None,
    ) -> Evaluation:
        """Run an evaluation and follow its events to the verdict. ``baseline_sha256`` (an
        uploaded champion model) and ``fingerprint`` (a training fingerprint file's bytes)
        feed `baseline` and `leakage` rules; ``reference_sha256`` (reference name -> an
        uploaded model) feeds `provider_parity` rules with `reference: NAME`."""
        request = pb.EvaluateRequest(
            model_sha256=model_sha256,
            dataset=dataset,
            labels=labels_to_pb(labels or {}),
            provider=PROVIDERS[provider],
            batch_size=batch_size,
            model_name=model_name,
            baseline_sha256=baseline_sha256,
            fingerprint=fingerprint,
            reference_sha256=dict(reference_sha256 or {}),
        )
        if policy_yaml is not None:
            request.policy_yaml = policy_yaml
        elif policy_name is not None:
            request.policy_name = policy_name
        evaluation_id = ""
        result: Evaluation | None = None
        # read to the end of the stream
        for event in self._stub.Evaluate(request, timeout=self.timeout, metadata=self._metadata):
            kind = event.WhichOneof("event")
            if kind == "accepted":
                evaluation_id = event.accepted.evaluation_id
            elif kind == "progress" and on_progress is not None:
                on_progress(event.progress.done, event.progress.total)
            elif kind == "verdict":
                result = Evaluation(evaluation_id or event.verdict.evaluation_id, event.verdict)
        if result is None:
            raise GateClientError("UNKNOWN", "the evaluation stream ended without a verdict")
        return result

    @_rpc
    def save_predictions(self, evaluation_id: str, path: str | os.PathLike[str]) -> Path:
        """Fetch a finished evaluation's predictions table and write it to ``path`` (its
        suffix, ``.csv`` or ``.parquet``, picks the format), whole or not at all; the
        file is checked against the size and SHA-256 the server declares."""
        target = Path(path)
        file_format = target.suffix.lower().removeprefix(".")
        if file_format not in ("csv", "parquet"):
            raise RequestError(
                f"predictions file {target}: unknown format '{target.suffix or '(no suffix)'}'; use .csv or .parquet"
            )
        request = pb.GetPredictionsRequest(evaluation_id=evaluation_id, format=file_format)
        size, declared, pieces = -1, "", []
        for chunk in self._stub.GetPredictions(request, timeout=self.timeout, metadata=self._metadata):
            size = chunk.total_size if size < 0 else size
            declared = chunk.sha256 or declared
            pieces.append(chunk.data)
        data = b"".join(pieces)
        if len(data) != size or hashlib.sha256(data).hexdigest() != declared:
            raise GateClientError("DATA_LOSS", f"the predictions of evaluation {evaluation_id} arrived damaged")
        atomic_write(target, data, fsync=True, mode=0o644)
        return target

    @_rpc
    def get_verdict(self, evaluation_id: str) -> pb.EvaluationRecord:
        record: pb.EvaluationRecord = self._stub.GetVerdict(
            pb.GetVerdictRequest(evaluation_id=evaluation_id), timeout=self.timeout, metadata=self._metadata
        )
        return record

    @_rpc
    def list_verdicts(
        self,
        *,
        model_sha256: str = "",
        dataset: str = "",
        policy: str = "",
        decision: str | None = None,
        limit: int = 0,
        full: bool = True,
    ) -> list[pb.EvaluationRecord]:
        """The newest ``limit`` (0: 50) records matching the filters, following the
        server's pages. With ``full`` each record carries its whole verdict (a record too
        large for a page is fetched with GetVerdict); without, summaries (``summary`` set:
        the decision, error, names and hashes)."""
        wanted = limit or 50
        view = pb.LIST_VIEW_FULL if full else pb.LIST_VIEW_SUMMARY
        request = pb.ListVerdictsRequest(
            model_sha256=model_sha256,
            dataset=dataset,
            policy=policy,
            decision=cast(pb.Decision, pb.Decision.Value(decision) if decision else pb.DECISION_UNSPECIFIED),
            view=view,
        )
        records: list[pb.EvaluationRecord] = []
        while len(records) < wanted:
            request.limit = wanted - len(records)
            page = self._stub.ListVerdicts(request, timeout=self.timeout, metadata=self._metadata)
            for record in page.records:
                if full and record.summary:
                    record = self.get_verdict(record.evaluation_id)
                records.append(record)
            if not page.next_page_token or not page.records:
                break
            request.page_token = page.next_page_token
        return records

    @_rpc
    def list_datasets(self) -> list[pb.DatasetEntry]:
        reply = self._stub.ListDatasets(pb.ListDatasetsRequest(), timeout=self.timeout, metadata=self._metadata)
        return list(reply.datasets)

    @_rpc
    def list_policies(self) -> list[pb.PolicyEntry]:
        reply = self._stub.ListPolicies(pb.ListPoliciesRequest(), timeout=self.timeout, metadata=self._metadata)
        return list(reply.policies)

    @_rpc
    def validate_policy(self, policy_yaml: str, *, dataset: str = "") -> pb.ValidatePolicyResponse:
        reply: pb.ValidatePolicyResponse = self._stub.ValidatePolicy(
            pb.ValidatePolicyRequest(policy_yaml=policy_yaml, dataset=dataset),
            timeout=self.timeout,
            metadata=self._metadata,
        )
        return reply

    @_rpc
    def call(self, method: str, request: Any) -> Any:
        """A unary GateService method by its name (``"Waive"``, ``"ReplayPolicy"``...),
        with this client's token and timeout."""
        return getattr(self._stub, method)(request, timeout=self.timeout, metadata=self._metadata)

    @_rpc
    def reload(self) -> pb.ReloadResponse:
        """Ask the server to re-read its datasets and policies (needs the admin role)."""
        reply: pb.ReloadResponse = self._stub.Reload(pb.ReloadRequest(), timeout=self.timeout, metadata=self._metadata)
        return reply
