"""The dashboard's HTTP server: the standard library's threading HTTP server, in a
thread of the gate server's process, on ``http_listen``.

It speaks TLS when the gRPC API does (the same ``tls_cert``/``tls_key``, and client
certificates signed by ``tls_client_ca`` when that is set), with the handshake in each
connection's own thread, so a client that stalls it holds up nobody else. It takes at
most :data:`MAX_CONNECTIONS` connections at once (more are closed at once), bounds each
request (headers as the standard library does, query parameters, form bodies of
:data:`MAX_FORM_BYTES`) and each connection's idle time. Every response carries a
Content-Security-Policy that lets a page use its own inline style and ``data:`` images
and nothing else: no script, no font, no request to any other place.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from gate.config import ConfigError, ServerConfig
from gate.dashboard.access import Access
from gate.dashboard.evaluations import ReportCache
from gate.dashboard.routes import DashboardHandler
from gate.errors import InternalError
from gate.store import AuditLog, open_store

log = logging.getLogger(__name__)

#: Connections served at once; more are closed as they arrive.
MAX_CONNECTIONS = 32
#: How long a connection may stay silent (seconds): a TLS handshake or a request included.
IDLE_TIMEOUT_S = 30.0
#: The largest form a POST may carry: a pasted policy (1 MiB, as over gRPC) and its encoding.
MAX_FORM_BYTES = 3 << 20


def tls_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The server's TLS context from the gRPC API's settings, or None for plain HTTP."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
        if config.tls_client_ca is not None:
            context.load_verify_locations(cafile=config.tls_client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"http_listen: cannot use tls_cert/tls_key/tls_client_ca for the dashboard: {e}") from e
    return context


def _is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (a name other than localhost may be anything)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], dashboard: Dashboard) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.dashboard = dashboard
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, DashboardHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("dashboard: %d connections already; closing one from %s", MAX_CONNECTIONS, client_address[0])
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a failed handshake or a client gone mid-reply: not worth a traceback on stderr
        log.debug("dashboard: connection from %s ended with an error", client_address[0], exc_info=True)


class Dashboard:
    """The read-only web dashboard of one gate server (see :mod:`gate.dashboard`)."""

    def __init__(self, config: ServerConfig, *, store: AuditLog | None = None, listen: str | None = None) -> None:
        where = listen or config.http_listen
        if where is None:
            raise ConfigError("http_listen is not set: the dashboard has nowhere to listen")
        self.config = config
        self.access = Access(config.tokens)
        self.tls = tls_context(config)
        self.reports = ReportCache()
        self.idle_timeout_s = IDLE_TIMEOUT_S
        self.max_form_bytes = MAX_FORM_BYTES
        host, _, port = where.rpartition(":")
        self.host = host.strip("[]")
        # a reader of the audit log: it claims no replica id, so it never stands in a server's way
        self._own_store = store is None
        self.store = store if store is not None else open_store(config.store_target)
        try:
            self._httpd = _HTTPServer((self.host, int(port)), self)
        except OSError as e:
            self._close_store()
            raise InternalError(f"cannot serve the dashboard on {where}: {e.strerror}") from e
        self.port = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="gate-dashboard", daemon=True)
        self._thread.start()
        log.info(
            "dashboard on %s (%s; %s)",
            self.url,
            "TLS" if self.tls else "plain text",
            "bearer tokens" if self.access.enabled else "no authentication: no tokens configured",
        )
        if not _is_loopback(self.host):
            # legitimate behind a proxy that terminates TLS and authenticates, so only a warning
            if not self.access.enabled:
                log.warning("no tokens are configured: anyone who reaches %s may read the dashboard", self.url)
            if self.tls is None:
                log.warning("the dashboard is plain HTTP: its pages, and any tokens, cross the network in clear text")

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
        self._close_store()

    def _close_store(self) -> None:
        if self._own_store:
            self.store.close()

    def __enter__(self) -> Dashboard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
