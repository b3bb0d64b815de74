"""Prometheus metrics of a gate server, on their own registry (several servers may share
a process, e.g. in tests) and their own HTTP port (``metrics_listen``):

* ``gate_evaluations_total{verdict}``: evaluations recorded, by PASS / FAIL / ERROR;
* ``gate_evaluation_duration_seconds``: a histogram of evaluation wall time;
* ``gate_samples_total``: held-out samples evaluated (its rate is samples per second);
* ``gate_evaluation_samples_per_second``: the throughput of the last evaluation;
* ``gate_evaluations_running`` and ``gate_evaluation_queue_depth``: admission control;
* ``gate_model_store_bytes``: bytes in the model store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from gate.errors import InternalError
from gate.verdict import Verdict

log = logging.getLogger(__name__)

_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf"))


class ServerMetrics:
    def __init__(
        self, *, running: Callable[[], float], waiting: Callable[[], float], store_bytes: Callable[[], float]
    ) -> None:
        self.registry = CollectorRegistry()
        self.evaluations = Counter(
            "gate_evaluations", "Evaluations recorded, by verdict", ["verdict"], registry=self.registry
        )
        for verdict in ("PASS", "FAIL", "ERROR"):
            self.evaluations.labels(verdict)  # every series exists from the start, at 0
        self.duration = Histogram(
            "gate_evaluation_duration_seconds", "Wall time of evaluations", buckets=_BUCKETS, registry=self.registry
        )
        self.samples = Counter("gate_samples", "Held-out samples evaluated", registry=self.registry)
        self.throughput = Gauge(
            "gate_evaluation_samples_per_second", "Samples per second of the last evaluation", registry=self.registry
        )
        Gauge("gate_evaluations_running", "Evaluations running now", registry=self.registry).set_function(running)
        Gauge("gate_evaluation_queue_depth", "Evaluations waiting for a slot", registry=self.registry).set_function(
            waiting
        )
        Gauge("gate_model_store_bytes", "Bytes in the model store", registry=self.registry).set_function(store_bytes)
        self._server: Any = None

    def observe(self, verdict: Verdict) -> None:
        self.evaluations.labels(verdict.decision.value).inc()
        if verdict.duration_s is not None:
            self.duration.observe(verdict.duration_s)
            samples = (verdict.metrics or {}).get("samples") or 0
            if samples:
                self.samples.inc(samples)
                if verdict.duration_s > 0:
                    self.throughput.set(samples / verdict.duration_s)

    def serve(self, listen: str) -> int:
        """Expose ``/metrics`` over HTTP on ``listen`` (HOST:PORT); returns the port."""
        host, _, port = listen.rpartition(":")
        try:
            self._server, _ = start_http_server(int(port), addr=host, registry=self.registry)
        except OSError as e:
            raise InternalError(f"cannot serve metrics on {listen}: {e.strerror}") from e
        bound = int(self._server.server_port)
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
