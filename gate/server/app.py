"""Assembling the server: gRPC with the GateService, the standard health service
(SERVING only once datasets and policies have loaded) and server reflection; TLS (mutual
with ``tls_client_ca``) when configured, and bearer-token authorisation (``auth``).

``create_server(config) -> (server, port)`` is what tests use (``listen`` with port 0);
``gate serve`` builds the same thing and blocks.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gate._proto.gate.v1 import gate_pb2 as pb
from gate._proto.gate.v1 import gate_pb2_grpc as pb_grpc
from gate.attest import KeyFileError, key_id, load_or_create_signing_key, load_signing_key
from gate.cache import Caches
from gate.config import REPLY_SIZE_FACTOR, ConfigError, ServerConfig
from gate.errors import InternalError
from gate.inference import cuda_runs
from gate.server.auth import AuthInterceptor
from gate.server.interceptors import ErrorInterceptor
from gate.server.metrics import ServerMetrics
from gate.server.servicer import GateServicer
from gate.server.workers import WorkerPool, WorkerSettings
from gate.store import open_store
from gate.store.models import ModelStore

log = logging.getLogger(__name__)

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["GateService"].full_name


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from the configured PEM files, or None for a plain-text server."""
    if config.tls_cert is None or config.tls_key is None:
        return None

    def read(key: str, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as e:
            raise ConfigError(f"{key}: cannot read {path}: {e.strerror}") from e

    client_ca = read("tls_client_ca", config.tls_client_ca) if config.tls_client_ca is not None else None
    return grpc.ssl_server_credentials(
        [(read("tls_key", config.tls_key), read("tls_cert", config.tls_cert))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def signing_key(config: ServerConfig) -> Ed25519PrivateKey:
    """The key that signs verdicts. Without ``signing_key`` set, the one in the data
    directory, generated on first start; a configured one must exist. A key file that
    cannot be read or is not an Ed25519 key stops the start."""
    try:
        if config.signing_key is None:
            key = load_or_create_signing_key(config.signing_key_file)
        elif not config.signing_key.exists():
            raise ConfigError(
                f"signing_key: {config.signing_key} does not exist (create it with `gate key new --out"
                f" {config.signing_key}`, or leave signing_key unset for a key generated under data_dir)"
            )
        else:
            key = load_signing_key(config.signing_key)
    except KeyFileError as e:
        raise ConfigError(f"signing_key: {e.message}") from e
    try:
        if config.signing_key_file.stat().st_mode & 0o077:
            log.warning("the signing key %s may be read by other users (chmod 600 it)", config.signing_key_file)
    except OSError:
        pass
    return key


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


class GateServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        credentials = server_credentials(config)  # unreadable files stop the start here
        self.signing_key = signing_key(config)  # so does a signing key that cannot be read
        # SQLite by default; PostgreSQL when replicas share the audit log. The store
        # claims this server's replica id for as long as it is open.
        self.store = open_store(config.store_target, replica_id=config.replica)
        self.models = ModelStore(config.model_dir, max_bytes=config.max_model_bytes)
        # each running evaluation gets its share of the cores
        threads = max(1, (os.cpu_count() or 1) // config.max_concurrent_evaluations)
        self.pool = WorkerPool(
            config.max_concurrent_evaluations,
            WorkerSettings(
                cache_dir=config.cache_dir,
                threads=threads,
                memory_limit=config.max_worker_memory_bytes,
                log_level=logging.getLogger().getEffectiveLevel(),
                log_format=config.log_format,
                engine=config.engine,
                ray_address=config.ray_address,
            ),
        )
        self.servicer = GateServicer(
            config,
            self.store,
            self.models,
            Caches(digests=config.cache_dir / "digests"),
            self.pool,
            signing_key=self.signing_key,
        )
        self.metrics = ServerMetrics(
            running=lambda: self.servicer.admission.running,
            waiting=lambda: self.servicer.admission.waiting,
            store_bytes=self.models.total_bytes,
        )
        self.servicer.metrics = self.metrics
        self.metrics_port: int | None = None
        # queued evaluations hold a thread while they wait, and so does each upload while it
        # streams (both are bounded); keep some for everything else: health, reads, Reload
        self.rpc_threads = (
            config.max_concurrent_evaluations + config.max_queued_evaluations + config.max_concurrent_uploads + 8
        )
        self._grpc = grpc.server(
            ThreadPoolExecutor(max_workers=self.rpc_threads, thread_name_prefix="gate-rpc"),
            interceptors=[AuthInterceptor(config.tokens), ErrorInterceptor()],
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", REPLY_SIZE_FACTOR * config.max_message_bytes),
            ],
        )
        pb_grpc.add_GateServiceServicer_to_server(self.servicer, self._grpc)  # type: ignore[no-untyped-call]
        self.health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self._grpc,
        )
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        try:
            if credentials is None:
                self.port = self._grpc.add_insecure_port(config.listen)
            else:
                self.port = self._grpc.add_secure_port(config.listen, credentials)
        except RuntimeError as e:
            self.store.close()
            raise InternalError(f"cannot listen on {config.listen}: {e}") from e
        self.host = config.listen.rpartition(":")[0]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for service in ("", SERVICE_NAME):
            self.health.set(service, status)

    def start(self) -> None:
        """Accept connections (health answers NOT_SERVING until :meth:`load`)."""
        interrupted = self.store.mark_interrupted()
        if interrupted:
            log.warning("recorded %d evaluations interrupted by the last shutdown as ERROR", len(interrupted))
        log.info("audit log: %s (replica %s)", self.store.location, self.store.replica_id)
        self._grpc.start()
        config = self.config
        transport = "plain text" if config.tls_cert is None else "mutual TLS" if config.tls_client_ca else "TLS"
        log.info("gate listening on %s", self.address)  # tools read the address from the end of this line
        log.info(
            "transport: %s; authentication: %s",
            transport,
            f"{len(config.tokens)} bearer tokens" if config.tokens else "off (no tokens configured)",
        )
        if not _is_loopback(self.host):
            # legitimate behind a proxy that terminates TLS and authenticates, so only a warning
            if not config.tokens:
                log.warning("no tokens are configured: anyone who reaches %s may use this server", self.address)
            if config.tls_cert is None:
                log.warning("TLS is off: requests, and any bearer tokens, cross the network in clear text")
        log.info(
            "verdicts are signed with Ed25519 key %s (%s; `gate key show` prints its public key)",
            key_id(self.signing_key.public_key()),
            config.signing_key_file,
        )
        if self.config.metrics_listen:
            self.metrics_port = self.metrics.serve(self.config.metrics_listen)
        log.info(
            "execution providers: %s (default provider: %s)",
            "CUDA and CPU" if cuda_runs() else "CPU only (CUDA cannot run here)",
            self.config.default_provider,
        )

    def load(self) -> None:
        """Load datasets and policies, then report SERVING."""
        registry = self.servicer.reload()
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("serving %s", registry.describe())

    def wait(self) -> None:
        self._grpc.wait_for_termination()

    def stop(self, grace: float | None = 2.0) -> None:
        self.health.enter_graceful_shutdown()
        self._grpc.stop(grace).wait()
        self.pool.close()
        self.metrics.stop()
        self.store.close()

    def __enter__(self) -> GateServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop(grace=None)


def create_server(config: ServerConfig) -> tuple[GateServer, int]:
    """A started, loaded server and the port it listens on."""
    server = GateServer(config)
    try:
        server.start()
        server.load()
    except BaseException:
        server.stop(grace=None)
        raise
    return server, server.port
