"""Replicas: real gate servers sharing one PostgreSQL audit log (a real server) and one
model store directory, called concurrently from several client threads.

What must hold: a model uploaded through one replica is evaluated through another; every
evaluation, whichever replica ran it, is recorded exactly once with the right verdict and
the id of the replica that ran it; concurrent uploads of the same model through both
replicas all succeed and never expose a partial file; a replica that starts leaves a
running sibling's evaluations alone, and closes those of a replica that is gone; and a
client spreads its calls over the replicas with round-robin load balancing.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from gate._proto.gate.v1 import gate_pb2 as pb
from gate._proto.gate.v1 import gate_pb2_grpc as pb_grpc
from gate.cli import main
from gate.client import GateClient, GateClientError
from gate.errors import RequestError
from gate.registry import STALE_UPLOAD_S, ModelStore
from gate.store import open_store
from tests.conftest import Served
from tests.models import linear_softmax_model, lookup_model, slow_lookup_model
from tests.pg import PostgresDatabase

Start = Callable[..., Served]


@pytest.fixture
def replicas(serve: Start, postgres_database: PostgresDatabase, tmp_path: Path) -> Callable[..., tuple[Served, ...]]:
    """Start replicas ``replica-<n>`` on one PostgreSQL audit log and one model store."""
    models = tmp_path / "shared-models"

    def start(*numbers: int, **settings: Any) -> tuple[Served, ...]:
        return tuple(
            serve(
                store=postgres_database.url,
                models_dir=str(models),
                replica_id=f"replica-{n}",
                **settings,
            )
            for n in numbers
        )

    return start


def test_upload_through_one_replica_evaluate_through_the_other(
    replicas: Callable[..., tuple[Served, ...]],
    postgres_database: PostgresDatabase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    one, two = replicas(1, 2)
    assert one.server.models.root == two.server.models.root == tmp_path / "shared-models"
    with one.client() as c1, two.client() as c2:
        sha = c1.upload_model(lookup_model(3)).sha256
        evaluation = c2.evaluate(sha, "pets", policy_name="default")
        assert evaluation.document["verdict"] == "PASS"
        # the audit log is one: the other replica answers for it
        record = c1.get_verdict(evaluation.evaluation_id)
        assert record.state == "done" and record.verdict.decision == pb.PASS
    with open_store(postgres_database.url) as store:
        stored = store.get(evaluation.evaluation_id)
    assert stored is not None and stored.replica_id == "replica-2" and stored.decision == "PASS"
    # `gate history --config` reads the configured store, here the shared PostgreSQL one
    capsys.readouterr()
    assert main(["history", "--config", str(one.root / "gate.yaml"), "--format", "json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["evaluation_id"], listed["verdict"]) == (evaluation.evaluation_id, "PASS")


def test_200_evaluations_over_two_replicas_are_each_recorded_once(
    replicas: Callable[..., tuple[Served, ...]], postgres_database: PostgresDatabase
) -> None:
    # eight client threads, one call in flight each: either replica alone could hold them
    # all (2 running + 8 queued), so no call may be refused
    servers = replicas(1, 2, max_concurrent_evaluations=2, max_queued_evaluations=8)
    failing = linear_softmax_model(
        np.zeros((1, 3), np.float32), np.array([1.0, 0.0, 0.0], np.float32), input_shape=["N", 1]
    )  # always answers "cat": dog and rabbit recall 0
    with servers[0].client() as c:
        good = c.upload_model(lookup_model(3)).sha256
        bad = c.upload_model(failing).sha256
    jobs = [(good, "PASS") if i % 3 else (bad, "FAIL") for i in range(200)]
    lock = threading.Lock()
    results: list[tuple[str, str, str, str]] = []  # evaluation id, expected, got, replica
    problems: list[str] = []
    running_at_once = {"now": 0, "most": 0}

    def client(worker: int, mine: list[tuple[str, str]]) -> None:
        clients = [GateClient(s.address, timeout=120) for s in servers]
        try:
            for n, (sha, expected) in enumerate(mine):
                which = (worker + n) % 2  # every thread alternates between the replicas
                with lock:
                    running_at_once["now"] += 1
                    running_at_once["most"] = max(running_at_once["most"], running_at_once["now"])
                try:
                    evaluation = clients[which].evaluate(sha, "pets", policy_name="default")
                except GateClientError as e:
                    with lock:
                        problems.append(e.message)
                    return
                finally:
                    with lock:
                        running_at_once["now"] -= 1
                with lock:
                    results.append(
                        (evaluation.evaluation_id, expected, evaluation.document["verdict"], f"replica-{which + 1}")
                    )
        finally:
            for c in clients:
                c.close()

    threads = [threading.Thread(target=client, args=(i, jobs[i::8])) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert problems == []
    assert len(results) == 200
    assert running_at_once["most"] > 1, "the evaluations never overlapped"
    assert [r for r in results if r[1] != r[2]] == [], "a wrong verdict"

    with open_store(postgres_database.url) as store:
        records = store.list(limit=10_000)
        count = store.count()
    assert count == len(records) == 200
    assert len({r.evaluation_id for r in records}) == 200, "a duplicated audit record"
    by_id = {r.evaluation_id: r for r in records}
    assert set(by_id) == {r[0] for r in results}, "a lost audit record"
    for evaluation_id, expected, _, replica in results:
        record = by_id[evaluation_id]
        assert (record.state, record.decision, record.replica_id) == ("done", expected, replica), evaluation_id
    per_replica = {name: sum(1 for r in records if r.replica_id == name) for name in ("replica-1", "replica-2")}
    assert per_replica == {"replica-1": 100, "replica-2": 100}
    # and each replica serves the whole history
    for s in servers:
        with s.client() as c:
            assert len(c.list_verdicts(limit=10_000)) == 200


def test_a_starting_replica_removes_only_stale_uploads(tmp_path: Path) -> None:
    """A temporary upload file in a shared model store may be a sibling's upload in
    progress: only one untouched for hours was left by a server that died."""
    models = tmp_path / "models"
    models.mkdir()
    stale, live = models / ".upload-dead", models / ".upload-live"
    stale.write_bytes(b"half a model")
    live.write_bytes(b"a model arriving")
    old = time.time() - STALE_UPLOAD_S - 60
    os.utime(stale, (old, old))
    ModelStore(models, max_bytes=1 << 20)
    assert sorted(p.name for p in models.iterdir()) == [".upload-live"]


def _chunks(data: bytes, sha256: str, first_sent: threading.Event, go: threading.Event) -> Iterator[pb.ModelChunk]:
    """An upload that stops after its first chunk until ``go`` is set."""
    size = 1 << 20
    yield pb.ModelChunk(total_size=len(data), filename="shared.onnx", data=data[:size])
    first_sent.set()
    assert go.wait(60)
    for start in range(size, len(data), size):
        yield pb.ModelChunk(data=data[start : start + size])
    yield pb.ModelChunk(sha256=sha256)


def _upload_together(servers: tuple[Served, ...], models: Path, data: bytes, per_replica: int) -> None:
    """Upload ``data`` ``per_replica`` times through each replica, all at once."""
    sha = hashlib.sha256(data).hexdigest()
    go = threading.Event()
    refs: list[pb.ModelRef] = []
    errors: list[BaseException] = []
    starts: list[threading.Event] = []

    def upload(address: str, first_sent: threading.Event) -> None:
        try:
            with grpc.insecure_channel(address) as channel:
                stub = pb_grpc.GateServiceStub(channel)
                refs.append(stub.UploadModel(_chunks(data, sha, first_sent, go), timeout=120))
        except BaseException as e:
            errors.append(e)

    threads = []
    for s in servers:
        for _ in range(per_replica):
            starts.append(threading.Event())
            threads.append(threading.Thread(target=upload, args=(s.address, starts[-1])))
    for t in threads:
        t.start()
    try:
        # every upload is under way, each in a temporary file of its own, before any ends
        assert all(e.wait(60) for e in starts)
        deadline = time.monotonic() + 60
        while len(list(models.glob(".upload-*"))) < len(threads):
            assert time.monotonic() < deadline, "the uploads did not all run at once"
            time.sleep(0.01)
        assert not (models / f"{sha}.onnx").exists()
    finally:
        go.set()
        for t in threads:
            t.join(timeout=120)
    assert errors == []
    assert sorted(r.sha256 for r in refs) == [sha] * len(threads)
    assert all(r.size == len(data) for r in refs)
    assert (models / f"{sha}.onnx").read_bytes() == data
    assert list(models.glob(".upload-*")) == []  # nothing left behind


def test_concurrent_uploads_of_the_same_model_through_both_replicas(
    replicas: Callable[..., tuple[Served, ...]], tmp_path: Path
) -> None:
    servers = replicas(1, 2)
    models = tmp_path / "shared-models"
    seen_bad: list[str] = []
    watching = threading.Event()
    watching.set()

    def watch() -> None:
        """Every model file that is ever visible must be complete: its bytes hash to its name."""
        while watching.is_set():
            for path in models.glob("*.onnx"):
                try:
                    data = path.read_bytes()
                except FileNotFoundError:
                    continue
                if hashlib.sha256(data).hexdigest() != path.stem:
                    seen_bad.append(f"{path.name}: {len(data)} bytes")

    watcher = threading.Thread(target=watch)
    watcher.start()
    shas = []
    try:
        for width in (1024, 1100):  # two rounds, two different models of over 4 MiB
            data = slow_lookup_model(3, width=width, depth=1)
            _upload_together(servers, models, data, per_replica=2)
            shas.append(hashlib.sha256(data).hexdigest())
    finally:
        watching.clear()
        watcher.join()
    assert seen_bad == [], "a partial model file was visible"
    assert sorted(p.stem for p in models.glob("*.onnx")) == sorted(shas)
    for s in servers:  # and each replica evaluates what they stored
        with s.client() as c:
            for sha in shas:
                assert c.evaluate(sha, "pets", policy_name="default").document["verdict"] == "PASS"


def test_a_starting_replica_leaves_a_siblings_running_evaluation_alone(
    replicas: Callable[..., tuple[Served, ...]], postgres_database: PostgresDatabase
) -> None:
    (one,) = replicas(1)
    with one.client() as c:
        slow = c.upload_model(slow_lookup_model(3)).sha256
    channel = grpc.insecure_channel(one.address)
    try:
        call = pb_grpc.GateServiceStub(channel).Evaluate(
            pb.EvaluateRequest(
                model_sha256=slow, dataset="pets-huge", policy_name="default", batch_size=1, provider=pb.PROVIDER_CPU
            )
        )
        accepted = next(call)
        assert accepted.WhichOneof("event") == "accepted"
        assert next(call).WhichOneof("event") == "progress"  # running
        evaluation_id = accepted.accepted.evaluation_id

        replicas(2)  # its start-up closes unfinished evaluations, but not this one
        with open_store(postgres_database.url) as store:
            record = store.get(evaluation_id)
            assert record is not None and (record.state, record.replica_id) == ("running", "replica-1")
            call.cancel()
            deadline = time.monotonic() + 60
            while (record := store.get(evaluation_id)) is not None and record.state == "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        # the replica that ran it recorded its end itself
        assert record is not None and record.state == "done" and record.verdict is not None
        assert record.verdict["error"]["type"] == "CancelledError"
    finally:
        channel.close()

    # replica-1 goes away with an evaluation it never finished; a replica started after
    # (a replacement pod, under another name) closes it
    one.server.store.record_accepted(
        evaluation_id="f" * 32,
        model_sha256=slow,
        model_name=None,
        dataset="pets",
        policy="default",
        labels={},
        requested_provider="cpu",
    )
    with open_store(postgres_database.url) as store:
        assert store.mark_interrupted() == []  # replica-1 still holds its claim
    one.server.stop(grace=None)
    (three,) = replicas(3)
    with three.client() as c:
        record_pb = c.get_verdict("f" * 32)
    assert record_pb.state == "interrupted" and record_pb.verdict.decision == pb.ERROR
    with open_store(postgres_database.url) as store:
        assert {r.state for r in store.list(limit=100)} == {"done", "interrupted"}


def test_a_client_spreads_its_calls_over_the_replicas(
    replicas: Callable[..., tuple[Served, ...]], postgres_database: PostgresDatabase
) -> None:
    one, two = replicas(1, 2)
    both = f"ipv4:127.0.0.1:{one.server.port},127.0.0.1:{two.server.port}"
    with one.client() as c:
        sha = c.upload_model(lookup_model(3)).sha256

    def replicas_used(client: GateClient, calls: int) -> list[str | None]:
        ids = [client.evaluate(sha, "pets", policy_name="default").evaluation_id for _ in range(calls)]
        with open_store(postgres_database.url) as store:
            return [r.replica_id for r in (store.get(i) for i in ids) if r is not None]

    with GateClient(both, timeout=60, load_balancing="round_robin") as spread:
        used = replicas_used(spread, 12)
    assert len(used) == 12 and set(used) == {"replica-1", "replica-2"}
    with GateClient(both, timeout=60, load_balancing="pick_first") as first:
        assert len(set(replicas_used(first, 6))) == 1
    # a DNS name, resolved by gRPC itself, as a headless Service is on Kubernetes
    with GateClient(f"dns:///localhost:{one.server.port}", timeout=60, load_balancing="round_robin") as by_name:
        assert by_name.health() == "SERVING"
    with pytest.raises(RequestError, match="load_balancing='random' is not valid"):
        GateClient(both, load_balancing="random")
