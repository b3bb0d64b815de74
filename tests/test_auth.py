"""TLS, mutual TLS, bearer tokens with roles, Reload and message size limits, end to end:
real servers on free loopback ports, certificates made by a test CA, the real client and CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import ipaddress
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
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
from gate.config import ConfigError, load_config
from gate.errors import RequestError
from gate.server.auth import METHOD_ROLES, SERVICE_PREFIX, bearer_token
from gate.store import AuditStore
from tests.conftest import ROOT, Served
from tests.models import lookup_model, slow_lookup_model

# isort: split
# a dev dependency: where it is missing (a bare GPU machine), these tests skip instead of
# stopping the whole collection
pytest.importorskip("cryptography")
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SUBMIT_TOKEN = "submit-token-4b1d0c7e9a"
ADMIN_TOKEN = "admin-token-77f3e2a5c1"


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


TOKENS: list[dict[str, Any]] = [
    {"name": "ci-pipeline", "sha256": _sha(SUBMIT_TOKEN), "roles": ["submit"]},
    {"name": "operator", "sha256": _sha(ADMIN_TOKEN), "roles": ["admin"]},
]


# -- certificates ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path  # the test CA's certificate
    server_cert: Path  # signed by the CA, for localhost and 127.0.0.1
    server_key: Path
    client_cert: Path  # signed by the CA
    client_key: Path
    other_ca: Path  # an unrelated CA
    stranger_cert: Path  # a client certificate signed by the unrelated CA
    stranger_key: Path


def _issue(
    subject: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_cert, issuer_key = issuer if issuer is not None else (None, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        purpose = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_file, key_file = directory / f"{stem}.pem", directory / f"{stem}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = _issue("gate test CA", None, ca=True)
    other = _issue("some other CA", None, ca=True)
    ca_file, _ = _write(d, "ca", *ca)
    other_file, _ = _write(d, "other-ca", *other)
    server = _write(d, "server", *_issue("localhost", ca, server=True))
    client = _write(d, "client", *_issue("ci-runner", ca))
    stranger = _write(d, "stranger", *_issue("ci-runner", other))
    return Pki(ca_file, *server, *client, other_file, *stranger)


def _tls(pki: Pki, *, mutual: bool = False) -> dict[str, Any]:
    settings: dict[str, Any] = {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key)}
    if mutual:
        settings["tls_client_ca"] = str(pki.ca)
    return settings


def _code(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(GateClientError) as exc:
        call()
    return exc.value.code, exc.value.details


def _evaluate(client: GateClient) -> pb.Verdict:
    sha = client.upload_model(lookup_model(3), filename="lookup.onnx").sha256
    verdict: pb.Verdict = client.evaluate(sha, "pets", policy_name="default").verdict
    return verdict


# -- TLS ---------------------------------------------------------------------------------


def test_tls_server_serves_tls_clients_only(serve: Callable[..., Served], pki: Pki) -> None:
    s = serve(**_tls(pki))
    with GateClient(s.address, timeout=30, tls_ca=pki.ca) as client:
        assert client.health() == "SERVING"
        assert {d.name for d in client.list_datasets()} == {"pets", "pets-huge", "pets-large"}
        assert _evaluate(client).decision == pb.PASS
    port = s.address.rpartition(":")[2]
    with GateClient(f"localhost:{port}", timeout=30, tls_ca=pki.ca) as client:
        assert client.health() == "SERVING"
    # plain text against TLS; a CA that did not sign the server; a name the certificate lacks
    for refused in (
        GateClient(s.address, timeout=10),
        GateClient(s.address, timeout=10, tls_ca=pki.other_ca),
        GateClient(s.address, timeout=10, tls_ca=pki.ca, tls_server_name="elsewhere.test"),
    ):
        with refused:
            assert _code(refused.list_datasets)[0] == "UNAVAILABLE"


def test_mutual_tls_requires_a_client_certificate_from_the_configured_ca(
    serve: Callable[..., Served], pki: Pki
) -> None:
    s = serve(**_tls(pki, mutual=True))
    for refused in (
        GateClient(s.address, timeout=10, tls_ca=pki.ca),
        GateClient(s.address, timeout=10, tls_ca=pki.ca, tls_cert=pki.stranger_cert, tls_key=pki.stranger_key),
    ):
        with refused:
            assert _code(refused.list_datasets)[0] == "UNAVAILABLE"
    with GateClient(s.address, timeout=30, tls_ca=pki.ca, tls_cert=pki.client_cert, tls_key=pki.client_key) as c:
        assert c.health() == "SERVING"
        assert [d.name for d in c.list_datasets()] == ["pets", "pets-huge", "pets-large"]


def test_client_side_tls_mistakes_are_request_errors(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(RequestError, match="tls_cert and tls_key together"):
        GateClient("127.0.0.1:1", tls_cert=pki.client_cert)
    with pytest.raises(RequestError, match="tls_ca: cannot read"):
        GateClient("127.0.0.1:1", tls_ca=tmp_path / "missing.pem")
    with pytest.raises(RequestError, match="only to TLS"):
        GateClient("127.0.0.1:1", tls_server_name="gate.test")
    with pytest.raises(RequestError, match="printable ASCII"):
        GateClient("127.0.0.1:1", token="two words")


# -- tokens and roles --------------------------------------------------------------------


def test_every_gate_method_needs_a_role() -> None:
    methods = {SERVICE_PREFIX + m.name for m in pb.DESCRIPTOR.services_by_name["GateService"].methods}
    assert methods == set(METHOD_ROLES)
    admin = ("/Reload", "/Waive", "/RevokeWaiver")
    assert {METHOD_ROLES[SERVICE_PREFIX + m.lstrip("/")] for m in admin} == {"admin"}
    assert {role for m, role in METHOD_ROLES.items() if not m.endswith(admin)} == {"submit"}


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ([("authorization", "Bearer abc")], "abc"),
        ([("authorization", "bearer  abc ")], "abc"),
        ([], None),
        ([("authorization", "Basic abc")], None),
        ([("authorization", "Bearer")], None),
        ([("authorization", "Bearer a b")], None),
        ([("authorization", "Bearer a"), ("authorization", "Bearer b")], None),
    ],
)
def test_bearer_token_parsing(metadata: list[tuple[str, str]], token: str | None) -> None:
    assert bearer_token(metadata) == token


def test_tokens_authenticate_and_roles_authorise(serve: Callable[..., Served], tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    shutil.copy(ROOT / "policies" / "default.yaml", policies)
    s = serve(tokens=TOKENS, policies=[str(policies)])
    config_text = (s.root / "gate.yaml").read_text()
    assert _sha(SUBMIT_TOKEN) in config_text
    assert SUBMIT_TOKEN not in config_text and ADMIN_TOKEN not in config_text

    # health and reflection stay open; everything else needs a token
    with grpc.insecure_channel(s.address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        stub = pb_grpc.GateServiceStub(channel)  # type: ignore[no-untyped-call]
        for metadata in ((), (("authorization", f"Basic {SUBMIT_TOKEN}"),), (("authorization", SUBMIT_TOKEN),)):
            with pytest.raises(grpc.RpcError) as exc:
                stub.ListDatasets(pb.ListDatasetsRequest(), metadata=metadata, timeout=10)
            assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    for token in (None, "not-a-configured-token"):
        with GateClient(s.address, timeout=10, token=token) as anonymous:
            assert anonymous.health() == "SERVING"
            for call in (
                anonymous.list_datasets,
                anonymous.reload,
                lambda c=anonymous: c.upload_model(lookup_model(3)),  # client-streaming
                lambda c=anonymous: c.evaluate("0" * 64, "pets", policy_name="default"),  # server-streaming
            ):
                assert _code(call)[0] == "UNAUTHENTICATED"

    with GateClient(s.address, timeout=30, token=SUBMIT_TOKEN) as submitter:
        assert _evaluate(submitter).decision == pb.PASS
        assert len(submitter.list_verdicts()) == 1
        code, details = _code(submitter.reload)
        assert code == "PERMISSION_DENIED" and "'ci-pipeline'" in details and "'admin' role" in details

    (policies / "strict.yaml").write_text(
        (ROOT / "policies" / "default.yaml").read_text().replace("name: default", "name: strict", 1)
    )
    with GateClient(s.address, timeout=30, token=ADMIN_TOKEN) as admin:
        assert [p.name for p in admin.list_policies()] == ["default"]
        reply = admin.reload()
        assert [p.name for p in reply.policies] == ["default", "strict"]
        assert all(len(p.sha256) == 64 for p in reply.policies)
        assert [(d.name, d.samples) for d in reply.datasets] == [
            ("pets", 150),
            ("pets-huge", 30000),
            ("pets-large", 3000),
        ]
        assert [p.name for p in admin.list_policies()] == ["default", "strict"]
        assert _evaluate(admin).decision == pb.PASS  # admin includes submit

        # a broken file: nothing changes, and the refusal names it
        (policies / "broken.yaml").write_text("version: 1\nname: broken\nrules: not-a-list\n")
        code, details = _code(admin.reload)
        assert code == "FAILED_PRECONDITION" and "broken.yaml" in details
        assert [p.name for p in admin.list_policies()] == ["default", "strict"]


def test_token_names_are_logged_never_tokens(serve: Callable[..., Served], caplog: pytest.LogCaptureFixture) -> None:
    s = serve(tokens=TOKENS)
    with caplog.at_level("DEBUG", logger="gate"), GateClient(s.address, timeout=30, token=SUBMIT_TOKEN) as c:
        evaluation_id = c.evaluate(c.upload_model(lookup_model(3)).sha256, "pets", policy_name="default").evaluation_id
        _code(c.reload)
    messages = [r.getMessage() for r in caplog.records]
    assert f"{SERVICE_PREFIX}UploadModel authorised for token 'ci-pipeline'" in messages
    assert f"evaluation {evaluation_id} requested by token 'ci-pipeline'" in messages
    assert any("Reload refused (PERMISSION_DENIED) for token 'ci-pipeline'" in m for m in messages)
    assert not any(SUBMIT_TOKEN in m for m in messages)


def test_a_cancelled_authorised_evaluation_is_recorded_and_frees_its_slot(serve: Callable[..., Served]) -> None:
    s = serve(tokens=TOKENS, max_concurrent_evaluations=1)
    with GateClient(s.address, timeout=30, token=SUBMIT_TOKEN) as c:
        sha = c.upload_model(slow_lookup_model(3)).sha256
    metadata = (("authorization", f"Bearer {SUBMIT_TOKEN}"),)
    request = pb.EvaluateRequest(
        model_sha256=sha, dataset="pets-huge", policy_name="default", batch_size=1, provider=pb.PROVIDER_CPU
    )
    with grpc.insecure_channel(s.address) as channel:
        call = pb_grpc.GateServiceStub(channel).Evaluate(request, metadata=metadata)  # type: ignore[no-untyped-call]
        assert next(call).WhichOneof("event") == "accepted"
        assert next(call).WhichOneof("event") == "progress"
        call.cancel()
    with AuditStore(s.root / "data" / "audit.sqlite3") as store:
        deadline = time.monotonic() + 30
        while not (done := [r for r in store.list() if r.state == "done"]):
            assert time.monotonic() < deadline, "the cancelled evaluation was never recorded"
            time.sleep(0.02)
    assert done[0].verdict is not None and done[0].verdict["error"]["type"] == "CancelledError"
    deadline = time.monotonic() + 30
    while s.server.servicer.admission.running:
        assert time.monotonic() < deadline, "the cancelled evaluation kept its slot"
        time.sleep(0.02)


# -- the command line --------------------------------------------------------------------


def test_gate_check_with_tls_and_a_token(
    serve: Callable[..., Served],
    pki: Pki,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = serve(tokens=TOKENS, **_tls(pki))
    model = tmp_path / "lookup.onnx"
    model.write_bytes(lookup_model(3))
    token_file = tmp_path / "token"
    token_file.write_text(SUBMIT_TOKEN + "\n")
    check = ["check", "--server", s.address, "--model", str(model), "--dataset", "pets", "--policy", "default"]
    check += ["--format", "json", "--tls-ca", str(pki.ca)]
    monkeypatch.delenv("GATE_TOKEN", raising=False)

    def run(*extra: str) -> tuple[int, dict[str, Any]]:
        code = main([*check, *extra])
        return code, json.loads(capsys.readouterr().out)

    code, doc = run()
    assert code == 2 and doc["verdict"] == "ERROR"
    assert doc["error"]["type"] == "ServiceError" and doc["error"]["message"].startswith("UNAUTHENTICATED")
    code, doc = run("--token-file", str(token_file))
    assert code == 0 and doc["verdict"] == "PASS"
    monkeypatch.setenv("GATE_TOKEN", "wrong")
    code, doc = run()
    assert code == 2 and "UNAUTHENTICATED" in doc["error"]["message"]
    assert run("--token-file", str(token_file))[0] == 0  # the flag wins over the environment
    monkeypatch.setenv("GATE_TOKEN", SUBMIT_TOKEN)
    assert run()[0] == 0
    code, doc = run("--token-file", str(tmp_path / "missing"))
    assert code == 2 and doc["error"]["type"] == "RequestError" and "--token-file" in doc["error"]["message"]

    assert main(["health", "--server", s.address, "--tls-ca", str(pki.ca)]) == 0
    assert capsys.readouterr().out == "SERVING\n"
    assert main(["history", "--server", s.address, "--tls-ca", str(pki.ca), "--format", "json"]) == 0
    assert [r["verdict"] for r in json.loads(capsys.readouterr().out)] == ["PASS"] * 3
    monkeypatch.delenv("GATE_TOKEN")
    assert main(["history", "--server", s.address, "--tls-ca", str(pki.ca)]) == 2
    assert "UNAUTHENTICATED" in capsys.readouterr().err


def test_gate_token_new_and_hash(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["token", "new"]) == 0
    made = yaml.safe_load(capsys.readouterr().out)
    assert len(made["token"]) >= 40 and made["sha256"] == _sha(made["token"])
    monkeypatch.setattr("sys.stdin", io.StringIO(made["token"] + "\n"))
    assert main(["token", "hash"]) == 0
    assert capsys.readouterr().out == made["sha256"] + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["token", "hash"]) == 2


# -- configuration and limits ------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"tls_cert": "server.pem"}, "tls_cert and tls_key go together"),
        ({"tls_client_ca": "ca.pem"}, "tls_client_ca (mutual TLS) needs tls_cert and tls_key"),
        ({"tokens": [{"name": "a", "sha256": "abc", "roles": ["submit"]}]}, "tokens.0.sha256"),
        ({"tokens": [{"name": "a", "sha256": "a" * 64, "roles": ["root"]}]}, "tokens.0.roles.0"),
        ({"tokens": [{"name": "a", "sha256": "a" * 64, "roles": []}]}, "tokens.0.roles"),
        ({"tokens": [{"name": "a", "sha256": "a" * 64, "roles": ["admin"], "token": "x"}]}, "tokens.0.token"),
        ({"tokens": [TOKENS[0], {**TOKENS[1], "name": "ci-pipeline"}]}, "each name may appear once"),
        ({"tokens": [TOKENS[0], {**TOKENS[1], "sha256": TOKENS[0]["sha256"]}]}, "each sha256 may appear once"),
        ({"max_message_bytes": 1 << 20}, "max_message_bytes"),
    ],
)
def test_invalid_security_settings_are_refused(tmp_path: Path, settings: dict[str, Any], problem: str) -> None:
    f = tmp_path / "gate.yaml"
    f.write_text(yaml.safe_dump(settings))
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert problem in exc.value.message


def test_security_settings_resolve_relative_paths_and_read_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "gate.yaml"
    f.write_text("tls_cert: certs/server.pem\ntls_key: certs/server.key\n")
    monkeypatch.setenv("GATE_TLS_CLIENT_CA", "/etc/gate/ca.pem")
    monkeypatch.setenv("GATE_TOKENS", json.dumps([{**TOKENS[0], "sha256": TOKENS[0]["sha256"].upper()}]))
    monkeypatch.setenv("GATE_MAX_MESSAGE_BYTES", str(16 << 20))
    c = load_config(f)
    assert (c.tls_cert, c.tls_key) == (tmp_path / "certs" / "server.pem", tmp_path / "certs" / "server.key")
    assert c.tls_client_ca == Path("/etc/gate/ca.pem")
    assert [(t.name, t.sha256, t.roles) for t in c.tokens] == [("ci-pipeline", _sha(SUBMIT_TOKEN), ("submit",))]
    assert c.max_message_bytes == 16 << 20


def test_unreadable_certificate_stops_the_start(serve: Callable[..., Served], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tls_(cert|key): cannot read"):
        serve(tls_cert=str(tmp_path / "missing.pem"), tls_key=str(tmp_path / "missing.key"))


def test_max_message_bytes_bounds_requests(serve: Callable[..., Served]) -> None:
    s = serve(max_message_bytes=2 << 20)
    big_policy = "# padding\n" * (300 << 10)  # 3 MiB
    with s.client() as client:  # the client's default limit lets it through; the server's does not
        assert _code(lambda: client.validate_policy(big_policy))[0] == "RESOURCE_EXHAUSTED"
        assert client.upload_model(slow_lookup_model(3)).size > 4 << 20  # in 1 MiB chunks, which fit
    with GateClient(s.address, timeout=10, max_message_bytes=2 << 20) as client:
        assert _code(lambda: client.validate_policy(big_policy))[0] == "RESOURCE_EXHAUSTED"
