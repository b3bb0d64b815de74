"""The command line's package: commands that never run a model do not load ONNX Runtime
(nor numpy, where they need none), each run in a fresh interpreter on real inputs (a real
server's attestation, signing key and audit database, a real token, a real policy); and
the names the package spells out to stay light equal the ones they stand in for."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gate.attest import load_signing_key, public_key_pem
from gate.cli import main
from gate.cli.auth import token_sha256
from gate.cli.verdict_output import REPORT_FORMATS
from gate.report import RENDERERS
from gate.server.auth import token_sha256 as server_token_sha256
from tests.conftest import PETS, ROOT, Served
from tests.models import lookup_model, predictions_for

HEAVY = ("onnxruntime", "numpy")
# runs `gate ARGV...` the way the console script does, then reports the heavy modules it loaded
PROBE = f"""
import json, sys
from gate.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:  # --help
    code = e.code
print(json.dumps({{"code": code, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def _probe(*argv: str | Path, stdin: str = "") -> tuple[int, list[str], str]:
    """Exit code, heavy modules loaded and stdout of one command in a fresh interpreter."""
    run = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, argv)],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=120,
    )
    *shown, last = run.stdout.splitlines()
    result = json.loads(last)
    return result["code"], result["loaded"], "\n".join(shown)


def _imported_by(module: str) -> list[str]:
    code = f"import json, sys, {module}; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_help_and_token_load_neither_onnxruntime_nor_numpy() -> None:
    assert _probe("--help")[:2] == (0, [])
    code, loaded, shown = _probe("token", "new")
    assert (code, loaded) == (0, [])
    token = shown.splitlines()[0].removeprefix("token: ")
    assert shown.splitlines()[1] == f"sha256: {server_token_sha256(token)}"
    assert _probe("token", "hash", stdin=f"{token}\n") == (0, [], server_token_sha256(token))


def test_policy_validate_loads_no_onnxruntime(tmp_path: Path) -> None:
    policy = ROOT / "policies" / "default.yaml"
    code, loaded, shown = _probe("policy", "validate", policy)
    assert code == 0 and "onnxruntime" not in loaded
    assert shown.startswith(f"policy 'default' ({policy}) is valid: ")
    x, y = predictions_for([[5, 1, 0], [0, 5, 1], [1, 0, 5]])
    data = tmp_path / "pets.npz"
    np.savez(data, x=x, y=y, classes=np.array(PETS))
    code, loaded, shown = _probe("policy", "validate", policy, "--dataset", data)
    assert code == 0 and "onnxruntime" not in loaded
    assert "is valid against dataset 'pets' (3 classes)" in shown


@pytest.fixture
def gated(serve: Callable[..., Served], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """A real server that has gated one model: its files, and the attestation `gate check` wrote."""
    s = serve()
    model, attestation = tmp_path / "m.onnx", tmp_path / "m.attestation.json"
    model.write_bytes(lookup_model(3))
    argv = ["check", "--server", s.address, "--model", str(model), "--dataset", "pets", "--policy", "default"]
    code = main([*argv, "--attestation-out", str(attestation), "--format", "json"])
    verdict = json.loads(capsys.readouterr().out)["verdict"]
    data_dir = s.root / "data"
    public_key = tmp_path / "server.pub"
    public_key.write_text(public_key_pem(load_signing_key(data_dir / "signing" / "ed25519.pem").public_key()))
    return {
        "served": s,
        "model": model,
        "code": code,
        "verdict": verdict,
        "attestation": attestation,
        "public_key": public_key,
        "data_dir": data_dir,
    }


def test_verify_loads_neither_onnxruntime_nor_numpy(gated: dict[str, Any]) -> None:
    code, loaded, shown = _probe(
        "verify", "--attestation", gated["attestation"], "--model", gated["model"], "--public-key", gated["public_key"]
    )
    assert (code, loaded) == (gated["code"], [])
    assert gated["verdict"] in shown


def test_key_show_loads_neither_onnxruntime_nor_numpy(gated: dict[str, Any]) -> None:
    code, loaded, shown = _probe("key", "show", "--data-dir", gated["data_dir"])
    assert (code, loaded) == (0, [])
    assert shown + "\n" == gated["public_key"].read_text()


def test_history_of_an_audit_database_loads_neither_onnxruntime_nor_numpy(gated: dict[str, Any]) -> None:
    code, loaded, shown = _probe("history", "--data-dir", gated["data_dir"], "--format", "json")
    assert (code, loaded) == (0, [])
    ((record,),) = [json.loads(shown)]
    assert (record["dataset"], record["policy"], record["verdict"]) == ("pets", "default", gated["verdict"])


def test_history_from_a_server_loads_no_more_than_the_client(gated: dict[str, Any]) -> None:
    """The command adds nothing heavy to what gate.client itself imports (today the client
    reaches ONNX Runtime through gate.server.convert; once it does not, neither does this)."""
    code, loaded, shown = _probe("history", "--server", gated["served"].address, "--format", "json")
    assert code == 0 and set(loaded) <= set(_imported_by("gate.client"))
    ((record,),) = [json.loads(shown)]
    assert (record["dataset"], record["verdict"]) == ("pets", gated["verdict"])


def test_report_formats_are_the_renderers() -> None:
    assert list(REPORT_FORMATS) == sorted(RENDERERS)


def test_token_hash_is_the_servers() -> None:
    for token in ("", "abc", "Ünïcode token ✓", "x" * 1000):
        assert token_sha256(token) == server_token_sha256(token)
