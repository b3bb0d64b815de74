"""Signed verdicts: real Ed25519 keys, a real server on a free port, real ONNX models, and
`gate verify` as a deploy step runs it. No mocks."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from onnx import TensorProto, helper, numpy_helper

from gate.attest import (
    SCHEMA,
    KeyFileError,
    Problem,
    canonical_json,
    create_signing_key,
    key_id,
    load_or_create_signing_key,
    load_public_key,
    load_signing_key,
    public_key_path,
    render_attestation,
    sign_statement,
    sign_verdict,
    verify_attestation,
)
from gate.cli import main
from gate.config import ConfigError, load_config
from gate.server import create_server
from gate.verdict import Decision, Verdict
from tests.conftest import ROOT, Served, write_pets
from tests.models import lookup_model, predictions_for

DEFAULT_POLICY = ROOT / "policies" / "default.yaml"
SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64


def _first_class_model(k: int) -> bytes:
    """A model that answers class 0 for every sample: scores = 0·x + [1, 0, …, 0]."""
    bias = np.zeros((1, k), dtype=np.float32)
    bias[0, 0] = 1.0
    init = [
        numpy_helper.from_array(np.zeros((1, 1), dtype=np.float32), "zero"),
        numpy_helper.from_array(bias, "bias"),
    ]
    nodes = [helper.make_node("Mul", ["x", "zero"], ["z"]), helper.make_node("Add", ["z", "bias"], ["scores"])]
    graph = helper.make_graph(
        nodes,
        "first-class",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", k])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return bytes(model.SerializeToString())


def _verdict(decision: Decision = Decision.PASS, *, name: str = "pets") -> Verdict:
    return Verdict(
        decision=decision,
        model={"sha256": SHA_A, "path": "m.onnx", "bytes": 10},
        dataset={"name": name, "sha256": SHA_B, "samples": 150},
        policy={"name": "default", "sha256": SHA_C, "source": "default.yaml"},
        evaluation_id="0123456789abcdef0123456789abcdef",
    )


def _cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- the format ------------------------------------------------------------------------


def test_canonical_json_is_sorted_compact_utf8() -> None:
    statement = {"b": "é ✓", "a": {"d": None, "c": 'line\n"quoted" back\\slash \x01'}}
    expected = '{"a":{"c":"line\\n\\"quoted\\" back\\\\slash \\u0001","d":null},"b":"é ✓"}'.encode()
    assert canonical_json(statement) == expected
    assert canonical_json(dict(reversed(list(statement.items())))) == expected  # order of insertion is irrelevant


def test_the_signature_is_ed25519_over_the_canonical_statement() -> None:
    key = Ed25519PrivateKey.generate()
    doc = sign_verdict(_verdict(Decision.FAIL), key)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert doc["algorithm"] == "ed25519" and doc["key_id"] == hashlib.sha256(raw).hexdigest() == key_id(
        key.public_key()
    )
    statement = doc["statement"]
    assert statement["schema"] == SCHEMA == "gate.attestation/v1"
    assert {k: statement[k] for k in ("model_sha256", "dataset", "policy", "verdict", "evaluation_id", "key_id")} == {
        "model_sha256": SHA_A,
        "dataset": {"name": "pets", "sha256": SHA_B},
        "policy": {"name": "default", "sha256": SHA_C},
        "verdict": "FAIL",
        "evaluation_id": "0123456789abcdef0123456789abcdef",
        "key_id": doc["key_id"],
    }
    assert len(statement["time"]) == 20 and statement["time"].endswith("Z")
    # independently of gate: the signature verifies over exactly these bytes
    signed = json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    key.public_key().verify(base64.b64decode(doc["signature"]), signed)
    # layout does not matter to the verifier; values do
    relaid = json.dumps({k: doc[k] for k in reversed(list(doc))}, indent=7)
    assert verify_attestation(relaid, key.public_key(), SHA_A).problem is Problem.NOT_PASS
    result = verify_attestation(render_attestation(sign_verdict(_verdict(), key)), key.public_key(), SHA_A)
    assert result.ok and result.exit_code == 0 and result.statement is not None


def test_an_error_verdict_without_identities_is_signed_with_nulls() -> None:
    key = Ed25519PrivateKey.generate()
    doc = sign_verdict(Verdict(decision=Decision.ERROR, model={"sha256": None, "path": "x.onnx"}), key)
    assert doc["statement"]["model_sha256"] is None and doc["statement"]["dataset"] == {"name": None, "sha256": None}
    result = verify_attestation(doc, key.public_key(), SHA_A)
    assert result.genuine and result.problem is Problem.MODEL_MISMATCH and result.exit_code == 2


def _signed(key: Ed25519PrivateKey) -> dict[str, Any]:
    return sign_verdict(_verdict(), key)


def _edit(key: Ed25519PrivateKey, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(_signed(key))
    change(doc)
    return doc


def _resigned(key: Ed25519PrivateKey, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """A statement changed and then properly signed: malformed, yet with a valid signature."""
    statement = copy.deepcopy(_signed(key)["statement"])
    change(statement)
    return sign_statement(statement, key)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = doc
        for p in parents:
            target = target[p]
        target[last] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = doc
        for p in parents:
            target = target[p]
        del target[last]

    return change


KEY = Ed25519PrivateKey.generate()
GOOD = render_attestation(_signed(KEY))


@pytest.mark.parametrize(
    ("document", "problem", "reason"),
    [
        ("", Problem.BAD_JSON, "not valid JSON"),
        ("{not json", Problem.BAD_JSON, "not valid JSON"),
        (b"\xff\xfe", Problem.BAD_JSON, "not valid JSON"),
        ("[1, 2]", Problem.BAD_JSON, "a JSON list, not an object"),
        ("null", Problem.BAD_JSON, "not an object"),
        (GOOD.replace('"algorithm"', '"algorithm": "x", "algorithm"', 1), Problem.BAD_JSON, "appears twice"),
        (GOOD.replace('"PASS"', "NaN"), Problem.BAD_JSON, "NaN is not a JSON value"),
        ("x" * (2 << 20), Problem.BAD_JSON, "larger than"),
        (_edit(KEY, _drop("signature")), Problem.MISSING_FIELD, "the document lacks signature"),
        (_edit(KEY, _drop("statement.time")), Problem.MISSING_FIELD, "statement lacks time"),
        (_edit(KEY, _drop("statement.schema")), Problem.MISSING_FIELD, "statement lacks schema"),
        (_edit(KEY, _drop("statement.policy.sha256")), Problem.MISSING_FIELD, "statement.policy lacks sha256"),
        (_edit(KEY, _set("statement.schema", "gate.verdict/v1")), Problem.WRONG_SCHEMA, "not 'gate.attestation/v1'"),
        (_edit(KEY, _set("algorithm", "rsa-pss")), Problem.UNKNOWN_ALGORITHM, "'rsa-pss' is not 'ed25519'"),
        (_edit(KEY, _set("statement", [1])), Problem.MALFORMED, "statement is not an object"),
        (_edit(KEY, _set("statement.dataset", "pets")), Problem.MALFORMED, "statement.dataset is not an object"),
        (_edit(KEY, _set("statement.extra", "x")), Problem.MALFORMED, "unexpected fields: extra"),
        (_edit(KEY, _set("comment", "x")), Problem.MALFORMED, "unexpected fields: comment"),
        (_edit(KEY, _set("statement.verdict", "pass")), Problem.MALFORMED, "one of PASS, FAIL, ERROR"),
        (_edit(KEY, _set("statement.model_sha256", "A" * 64)), Problem.MALFORMED, "64 lower-case hex"),
        (_edit(KEY, _set("key_id", 7)), Problem.MALFORMED, "key_id should be a string"),
        (_edit(KEY, _set("signature", None)), Problem.MALFORMED, "signature should be a string"),
        (_edit(KEY, _set("key_id", "0" * 64)), Problem.KEY_MISMATCH, "differs from the key_id in its statement"),
        (_edit(KEY, _set("signature", "not base64!")), Problem.BAD_SIGNATURE, "not valid base64"),
        (_edit(KEY, _set("signature", "AAAA")), Problem.BAD_SIGNATURE, "the document was altered"),
        (_edit(KEY, _set("statement.time", "2000-01-01T00:00:00Z")), Problem.BAD_SIGNATURE, "was altered"),
        (_edit(KEY, _set("statement.dataset.name", "other")), Problem.BAD_SIGNATURE, "was altered"),
        (_edit(KEY, _set("statement.policy.name", "\ud800")), Problem.MALFORMED, "cannot be encoded"),
        (_resigned(KEY, _set("evaluation_id", 5)), Problem.MALFORMED, "evaluation_id should be"),
    ],
)
def test_every_malformed_or_altered_document_is_refused_with_its_reason(
    document: str | bytes | dict[str, Any], problem: Problem, reason: str
) -> None:
    result = verify_attestation(document, KEY.public_key(), SHA_A)
    assert (result.problem, result.exit_code) == (problem, 2), result.reason
    assert reason in result.reason and not result.genuine


def test_pins_model_and_verdict() -> None:
    public = KEY.public_key()
    assert verify_attestation(GOOD, public, SHA_A, dataset_sha256=SHA_B, policy_sha256=SHA_C.upper()).ok
    result = verify_attestation(GOOD, public, SHA_A, policy_sha256="d" * 64)
    assert result.problem is Problem.POLICY_MISMATCH and result.genuine and "policy 'default'" in result.reason
    assert verify_attestation(GOOD, public, SHA_A, dataset_sha256=SHA_C).problem is Problem.DATASET_MISMATCH
    result = verify_attestation(GOOD, public, b"other model bytes")
    assert result.problem is Problem.MODEL_MISMATCH and result.exit_code == 2
    assert f"is for model {SHA_A}" in result.reason
    assert verify_attestation(GOOD, public, "not a sha").problem is Problem.MODEL_MISMATCH
    for decision in (Decision.FAIL, Decision.ERROR):
        result = verify_attestation(sign_verdict(_verdict(decision), KEY), public, SHA_A)
        assert (result.problem, result.exit_code, result.genuine) == (Problem.NOT_PASS, 1, True)
        assert f"the verdict is {decision.value}" in result.reason
    other = Ed25519PrivateKey.generate()
    result = verify_attestation(GOOD, other.public_key(), SHA_A)
    assert result.problem is Problem.KEY_MISMATCH and "not by the public key given" in result.reason
    # a forgery: signed by another key, claiming the genuine key's id
    forged = sign_statement({**_signed(other)["statement"]}, other)
    forged["key_id"] = forged["statement"]["key_id"] = key_id(public)
    assert verify_attestation(forged, public, SHA_A).problem is Problem.BAD_SIGNATURE


# -- keys --------------------------------------------------------------------------------


def test_a_signing_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "signing" / "ed25519.pem"
    key = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    pub = public_key_path(path)
    assert pub == path.with_name("ed25519.pub") and pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert key_id(load_public_key(pub)) == key_id(key.public_key())
    assert sorted(p.name for p in path.parent.iterdir()) == ["ed25519.pem", "ed25519.pub"]  # nothing temporary left
    before = path.read_bytes()
    assert key_id(load_or_create_signing_key(path).public_key()) == key_id(key.public_key())
    pub.unlink()
    assert key_id(load_or_create_signing_key(path).public_key()) == key_id(key.public_key())
    assert pub.is_file() and path.read_bytes() == before
    with pytest.raises(KeyFileError, match="already exists; it was not replaced"):
        create_signing_key(path)
    assert path.read_bytes() == before


def test_public_keys_in_pem_hex_or_base64(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for name, text in (("k.hex", raw.hex() + "\n"), ("k.b64", base64.b64encode(raw).decode())):
        (tmp_path / name).write_text(text)
        assert key_id(load_public_key(tmp_path / name)) == key_id(key.public_key())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa.pub").write_bytes(
        rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (tmp_path / "rsa.pem").write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (tmp_path / "short.hex").write_text(raw.hex()[:-2])
    (tmp_path / "private.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    problems = {
        "rsa.pub": "is a RSAPublicKey, not an Ed25519 key",
        "short.hex": "neither PEM nor a raw 32-byte Ed25519 key",
        "private.pem": "is not a PEM public key",
        "missing.pub": "does not exist",
    }
    for name, problem in problems.items():
        with pytest.raises(KeyFileError, match=problem):
            load_public_key(tmp_path / name)
    with pytest.raises(KeyFileError, match="is a RSAPrivateKey, not an Ed25519 key"):
        load_signing_key(tmp_path / "rsa.pem")
    with pytest.raises(KeyFileError, match=r"cannot read signing key .*: it is a directory"):
        load_signing_key(tmp_path)


def _config_file(root: Path, **settings: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_pets(root)
    config = {
        "listen": "127.0.0.1:0",
        "data_dir": "data",
        "datasets": ["datasets"],
        "policies": [str(ROOT / "policies")],
    }
    (root / "gate.yaml").write_text(yaml.safe_dump({**config, **settings}))
    return root / "gate.yaml"


def test_the_server_generates_its_key_on_first_start_and_keeps_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(_config_file(tmp_path))
    assert config.signing_key is None and config.signing_key_file == tmp_path / "data" / "signing" / "ed25519.pem"
    ids = []
    for _ in range(2):
        caplog.clear()
        with caplog.at_level("INFO"):
            server, _port = create_server(config)
        server.stop(grace=None)
        ids.append(key_id(server.signing_key.public_key()))
        assert f"verdicts are signed with Ed25519 key {ids[-1]}" in caplog.text
    assert ids[0] == ids[1] == key_id(load_signing_key(config.signing_key_file).public_key())
    assert stat.S_IMODE(config.signing_key_file.stat().st_mode) == 0o600


def test_signing_key_setting_environment_and_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = _config_file(tmp_path / "conf", signing_key="keys/gate.pem")
    assert load_config(f).signing_key_file == tmp_path / "conf" / "keys" / "gate.pem"
    monkeypatch.setenv("GATE_SIGNING_KEY", "/srv/keys/gate.pem")
    assert load_config(f).signing_key == Path("/srv/keys/gate.pem")


def test_a_signing_key_that_cannot_be_used_stops_the_start(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    rsa_key = tmp_path / "rsa.pem"
    rsa_key.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cases = {
        "directory": (tmp_path, "it is a directory"),
        "garbage": (garbage, "is not an unencrypted PEM private key"),
        "rsa": (rsa_key, "not an Ed25519 key"),
        "missing": (tmp_path / "missing.pem", "does not exist (create it with `gate key new --out"),
    }
    for name, (path, problem) in cases.items():
        config = load_config(_config_file(tmp_path / name, signing_key=str(path)))
        with pytest.raises(ConfigError) as exc:
            create_server(config)
        assert exc.value.message.startswith("signing_key: ") and str(path) in exc.value.message, exc.value.message
        assert problem in exc.value.message
        assert not (tmp_path / name / "data").exists()  # refused before anything was opened or written
    assert not (tmp_path / "missing.pem").exists()  # a configured key is never generated
    # the generated key's place, when something unusable is already there: never replaced
    config = load_config(_config_file(tmp_path / "default"))
    config.signing_key_file.parent.mkdir(parents=True)
    config.signing_key_file.write_bytes(garbage.read_bytes())
    with pytest.raises(ConfigError, match=f"signing_key: signing key {config.signing_key_file} is not"):
        create_server(config)
    assert config.signing_key_file.read_bytes() == garbage.read_bytes()


# -- end to end: a server, `gate check`, `gate verify` -------------------------------------


def test_a_deploy_step_verifies_the_servers_attestations(
    serve: Callable[..., Served], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = serve()
    good, bad, broken = tmp_path / "good.onnx", tmp_path / "bad.onnx", tmp_path / "broken.onnx"
    good.write_bytes(lookup_model(3))
    bad.write_bytes(_first_class_model(3))
    broken.write_bytes(lookup_model(4))  # runs, but has four classes for a three-class set: ERROR

    # the operator publishes the server's public key
    code, pem, err = _cli(capsys, "key", "show", "--config", s.root / "gate.yaml")
    server_key_id = key_id(s.server.signing_key.public_key())
    assert code == 0 and pem.startswith("-----BEGIN PUBLIC KEY-----") and server_key_id in err
    public = tmp_path / "gate.pub"
    public.write_text(pem)
    assert pem == public_key_path(s.root / "data" / "signing" / "ed25519.pem").read_text()

    def check(model: Path, out: Path) -> tuple[int, dict[str, Any]]:
        code, stdout, _ = _cli(
            capsys,
            "check",
            "--server",
            s.address,
            "--model",
            model,
            "--dataset",
            "pets",
            "--policy",
            "default",
            "--format",
            "json",
            "--attestation-out",
            out,
        )
        return code, json.loads(stdout)

    for model, decision, exit_code in ((good, "PASS", 0), (bad, "FAIL", 1), (broken, "ERROR", 2)):
        code, verdict = check(model, tmp_path / f"{model.stem}.json")
        assert (code, verdict["verdict"]) == (exit_code, decision), verdict["error"]
        statement = json.loads((tmp_path / f"{model.stem}.json").read_text())["statement"]
        assert statement["verdict"] == decision and statement["key_id"] == server_key_id
        assert statement["model_sha256"] == verdict["model"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
        assert statement["evaluation_id"] == verdict["evaluation_id"]
        assert statement["dataset"] == {"name": "pets", "sha256": verdict["dataset"]["sha256"]}
        assert statement["policy"] == {"name": "default", "sha256": verdict["policy"]["sha256"]}
        assert "attestation" not in json.dumps(verdict)  # the verdict JSON itself is unchanged

    def verify(attestation: Path, model: Path, key: Path = public, *extra: str) -> tuple[int, str, str]:
        return _cli(capsys, "verify", "--attestation", attestation, "--model", model, "--public-key", key, *extra)

    # the genuine PASS
    code, out, err = verify(tmp_path / "good.json", good)
    assert code == 0 and out.startswith("verified PASS: model ") and err == ""
    code, out, err = verify(tmp_path / "good.json", good, public, "--format", "json")
    result = json.loads(out)
    assert code == 0 and result["verified"] and result["statement"]["verdict"] == "PASS"

    # a tampered model: one byte changed
    tampered = tmp_path / "tampered.onnx"
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(bytes(data))
    code, out, err = verify(tmp_path / "good.json", tampered)
    assert code == 2 and out == "" and err.startswith("gate verify: model-mismatch: the attestation is for model")
    # another model altogether, the failed one
    code, _, err = verify(tmp_path / "good.json", bad)
    assert code == 2 and "model-mismatch" in err

    # tampered attestations: a FAIL turned into PASS, a PASS given another time
    doc = json.loads((tmp_path / "bad.json").read_text())
    doc["statement"]["verdict"] = "PASS"
    (tmp_path / "promoted.json").write_text(json.dumps(doc))
    code, _, err = verify(tmp_path / "promoted.json", bad)
    assert code == 2 and err.startswith("gate verify: bad-signature: ")
    doc = json.loads((tmp_path / "good.json").read_text())
    doc["statement"]["time"] = "2099-01-01T00:00:00Z"
    (tmp_path / "redated.json").write_text(json.dumps(doc))
    code, _, err = verify(tmp_path / "redated.json", good)
    assert code == 2 and "bad-signature" in err

    # genuine FAIL and ERROR verdicts: not a pass
    code, out, err = verify(tmp_path / "bad.json", bad)
    assert code == 1 and out == "" and "not-pass: genuine attestation, but the verdict is FAIL" in err
    code, _, err = verify(tmp_path / "broken.json", broken)
    assert code == 1 and "the verdict is ERROR" in err

    # a wrong public key
    other = tmp_path / "other" / "key.pem"
    create_signing_key(other)
    code, out, err = verify(tmp_path / "good.json", good, public_key_path(other), "--format", "json")
    assert code == 2 and json.loads(out)["problem"] == "key-mismatch" and "key-mismatch" in err

    # pins: the policy the deploy requires
    policy_sha = json.loads((tmp_path / "good.json").read_text())["statement"]["policy"]["sha256"]
    assert verify(tmp_path / "good.json", good, public, "--policy-sha256", policy_sha)[0] == 0
    code, _, err = verify(tmp_path / "good.json", good, public, "--policy-sha256", "0" * 64)
    assert code == 2 and "policy-mismatch" in err

    # unreadable inputs
    for args, problem in (
        ((tmp_path / "nowhere.json", good), "cannot read"),
        ((tmp_path / "good.json", tmp_path / "nowhere.onnx"), "cannot read"),
        ((tmp_path / "good.json", good, tmp_path / "nowhere.pub"), "public key"),
    ):
        code, _, err = verify(*args)
        assert code == 2 and err.startswith("gate verify: unreadable: ") and problem in err

    # as a deploy step runs it: the console script's exit code
    def process(attestation: Path, model: Path) -> subprocess.CompletedProcess[str]:
        argv = ["verify", "--attestation", str(attestation), "--model", str(model), "--public-key", str(public)]
        return subprocess.run([sys.executable, "-m", "gate", *argv], capture_output=True, text=True, check=False)

    assert process(tmp_path / "good.json", good).returncode == 0
    refused = process(tmp_path / "promoted.json", bad)
    assert refused.returncode == 2 and refused.stdout == "" and len(refused.stderr.splitlines()) == 1

    # the audit log keeps the attestation the Evaluate reply carried: GetVerdict returns it
    with s.client() as client:
        evaluation = client.evaluate(hashlib.sha256(good.read_bytes()).hexdigest(), "pets", policy_name="default")
        assert evaluation.attestation is not None
        assert verify_attestation(evaluation.attestation, load_public_key(public), good.read_bytes()).ok
        assert client.get_verdict(evaluation.evaluation_id).verdict.attestation_json == evaluation.attestation

    # a check that ends without a verdict leaves no stale attestation behind
    code, _, err = _cli(
        capsys,
        "check",
        "--server",
        s.address,
        "--model",
        good,
        "--dataset",
        "no-such-set",
        "--policy",
        "default",
        "--attestation-out",
        tmp_path / "good.json",
    )
    assert code == 2 and not (tmp_path / "good.json").exists() and "no attestation came with the verdict" in err


def test_gate_eval_signs_locally(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = predictions_for([[50, 2, 3], [4, 45, 1], [2, 3, 40]])
    np.savez(tmp_path / "pets.npz", x=x, y=y, classes=np.array(["cat", "dog", "rabbit"]))
    model = tmp_path / "m.onnx"
    model.write_bytes(lookup_model(3))
    code, out, err = _cli(capsys, "key", "new", "--out", tmp_path / "keys" / "ci.pem")
    assert code == 0 and f"public key: {tmp_path / 'keys' / 'ci.pub'}" in out
    argv: list[str | Path] = ["eval", "--model", model, "--dataset", tmp_path / "pets.npz", "--policy", DEFAULT_POLICY]
    code, _, err = _cli(capsys, *argv, "--signing-key", tmp_path / "keys" / "ci.pem")
    assert code == 2 and "--signing-key and --attestation-out go together" in err
    code, _, err = _cli(
        capsys, *argv, "--signing-key", tmp_path / "nokey.pem", "--attestation-out", tmp_path / "a.json"
    )
    assert code == 2 and "does not exist" in err and not (tmp_path / "a.json").exists()
    signing = ["--signing-key", tmp_path / "keys" / "ci.pem", "--attestation-out", tmp_path / "a.json"]
    code, _, _ = _cli(capsys, *argv, "--format", "json", *signing)
    assert code == 0
    statement = json.loads((tmp_path / "a.json").read_text())["statement"]
    assert statement["evaluation_id"] is None and statement["verdict"] == "PASS"
    code, out, _ = _cli(
        capsys,
        "verify",
        "--attestation",
        tmp_path / "a.json",
        "--model",
        model,
        "--public-key",
        tmp_path / "keys" / "ci.pub",
    )
    assert code == 0 and "verified PASS" in out and "evaluation" not in out
    # `gate key show` prints the same public key as the one written beside it
    code, pem, err = _cli(capsys, "key", "show", "--signing-key", tmp_path / "keys" / "ci.pem")
    assert code == 0 and pem == (tmp_path / "keys" / "ci.pub").read_text() and statement["key_id"] in err
    code, _, err = _cli(capsys, "key", "show", "--data-dir", tmp_path / "nodata")
    assert code == 2 and "no signing key at" in err


def _openssl_with_raw_ed25519() -> bool:
    if shutil.which("openssl") is None or shutil.which("jq") is None:
        return False
    version = subprocess.run(["openssl", "version"], capture_output=True, text=True, check=False).stdout.split()
    return len(version) > 1 and version[0] == "OpenSSL" and int(version[1].split(".")[0]) >= 3


@pytest.mark.skipif(not _openssl_with_raw_ed25519(), reason="needs jq and OpenSSL 3 (pkeyutl -rawin)")
def test_the_documented_shell_check_agrees(tmp_path: Path) -> None:
    """docs/attestation.md: jq canonicalises, openssl verifies; no Python involved."""
    key_file = tmp_path / "gate.pem"
    key = create_signing_key(key_file)
    genuine = tmp_path / "a.json"
    genuine.write_text(render_attestation(sign_verdict(_verdict(name="pets – ünïcode"), key)))
    doc = json.loads(genuine.read_text())
    doc["statement"]["verdict"] = "FAIL"
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps(doc))

    def shell_check(attestation: Path) -> int:
        script = (
            'jq -jcS .statement "$1" > "$1.statement" && jq -r .signature "$1" | base64 -d > "$1.sig"'
            ' && openssl pkeyutl -verify -pubin -inkey "$2" -rawin -in "$1.statement" -sigfile "$1.sig"'
        )
        run = subprocess.run(
            ["sh", "-c", script, "sh", str(attestation), str(public_key_path(key_file))],
            capture_output=True,
            check=False,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
        )
        return run.returncode

    assert (tmp_path / "a.json.statement").exists() is False
    assert shell_check(genuine) == 0
    assert (tmp_path / "a.json.statement").read_bytes() == canonical_json(doc["statement"] | {"verdict": "PASS"})
    assert shell_check(altered) != 0
