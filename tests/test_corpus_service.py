"""Attacks on the service, each through a real server on a free port (see the section
"Attacks: the service" of docs/bad-input-corpus.md, which lists every case here with its
outcome: `doc_expectations`).

The audit log cases make the real SQLite database refuse writes while an evaluation
runs, on the store's own connection: ``PRAGMA max_page_count`` (the file cannot grow: a
disk that is full) and ``PRAGMA query_only`` (no write at all). The stall and flood cases
are callers that would stall, flood or mislead the server: hanging and trickling uploads,
label floods, oversized history, long echoed names, a stored hash sent with other bytes,
and a server process whose files cannot grow (``RLIMIT_FSIZE``). No mock stands in for the
database, the server or the worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gate._proto.gate.v1 import gate_pb2 as pb
from gate._proto.gate.v1 import gate_pb2_grpc as pb_grpc
from gate.cli import main
from gate.client import GateClient, GateClientError
from gate.server.interceptors import MAX_STATUS_MESSAGE_BYTES
from gate.server.limits import MAX_LABEL_VALUE_CHARS, MAX_LABELS, MAX_LABELS_BYTES
from gate.server.pages import MAX_PAGE_BYTES
from gate.tokens import token_sha256
from gate.verdict import Decision, Verdict
from tests.conftest import ROOT, Served, write_pets
from tests.models import lookup_model
from tests.test_isolation import start_slow


def doc_expectations() -> dict[str, tuple[str, ...]]:
    """Each case of this module: the fragments its row in the doc must hold."""
    return {**_audit_log_expectations(), **_stall_and_flood_expectations()}


# -- the audit log refuses the verdict ---------------------------------------------------------


def _audit_log_expectations() -> dict[str, tuple[str, ...]]:
    return {
        "service-audit-log-full": ("2 ERROR", "InternalError", "could not be recorded in the audit log"),
        "service-audit-log-refuses-writes": ("`INTERNAL`", "InternalError", "once the audit log takes writes again"),
    }


def _audit_pragma(s: Served, pragma: str) -> Any:
    """Run ``pragma`` on the audit store's own SQLite connection (the one that records verdicts)."""
    store: Any = s.server.store
    with store._lock:
        row = store._conn.execute(pragma).fetchone()
    return None if row is None else tuple(row)


def _recorded(s: Served, evaluation_id: str) -> pb.EvaluationRecord:
    with s.client() as c:
        return c.get_verdict(evaluation_id)


def test_service_audit_log_full(serve: Callable[..., Served]) -> None:
    """The disk fills while the evaluation runs: its PASS cannot be recorded, so the client
    gets (signed) the ERROR that is recorded in its place, naming the cause."""
    s = serve()
    channel, call, evaluation_id = start_slow(s, "pets-large")
    pages = _audit_pragma(s, "PRAGMA page_count")[0]
    assert _audit_pragma(s, f"PRAGMA max_page_count = {pages}") == (pages,)
    events = list(call)
    channel.close()
    verdict = events[-1].verdict
    assert verdict.decision == pb.ERROR and verdict.evaluation_id == evaluation_id
    assert verdict.error.type == "InternalError"
    assert verdict.error.message.startswith("the PASS verdict could not be recorded in the audit log: audit log ")
    assert verdict.error.message.endswith("database or disk is full")
    assert not verdict.rules and not verdict.HasField("metrics")  # nobody can stand behind them
    statement = json.loads(verdict.attestation_json)["statement"]
    assert (statement["verdict"], statement["evaluation_id"]) == ("ERROR", evaluation_id)
    record = _recorded(s, evaluation_id)
    assert record.state == "done"
    assert json.loads(record.verdict.verdict_json) == json.loads(verdict.verdict_json)  # the client's, exactly
    with s.client() as c:
        assert c.health() == "SERVING"


def test_service_audit_log_refuses_writes(serve: Callable[..., Served]) -> None:
    """The log takes no write at all: the client gets an error status (no verdict the log
    lacks), and the record is closed with the same cause once the log takes writes again."""
    s = serve()
    channel, call, evaluation_id = start_slow(s, "pets-large")
    _audit_pragma(s, "PRAGMA query_only = ON")
    try:
        with pytest.raises(grpc.RpcError) as refused:
            list(call)
        assert _recorded(s, evaluation_id).state == "running"
    finally:
        _audit_pragma(s, "PRAGMA query_only = OFF")
        channel.close()
    assert refused.value.code() == grpc.StatusCode.INTERNAL
    details = refused.value.details() or ""
    prefix = f"evaluation {evaluation_id}: the PASS verdict could not be recorded in the audit log: audit log "
    assert details.startswith(prefix) and "attempt to write a readonly database" in details
    later = "; it will be recorded as ERROR once the audit log takes writes again"
    assert details.endswith(later)
    deadline = time.monotonic() + 30
    while (record := _recorded(s, evaluation_id)).state == "running":
        assert time.monotonic() < deadline, "the record stayed open after the audit log took writes again"
        time.sleep(0.1)
    assert record.state == "done" and record.verdict.decision == pb.ERROR
    error = json.loads(record.verdict.verdict_json)["error"]
    assert error["type"] == "InternalError"
    assert details == f"evaluation {evaluation_id}: {error['message']}{later}"  # the cause the client was given


# -- stalls, floods and probes ------------------------------------------------------------------


def _stall_and_flood_expectations() -> dict[str, tuple[str, ...]]:
    return {
        "service-stalled-uploads": ("`DEADLINE_EXCEEDED`", "`RESOURCE_EXHAUSTED`", "the upload stalled"),
        "service-trickled-upload": ("`DEADLINE_EXCEEDED`", "the upload is too slow"),
        "service-label-flood": ("`INVALID_ARGUMENT`", "labels.extra has 12000 entries"),
        "service-oversized-history": ("`OK`", "next_page_token"),
        "service-long-name-echo": ("`NOT_FOUND`", "cut to fit a status message"),
        "service-stored-hash-wrong-bytes": ("`INVALID_ARGUMENT`", "sha256 mismatch", "`UNAUTHENTICATED`"),
        "service-disk-full-upload": ("`RESOURCE_EXHAUSTED`", "no space left on the server"),
    }


def _code(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    return error.code(), error.details() or ""  # type: ignore[attr-defined]


def _temp_uploads(served_root: Path) -> list[Path]:
    return list((served_root / "data" / "models").glob(".upload-*"))


def _health(channel: grpc.Channel, timeout: float) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    return int(reply.status)


# ----------------------------------------------------------------------------- stalls


def _stalling(release: threading.Event) -> Iterator[pb.ModelChunk]:
    yield pb.ModelChunk(total_size=1000, data=b"x")
    release.wait()


def test_stalled_uploads_leave_health_and_reads_responsive(serve: Callable[..., Served]) -> None:
    served = serve(
        max_concurrent_evaluations=1, max_queued_evaluations=1, max_concurrent_uploads=2, upload_idle_timeout_s=5
    )
    stalled = 4 * served.server.rpc_threads
    release = threading.Event()
    with (
        served.client() as client,
        grpc.insecure_channel(served.address) as attacker,
        grpc.insecure_channel(served.address) as probe,
    ):
        sha = client.upload_model(lookup_model(3), filename="good.onnx").sha256
        # the probe connects before the burst: the 1 s deadlines below time the calls, not a handshake
        assert _health(probe, timeout=30) == health_pb2.HealthCheckResponse.SERVING
        upload = pb_grpc.GateServiceStub(attacker).UploadModel  # type: ignore[no-untyped-call]
        calls = [upload.future(_stalling(release), timeout=120) for _ in range(stalled)]
        try:
            # the deadline is the assertion: health answers within 1 s, amid the burst and after it
            assert _health(probe, timeout=1.0) == health_pb2.HealthCheckResponse.SERVING
            stub = pb_grpc.GateServiceStub(probe)  # type: ignore[no-untyped-call]
            assert [d.name for d in stub.ListDatasets(pb.ListDatasetsRequest(), timeout=10).datasets]
            assert stub.Reload(pb.ReloadRequest(), timeout=60).datasets
            assert client.evaluate(sha, "pets", policy_name="default").verdict.decision == pb.PASS
            assert _health(probe, timeout=1.0) == health_pb2.HealthCheckResponse.SERVING
            outcomes = [_code(call.result) for call in calls]
        finally:
            release.set()
    codes = [code for code, _ in outcomes]
    assert set(codes) <= {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}
    # most are refused at once; only those that found a slot free waited for the idle limit
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= stalled // 2
    for code, details in outcomes:
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            assert "the upload stalled: nothing arrived for 5 s (upload_idle_timeout_s)" in details
        else:
            assert "uploads already (max_concurrent_uploads)" in details
    assert _temp_uploads(served.root) == []


def test_a_trickled_upload_ends_below_the_minimum_rate(serve: Callable[..., Served]) -> None:
    served = serve(upload_idle_timeout_s=1, upload_min_bytes_per_s=10_000)

    def trickle() -> Iterator[pb.ModelChunk]:
        yield pb.ModelChunk(total_size=1000, data=b"x")
        for _ in range(999):
            time.sleep(0.2)  # always inside the idle limit, far below the rate
            yield pb.ModelChunk(data=b"x")

    with grpc.insecure_channel(served.address) as channel:
        stub = pb_grpc.GateServiceStub(channel)  # type: ignore[no-untyped-call]
        code, details = _code(lambda: stub.UploadModel(trickle(), timeout=60))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "the upload is too slow" in details and "(upload_min_bytes_per_s); nothing was stored" in details
    assert _temp_uploads(served.root) == []


# ----------------------------------------------------------------------------- floods


def _database_bytes(path: Path) -> int:
    """The audit database's size as SQLite counts it (committed pages, the WAL's included)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    return int(pages * size)


def test_a_label_flood_is_refused_before_anything_is_stored(serve: Callable[..., Served]) -> None:
    served = serve()
    database = served.root / "data" / "audit.sqlite3"
    flood = pb.Labels(extra={f"k{i:05d}": "v" * 594 for i in range(12_000)})  # 12,000 labels of 600 bytes
    options = [("grpc.max_send_message_length", 16 << 20)]
    with served.client() as client, grpc.insecure_channel(served.address, options=options) as channel:
        sha = client.upload_model(lookup_model(3)).sha256
        stub = pb_grpc.GateServiceStub(channel)  # type: ignore[no-untyped-call]
        before = _database_bytes(database)
        for _ in range(10):
            request = pb.EvaluateRequest(model_sha256=sha, dataset="pets", policy_name="default", labels=flood)
            code, details = _code(lambda: list(stub.Evaluate(request, timeout=60)))  # noqa: B023
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert details == f"labels.extra has 12000 entries; the limit is {MAX_LABELS}"
        assert _database_bytes(database) - before <= 10 * 1024
        # a refusal for another reason, with the largest labels allowed, is recorded: in a few KiB
        widest = pb.Labels(extra={f"k{i}": "v" * MAX_LABEL_VALUE_CHARS for i in range(7)})
        assert sum(len(k) + len(v) for k, v in widest.extra.items()) <= MAX_LABELS_BYTES
        before = _database_bytes(database)
        refused = pb.EvaluateRequest(model_sha256=sha, dataset="no-such-set", policy_name="default", labels=widest)
        assert _code(lambda: list(stub.Evaluate(refused, timeout=60)))[0] == grpc.StatusCode.NOT_FOUND
        assert _database_bytes(database) - before <= 4 * MAX_LABELS_BYTES
        assert [r.verdict.decision for r in client.list_verdicts(limit=3)] == [pb.ERROR]


def _record_oversized(served: Served, prefix: str, count: int, label_bytes: int) -> list[str]:
    """Evaluations recorded with labels far over today's limits, as a server without
    limits would have recorded them; newest first."""
    store = served.server.store
    ids = []
    for i in range(count):
        evaluation_id = f"{prefix}{i:04d}"
        labels = {"pipeline_id": f"flood-{i}", "extra": {"blob": "b" * label_bytes}}
        store.record_accepted(
            evaluation_id=evaluation_id,
            model_sha256="0" * 64,
            model_name=None,
            dataset="pets",
            policy="default",
            labels=labels,
            requested_provider="cpu",
        )
        verdict = Verdict(
            decision=Decision.ERROR,
            evaluation_id=evaluation_id,
            labels=labels,
            error={"type": "NotFoundError", "message": "no model with sha256 000…0 on this server"},
        )
        store.record_result(evaluation_id, verdict.to_dict())
        ids.append(evaluation_id)
    return ids[::-1]


def test_oversized_history_comes_in_pages_within_the_limit(
    serve: Callable[..., Served], capsys: pytest.CaptureFixture[str]
) -> None:
    served = serve()
    ids = _record_oversized(served, "old", 6, 1 << 20)
    biggest = _record_oversized(served, "huge", 1, 5 << 20)  # larger than a page on its own
    newest_first = biggest + ids
    # a client with gRPC's default limits (4 MiB a reply) follows the pages
    with grpc.insecure_channel(served.address) as channel:
        stub = pb_grpc.GateServiceStub(channel)  # type: ignore[no-untyped-call]
        seen: list[str] = []
        token = ""
        while True:
            page = stub.ListVerdicts(pb.ListVerdictsRequest(limit=3, page_token=token), timeout=60)
            assert page.ByteSize() <= MAX_PAGE_BYTES
            assert all(r.summary and not r.verdict.verdict_json for r in page.records)
            seen += [r.evaluation_id for r in page.records]
            token = page.next_page_token
            if not token:
                break
        assert seen == newest_first
        first = stub.ListVerdicts(pb.ListVerdictsRequest(limit=1), timeout=60).records[0]
        assert first.verdict.decision == pb.ERROR and not first.labels.extra  # shrunk to fit
        code, details = _code(lambda: stub.ListVerdicts(pb.ListVerdictsRequest(page_token="not a token"), timeout=60))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "page_token is not valid" in details
    with served.client() as client:
        full = client.list_verdicts(limit=50)  # whole verdicts: GetVerdict for those too large for a page
    assert [r.evaluation_id for r in full] == newest_first
    assert all(json.loads(r.verdict.verdict_json)["verdict"] == "ERROR" for r in full)
    assert main(["history", "--server", served.address, "--format", "json", "--limit", "50"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["evaluation_id"] for r in listed] == newest_first
    assert {r["verdict"] for r in listed} == {"ERROR"}


# ----------------------------------------------------------------------------- echoes


def test_a_long_name_is_cut_in_the_status_not_turned_into_another_status(serve: Callable[..., Served]) -> None:
    served = serve()
    with served.client() as client:
        sha = client.upload_model(lookup_model(3)).sha256
    with grpc.insecure_channel(served.address) as channel:
        stub = pb_grpc.GateServiceStub(channel)  # type: ignore[no-untyped-call]
        code, details = _code(lambda: stub.GetVerdict(pb.GetVerdictRequest(evaluation_id="é" * 50_000), timeout=60))
        assert code == grpc.StatusCode.NOT_FOUND
        assert details.startswith("no evaluation with id 'éé") and "cut to fit a status message" in details
        assert len(details.encode()) <= MAX_STATUS_MESSAGE_BYTES
        request = pb.EvaluateRequest(model_sha256=sha, dataset="ü" * 1000, policy_name="default")
        code, details = _code(lambda: list(stub.Evaluate(request, timeout=60)))
        assert code == grpc.StatusCode.NOT_FOUND and details.startswith("unknown dataset 'üü")
        assert "cut to fit a status message" in details
        assert _health(channel, timeout=10) == health_pb2.HealthCheckResponse.SERVING


# ----------------------------------------------------------------------------- probes

TOKEN = "corpus-service-token"


def _probe(stub: pb_grpc.GateServiceStub, sha: str, **call: object) -> tuple[grpc.StatusCode, str]:
    chunk = pb.ModelChunk(sha256=sha, total_size=10, data=b"0123456789")
    return _code(lambda: stub.UploadModel(iter([chunk]), timeout=60, **call))


def test_an_upload_naming_a_stored_hash_must_send_its_bytes(serve: Callable[..., Served]) -> None:
    served = serve(tokens=[{"name": "ci", "sha256": token_sha256(TOKEN), "roles": ["submit"]}])
    model = lookup_model(3)
    stored, unknown = hashlib.sha256(model).hexdigest(), "e" * 64
    with GateClient(served.address, timeout=60, token=TOKEN) as client:
        assert not client.upload_model(model).already_present
        assert client.upload_model(model).already_present  # the real bytes: idempotent
    bearer = (("authorization", f"Bearer {TOKEN}"),)
    with grpc.insecure_channel(served.address) as channel:
        stub = pb_grpc.GateServiceStub(channel)  # type: ignore[no-untyped-call]
        answers = {sha: _probe(stub, sha, metadata=bearer) for sha in (stored, unknown)}
        for sha, (code, details) in answers.items():
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert details == (
                f"sha256 mismatch: the upload hashes to {hashlib.sha256(b'0123456789').hexdigest()},"
                f" not the declared {sha}"
            )
        # without the right to use the store, a probe learns nothing either way
        anonymous = {_probe(stub, sha) for sha in (stored, unknown)}
        assert {code for code, _ in anonymous} == {grpc.StatusCode.UNAUTHENTICATED} and len(anonymous) == 1
    assert _temp_uploads(served.root) == []


# ----------------------------------------------------------------------------- full disks


def _serve_with_file_size_limit(root: Path, limit: int) -> tuple[subprocess.Popen[str], str, threading.Thread]:
    """``gate serve`` in a process whose files may not grow past ``limit`` bytes: its
    writes beyond fail with EFBIG, as on a full disk."""
    write_pets(root)
    config = root / "gate.yaml"
    settings = {
        "listen": "127.0.0.1:0",
        "data_dir": "data",
        "datasets": ["datasets"],
        "policies": [str(ROOT / "policies")],
    }
    config.write_text(yaml.safe_dump(settings))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gate", "serve", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"gate listening on (\S+)", line)
        if found:
            drain = threading.Thread(target=proc.stderr.read, daemon=True)  # keep the pipe drained
            drain.start()
            return proc, found.group(1), drain
    raise AssertionError("the server exited during start-up")


def test_a_full_disk_during_an_upload_is_resource_exhausted(tmp_path: Path) -> None:
    proc, address, drain = _serve_with_file_size_limit(tmp_path, 2 << 20)
    try:
        with GateClient(address, timeout=60) as client:
            deadline = time.monotonic() + 60
            while client.health() != "SERVING":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            with pytest.raises(GateClientError) as caught:
                client.upload_model(os.urandom(3 << 20), filename="big.onnx")
            assert caught.value.code == "RESOURCE_EXHAUSTED"
            assert caught.value.details == "no space left on the server to store the model; try again later"
            assert _temp_uploads(tmp_path) == []
            assert client.health() == "SERVING"
            assert client.upload_model(lookup_model(3)).size > 0  # what fits is still stored
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        drain.join(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()
