"""The proto works from another language: a Node.js client (@grpc/grpc-js with
@grpc/proto-loader reading proto/gate/v1/gate.proto) calls a real gate server."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable

import pytest

from tests.conftest import ROOT, Served
from tests.models import lookup_model

INTEROP = ROOT / "tests" / "interop"


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_node_client_lists_evaluates_and_reads_the_record(serve: Callable[..., Served]) -> None:
    assert (INTEROP / "node_modules" / "@grpc" / "grpc-js").is_dir(), "run `npm ci` in tests/interop (make test does)"
    s = serve()
    with s.client() as c:
        sha = c.upload_model(lookup_model(3)).sha256
    run = subprocess.run(
        ["node", str(INTEROP / "client.js"), s.address, sha, "pets", "default"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr + run.stdout
    out = json.loads(run.stdout)
    assert out["datasets"] == ["pets", "pets-huge", "pets-large"]
    assert "default" in out["policies"]
    assert out["decision"] == "PASS" and out["get_verdict_state"] == "done" and out["get_verdict_decision"] == "PASS"
    assert out["verdict_json"]["labels"] == {"pipeline_id": "node-interop", "extra": {"client": "grpc-js"}}
    assert out["verdict_json"]["metrics"]["confusion_matrix"] == [[50, 2, 3], [4, 45, 1], [2, 3, 40]]
    assert out["last_progress"] == {"done": "150", "total": "150"} and out["progress_events"] >= 1
    assert [r["id"] for r in out["rules"]] == [r["id"] for r in out["verdict_json"]["rules"]]
    with s.client() as c:
        assert c.get_verdict(out["evaluation_id"]).verdict.decision == 1  # PASS, as recorded
