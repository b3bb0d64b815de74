"""The audit log under a server killed with SIGKILL mid-evaluation, and under load.

Kill test: the database passes `PRAGMA integrity_check` afterwards, every completed
evaluation is there with its verdict, the interrupted ones are recorded as ERROR at the
next start (never PASS), and no worker process outlives the server.

Load test: 200 evaluations from 16 concurrent clients mixing passing and failing models
against a server admitting 2 running + 8 queued: no lost or duplicated record, no wrong
verdict, no error but RESOURCE_EXHAUSTED beyond the limit (clients retry). It prints the
throughput and p50 / p99 latency (see docs/robustness.md for a measured run).
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np

from gate._proto.gate.v1 import gate_pb2 as pb
from gate._proto.gate.v1 import gate_pb2_grpc as pb_grpc
from gate.client import GateClient, GateClientError
from tests.conftest import ROOT, Served, write_pets
from tests.models import linear_softmax_model, lookup_model, slow_lookup_model


def _start(config: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gate", "serve", "--config", str(config)], stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        assert line, "the server exited during start-up"
        found = re.search(r"gate listening on (\S+)", line)
        if found:
            break
    drain = threading.Thread(target=proc.stderr.read, daemon=True)  # keep the pipe drained
    drain.start()
    proc.drain = drain  # type: ignore[attr-defined]
    address = found.group(1)
    with GateClient(address, timeout=60) as c:
        deadline = time.monotonic() + 60
        while c.health() != "SERVING":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    return proc, address


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    proc.send_signal(sig)
    proc.wait(timeout=30)
    proc.drain.join(timeout=30)  # type: ignore[attr-defined]
    assert proc.stderr is not None
    proc.stderr.close()


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False)
    return {int(p) for p in out.stdout.split()}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_sigkill_mid_evaluation_loses_nothing_and_passes_nothing(tmp_path: Path) -> None:
    write_pets(tmp_path)
    # 30,000 samples of the slow model: tens of seconds, far longer than the test needs to
    # start the four evaluations and kill the server
    write_pets(tmp_path, repeat=200, name="pets-huge")
    config = tmp_path / "gate.yaml"
    config.write_text(
        f"listen: 127.0.0.1:0\ndata_dir: data\ndatasets: [datasets]\npolicies: [{ROOT / 'policies'}]\n"
        "max_concurrent_evaluations: 2\nmax_queued_evaluations: 4\n"
    )
    proc, address = _start(config)
    completed = []
    with GateClient(address, timeout=120) as c:
        quick = c.upload_model(lookup_model(3)).sha256
        slow = c.upload_model(slow_lookup_model(3)).sha256
        for _ in range(3):
            completed.append(c.evaluate(quick, "pets", policy_name="default"))
    assert all(e.document["verdict"] == "PASS" for e in completed)

    channel = grpc.insecure_channel(address)
    stub = pb_grpc.GateServiceStub(channel)
    request = pb.EvaluateRequest(
        model_sha256=slow, dataset="pets-huge", policy_name="default", batch_size=1, provider=pb.PROVIDER_CPU
    )
    calls = []
    for _ in range(2):  # two running, one after the other so that they are the ones admitted
        call = stub.Evaluate(request)
        assert next(call).WhichOneof("event") == "accepted"
        assert next(call).WhichOneof("event") == "progress"
        calls.append(call)
    calls += [stub.Evaluate(request) for _ in range(2)]  # two queued behind them
    db = tmp_path / "data" / "audit.sqlite3"
    deadline = time.monotonic() + 30
    while True:  # every evaluation is recorded as accepted before it waits for a slot
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as peek:
            accepted = peek.execute("SELECT count(*) FROM evaluations").fetchone()[0]
        if accepted == 3 + 4:
            break
        assert time.monotonic() < deadline, f"{accepted} evaluations recorded"
        time.sleep(0.02)
    workers = _children(proc.pid)
    assert len(workers) >= 2
    _stop(proc, signal.SIGKILL)
    channel.close()
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers):  # the workers die with their server
        assert time.monotonic() < deadline, "worker processes outlived the killed server"
        time.sleep(0.05)

    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    proc, address = _start(config)  # the restart marks the unfinished ones
    try:
        with GateClient(address, timeout=60) as c:
            records = c.list_verdicts(limit=100)
    finally:
        _stop(proc)
    by_id = {r.evaluation_id: r for r in records}
    for e in completed:
        kept = by_id[e.evaluation_id]
        assert kept.state == "done" and json.loads(kept.verdict.verdict_json)["metrics"] == e.document["metrics"]
    others = [r for r in records if r.evaluation_id not in {e.evaluation_id for e in completed}]
    assert len(others) == 4  # the two running and the two queued were all recorded as accepted
    states = [(r.state, pb.Decision.Name(r.verdict.decision), r.verdict.error.type) for r in others]
    assert all(r.state == "interrupted" and r.verdict.decision == pb.ERROR for r in others), states
    assert not any(r.verdict.decision == pb.PASS for r in others)


def test_load_200_evaluations_16_clients(serve: Callable[..., Served]) -> None:
    s = serve(max_concurrent_evaluations=2, max_queued_evaluations=8)
    failing = linear_softmax_model(
        np.zeros((1, 3), np.float32), np.array([1.0, 0.0, 0.0], np.float32), input_shape=["N", 1]
    )  # always answers "cat": dog and rabbit recall 0
    with s.client() as c:
        good = [c.upload_model(lookup_model(3, probabilities=p)).sha256 for p in (False, True)]
        bad = c.upload_model(failing).sha256
    jobs = [(good[i % 2], "PASS") if i % 3 else (bad, "FAIL") for i in range(200)]
    lock = threading.Lock()
    results: list[tuple[str, str, str, float]] = []
    rejections = 0
    unexpected: list[str] = []

    def client(mine: list[tuple[str, str]]) -> None:
        nonlocal rejections
        with GateClient(s.address, timeout=120) as c:
            for sha, expected in mine:
                while True:
                    started = time.perf_counter()
                    try:
                        evaluation = c.evaluate(sha, "pets", policy_name="default")
                    except GateClientError as e:
                        with lock:
                            if e.code == "RESOURCE_EXHAUSTED":
                                rejections += 1
                                continue_after = True
                            else:
                                unexpected.append(e.message)
                                continue_after = False
                        if continue_after:
                            time.sleep(0.02)
                            continue
                        return
                    with lock:
                        results.append(
                            (
                                evaluation.evaluation_id,
                                expected,
                                evaluation.document["verdict"],
                                time.perf_counter() - started,
                            )
                        )
                    break

    threads = [threading.Thread(target=client, args=(jobs[i::16],)) for i in range(16)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    elapsed = time.perf_counter() - began

    assert unexpected == []
    assert len(results) == 200
    assert all(got == expected for _, expected, got, _ in results), "a wrong verdict"
    with s.client() as c:
        records = c.list_verdicts(limit=10_000)
    ids = [r.evaluation_id for r in records]
    assert len(ids) == len(set(ids)), "a duplicated audit record"
    done = {r.evaluation_id: r for r in records if r.verdict.decision in (pb.PASS, pb.FAIL)}
    assert set(done) == {e for e, _, _, _ in results}, "a lost audit record"
    refused = [r for r in records if r.verdict.decision == pb.ERROR]
    assert len(refused) == rejections
    assert all(json.loads(r.verdict.verdict_json)["error"]["type"] == "OverloadedError" for r in refused)
    latencies = sorted(lat for _, _, _, lat in results)
    print(
        f"\n200 evaluations, 16 clients: {200 / elapsed:.1f} evaluations/s, p50 {latencies[99] * 1000:.0f} ms,"
        f" p99 {latencies[197] * 1000:.0f} ms, {rejections} RESOURCE_EXHAUSTED retried"
    )
