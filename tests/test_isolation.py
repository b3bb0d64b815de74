"""Inference runs in worker processes: a worker that crashes, runs out of memory, hangs
or is abandoned by its client ends that evaluation as ERROR, and the server carries on."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator

import grpc
import pytest

from gate._proto.gate.v1 import gate_pb2 as pb
from gate._proto.gate.v1 import gate_pb2_grpc as pb_grpc
from gate.server.workers import Worker
from tests.conftest import Served
from tests.models import lookup_model, memory_hog_model, slow_lookup_model


def _busy_worker(s: Served) -> Worker:
    pool = s.server.pool
    idle = set(pool._idle.queue)
    busy = [w for w in pool._all if w not in idle]
    assert len(busy) == 1
    return busy[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not running any more
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ", 1)[1][0] != "Z"


def _still_serving(s: Served) -> None:
    with s.client() as c:
        assert c.health() == "SERVING"
        assert (
            c.evaluate(c.upload_model(lookup_model(3)).sha256, "pets", policy_name="default").document["verdict"]
            == "PASS"
        )


def start_slow(s: Served, dataset: str = "pets-huge") -> tuple[grpc.Channel, Iterator[pb.EvaluateEvent], str]:
    """An evaluation of the slow model, accepted and running in its worker: its channel,
    its call (the events still to come) and its id."""
    with s.client() as c:
        sha = c.upload_model(slow_lookup_model(3)).sha256
    channel = grpc.insecure_channel(s.address)
    call = pb_grpc.GateServiceStub(channel).Evaluate(
        pb.EvaluateRequest(
            model_sha256=sha, dataset=dataset, policy_name="default", batch_size=1, provider=pb.PROVIDER_CPU
        )
    )
    first = next(call)
    assert first.WhichOneof("event") == "accepted"
    assert next(call).WhichOneof("event") == "progress"  # running in its worker
    return channel, call, first.accepted.evaluation_id


def test_a_crashing_worker_is_an_error_and_the_server_goes_on(serve: Callable[..., Served]) -> None:
    s = serve()
    channel, call, _ = start_slow(s)
    worker = _busy_worker(s)
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGSEGV)  # what a crash in ONNX Runtime's native code looks like
    events = list(call)
    channel.close()
    verdict = events[-1].verdict
    assert verdict.decision == pb.ERROR
    assert verdict.error.type == "WorkerDiedError"
    assert verdict.error.message.startswith("the worker process was killed by SIGSEGV while evaluating")
    _still_serving(s)
    with s.client() as c:
        recorded = c.get_verdict(verdict.evaluation_id)
    assert recorded.state == "done" and recorded.verdict.decision == pb.ERROR


def test_a_hanging_model_is_stopped_at_the_time_limit(serve: Callable[..., Served]) -> None:
    s = serve(evaluation_timeout_s=1.0)
    with s.client() as c:
        sha = c.upload_model(slow_lookup_model(3)).sha256
        started = time.monotonic()
        evaluation = c.evaluate(sha, "pets-large", policy_name="default", batch_size=1, provider="cpu")
        elapsed = time.monotonic() - started
    assert evaluation.document["error"] == {
        "type": "EvaluationTimeoutError",
        "message": "evaluation exceeded the server's limit of 1 s",
    }
    assert elapsed < 10  # stopped near the limit, not after the 3,000 samples
    assert all(_alive(w.pid or 0) for w in s.server.pool._all)
    _still_serving(s)


def test_a_model_that_exhausts_memory_is_an_error(serve: Callable[..., Served]) -> None:
    s = serve(max_worker_memory_bytes=3 << 30)
    with s.client() as c:
        sha = c.upload_model(memory_hog_model(3)).sha256
        try:
            evaluation = c.evaluate(sha, "pets", policy_name="default", batch_size=1)
            document = evaluation.document
        except Exception as e:  # refused at load time is an ERROR too
            pytest.fail(f"the evaluation raised instead of answering ERROR: {e}")
    assert document["verdict"] == "ERROR"
    assert document["error"]["type"] in ("ModelError", "WorkerDiedError")
    _still_serving(s)


def test_a_cancelled_call_stops_its_work(serve: Callable[..., Served]) -> None:
    s = serve()
    channel, call, _ = start_slow(s)
    worker = _busy_worker(s)
    pid = worker.pid
    assert pid is not None and _alive(pid)
    call.cancel()  # type: ignore[attr-defined]
    channel.close()
    deadline = time.monotonic() + 20
    while _alive(pid):
        assert time.monotonic() < deadline, "the worker kept running after the client cancelled"
        time.sleep(0.05)
    with s.client() as c:
        deadline = time.monotonic() + 20
        while not (records := c.list_verdicts(decision="ERROR")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert records[0].verdict.error.type == "CancelledError"
    _still_serving(s)
