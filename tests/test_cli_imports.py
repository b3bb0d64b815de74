"""The command line's package: commands that never run a model do not load ONNX Runtime
(nor numpy, where they need none), each run in a fresh interpreter on real inputs (a real
server's attestation, signing key and audit database, a real token, a real policy); `gate
eval` loads only what the evaluation at hand uses (no Pillow for a set of tensors, no
suite, screen or report that neither the policy nor the output asks for); and the names
the package spells out to stay light equal the ones they stand in for."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gate.attest import load_signing_key, public_key_pem
from gate.cli import GROUP_OF_COMMAND, build_parser, command_named, main
from gate.cli.auth import token_sha256
from gate.cli.verdict_output import REPORT_FORMATS
from gate.report import RENDERERS, renderer
from gate.server.auth import token_sha256 as server_token_sha256
from tests.conftest import PETS, ROOT, Served, write_pets
from tests.models import linear_softmax_model, lookup_model, predictions_for

HEAVY = ("onnxruntime", "numpy")
# runs `gate ARGV...` the way the console script does, then reports the heavy modules it loaded
PROBE = f"""
import json, sys
from gate.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:  # --help
    code = e.code
loaded = [m for m in {HEAVY!r} if m in sys.modules]
print(json.dumps({{"code": code, "loaded": loaded, "modules": sorted(sys.modules)}}))
"""


def _probe(*argv: str | Path, stdin: str = "") -> tuple[int, list[str], str]:
    """Exit code, heavy modules loaded and stdout of one command in a fresh interpreter."""
    result, shown = _run_probe(*argv, stdin=stdin)
    return result["code"], result["loaded"], shown


def _run_probe(*argv: str | Path, stdin: str = "") -> tuple[dict[str, Any], str]:
    """What the probe reports of one command in a fresh interpreter, and its stdout."""
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
    result: dict[str, Any] = json.loads(last)
    return result, "\n".join(shown)


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


# what `gate eval` on a set of tensors, judged by rules of the confusion matrix and shown as
# text, has no use for: Pillow's image code, the corruption suite (the package's list of
# names aside: the robustness rules validate against it), the leakage screen, the held-out
# audits, the deployment measurements, the dashboard, and the other formats' renderers
UNUSED_BY_A_TENSOR_EVAL = (
    "PIL.Image",
    "gate.corruptions.catalogue",
    "gate.corruptions.evidence",
    "gate.corruptions.suite",
    "gate.leakage",
    "gate.heldout.duplicates",
    "gate.heldout.label_audit",
    "gate.heldout.selective",
    "gate.deployment.evidence",
    "gate.dashboard",
    "gate.report.html",
    "gate.report.junit",
    "gate.report.markdown",
)


def _unused_loaded(modules: list[str]) -> list[str]:
    """The modules of UNUSED_BY_A_TENSOR_EVAL (or their submodules) among ``modules``."""
    return sorted(m for m in modules for u in UNUSED_BY_A_TENSOR_EVAL if m == u or m.startswith(f"{u}."))


def test_eval_of_a_tensor_set_loads_only_what_it_uses(tmp_path: Path) -> None:
    spec = write_pets(tmp_path)
    model = tmp_path / "m.onnx"
    model.write_bytes(lookup_model(3))
    policy = ROOT / "policies" / "default.yaml"
    argv: list[str | Path] = ["eval", "--model", model, "--dataset", spec, "--policy", policy, "--no-cache"]
    result, shown = _run_probe(*argv)
    assert result["code"] == 0 and "PASS" in shown  # the whole evaluation ran
    assert set(HEAVY) <= set(result["modules"])
    assert _unused_loaded(result["modules"]) == []
    assert "gate.report.text" in result["modules"]
    # the probe sees what a format asks for: the HTML page loads its renderer
    html, _ = _run_probe(*argv, "--format", "html", "--output", tmp_path / "report.html")
    assert html["code"] == 0 and "gate.report.html" in _unused_loaded(html["modules"])
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_eval_of_an_image_folder_loads_pillow(tmp_path: Path) -> None:
    """The counterpart: images are decoded with Pillow, which the same probe sees."""
    from PIL import Image

    for c, name in enumerate(PETS):
        (tmp_path / "set" / name).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (4, 4), (80 * c, 20 * i, 0)).save(tmp_path / "set" / name / f"{i}.png")
    model = tmp_path / "m.onnx"
    weights = np.zeros((48, 3), dtype=np.float32)
    model.write_bytes(linear_softmax_model(weights, np.zeros(3, np.float32), input_shape=["N", 3, 4, 4]))
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nname: any\nrules:\n  - {id: acc, type: metric, metric: accuracy, min: 0.01}\n")
    result, _ = _run_probe("eval", "--model", model, "--dataset", tmp_path / "set", "--policy", policy, "--no-cache")
    assert result["code"] == 0
    assert _unused_loaded(result["modules"]) == ["PIL.Image"]


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands: dict[str, argparse.ArgumentParser] = sub.choices
    return commands


def test_a_command_builds_its_own_group_alone_and_parses_as_the_whole_parser() -> None:
    whole = _commands(build_parser())
    assert set(GROUP_OF_COMMAND) == set(whole)
    for command, group in GROUP_OF_COMMAND.items():
        alone = _commands(build_parser(command=command))
        assert list(alone) == [c for c, g in GROUP_OF_COMMAND.items() if g is group]
        assert alone[command].format_help() == whole[command].format_help()
    # no command, or one gate does not know: every group, so the messages list them all
    assert list(_commands(build_parser(command="evl"))) == list(whole)
    assert list(_commands(build_parser())) == list(whole)


def test_the_command_is_the_first_argument_that_is_not_an_option() -> None:
    assert command_named(["-v", "eval", "--model", "m.onnx"]) == "eval"
    assert command_named(["--verbose", "-v", "policy", "validate"]) == "policy"
    assert command_named(["--help"]) is None
    assert command_named(["--", "eval"]) is None
    assert command_named([]) is None


def test_a_mistyped_command_lists_every_command() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "gate", "evl"], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    assert run.returncode == 2 and "invalid choice: 'evl'" in run.stderr
    assert all(f"'{c}'" in run.stderr for c in GROUP_OF_COMMAND)


def test_report_formats_are_the_renderers() -> None:
    assert list(REPORT_FORMATS) == sorted(RENDERERS)
    for fmt in REPORT_FORMATS:  # one format's renderer, imported alone, is the one RENDERERS lists
        assert renderer(fmt) is RENDERERS[fmt]
    with pytest.raises(KeyError):
        renderer("pdf")


def test_token_hash_is_the_servers() -> None:
    for token in ("", "abc", "Ünïcode token ✓", "x" * 1000):
        assert token_sha256(token) == server_token_sha256(token)
