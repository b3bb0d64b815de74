"""Server configuration (file < GATE_* environment < flags) and `gate serve` as a process."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gate.client import GateClient
from gate.config import ConfigError, load_config, shipped_policies_dir
from tests.conftest import ROOT, write_pets


def test_file_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    f = tmp_path / "conf" / "gate.yaml"
    f.write_text("listen: 0.0.0.0:7000\ndata_dir: data\ndatasets: sets/a.yaml\npolicies: [p, /abs/q]\n")
    c = load_config(f)
    assert c.listen == "0.0.0.0:7000"
    assert c.data_dir == tmp_path / "conf" / "data" and c.audit_db == tmp_path / "conf" / "data" / "audit.sqlite3"
    assert c.datasets == [tmp_path / "conf" / "sets" / "a.yaml"]
    assert c.policies == [tmp_path / "conf" / "p", Path("/abs/q")]
    assert (c.max_concurrent_evaluations, c.max_queued_evaluations, c.default_provider) == (2, 8, "auto")


def test_environment_overrides_file_and_flags_override_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "gate.yaml"
    f.write_text("listen: 127.0.0.1:1\nmax_concurrent_evaluations: 3\n")
    monkeypatch.setenv("GATE_LISTEN", "127.0.0.1:2")
    monkeypatch.setenv("GATE_MAX_CONCURRENT_EVALUATIONS", "5")
    monkeypatch.setenv("GATE_DATASETS", '["/data/a.yaml", "/data/b.yaml"]')
    c = load_config(f)
    assert (c.listen, c.max_concurrent_evaluations) == ("127.0.0.1:2", 5)
    assert c.datasets == [Path("/data/a.yaml"), Path("/data/b.yaml")]
    assert load_config(f, listen="127.0.0.1:3").listen == "127.0.0.1:3"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("listen: nowhere\n", "listen: Value error, listen='nowhere' is not valid; it should be HOST:PORT"),
        ("max_concurrent_evaluations: 0\n", "max_concurrent_evaluations: Input should be greater than or equal to 1"),
        ("default_provider: tpu\n", "default_provider: Input should be 'auto', 'cuda' or 'cpu'"),
        ("colour: red\n", "colour: Extra inputs are not permitted"),
        ("- a list\n", "must be a mapping of settings"),
    ],
)
def test_invalid_configuration_names_the_setting(tmp_path: Path, text: str, problem: str) -> None:
    f = tmp_path / "gate.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert problem in exc.value.message and (str(f) in exc.value.message or "mapping" in problem)


def test_embedded_defaults() -> None:
    c = load_config(None)
    assert c.datasets == [Path("gate-data/demo/heldout.yaml")]
    assert c.policies == [shipped_policies_dir()] == [ROOT / "policies"]
    assert load_config(None, data_dir="/srv/g").datasets == [Path("/srv/g/demo/heldout.yaml")]


def test_gate_serve_process_logs_its_address_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    write_pets(tmp_path)
    f = tmp_path / "gate.yaml"
    f.write_text(f"data_dir: data\ndatasets: [datasets]\npolicies: [{ROOT / 'policies'}]\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gate", "serve", "--config", str(f), "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        address = None
        deadline = time.monotonic() + 60
        while address is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            found = re.search(r"gate listening on (127\.0\.0\.1:\d+)", line)
            address = found.group(1) if found else None
        assert address is not None
        with GateClient(address, timeout=30) as client:
            deadline = time.monotonic() + 60
            while client.health() != "SERVING":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert [d.name for d in client.list_datasets()] == ["pets"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stderr is not None:
            proc.stderr.close()


def test_gate_serve_refuses_a_broken_configuration(tmp_path: Path) -> None:
    bad_policy = tmp_path / "policies" / "bad.yaml"
    bad_policy.parent.mkdir()
    bad_policy.write_text("version: 1\nname: bad\nrules: []\n")
    write_pets(tmp_path)
    f = tmp_path / "gate.yaml"
    f.write_text("listen: 127.0.0.1:0\ndata_dir: data\ndatasets: [datasets]\npolicies: [policies]\n")
    run = subprocess.run(
        [sys.executable, "-m", "gate", "serve", "--config", str(f)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "the server's datasets and policies did not load" in run.stderr
    assert "the rule list is empty" in run.stderr


def test_store_replica_and_models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GATE_STORE", "GATE_REPLICA_ID", "GATE_MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)
    f = tmp_path / "gate.yaml"
    f.write_text("data_dir: data\n")
    c = load_config(f)
    assert c.store is None and c.store_target == str(tmp_path / "data" / "audit.sqlite3")
    assert c.model_dir == tmp_path / "data" / "models"
    assert c.replica_id is None and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:@-]*", c.replica)

    f.write_text("data_dir: data\nstore: audit/gate.db\nmodels_dir: shared\nreplica_id: gate-0\n")
    c = load_config(f)
    assert c.store_target == str(tmp_path / "audit" / "gate.db")  # relative to the file, like other paths
    assert (c.model_dir, c.replica) == (tmp_path / "shared", "gate-0")
    for store in ("sqlite:///srv/gate/audit.db", "postgresql://gate:pw@db:5432/gate", " "):
        f.write_text(f"store: '{store}'\n")
        assert load_config(f).store == (store if store.strip() else None)

    # on Kubernetes the URL comes from a Secret through the environment, the id from the pod's name
    monkeypatch.setenv("GATE_STORE", "postgresql://gate:from-a-secret@db:5432/gate")
    monkeypatch.setenv("GATE_REPLICA_ID", "gate-7d9f-x2")
    monkeypatch.setenv("GATE_MODELS_DIR", "/var/lib/gate-models")
    c = load_config(f)
    assert c.store_target == "postgresql://gate:from-a-secret@db:5432/gate"
    assert (c.replica, c.model_dir) == ("gate-7d9f-x2", Path("/var/lib/gate-models"))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("store: mysql://root:hunter2@db/gate\n", "unknown scheme 'mysql'"),
        ("store: 'sqlite://'\n", "names no file"),
        ("replica_id: two words\n", "replica id 'two words' is not valid"),
    ],
)
def test_invalid_store_settings_are_refused_without_the_password(tmp_path: Path, text: str, problem: str) -> None:
    f = tmp_path / "gate.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert problem in exc.value.message and "hunter2" not in exc.value.message


def test_engine_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "gate.yaml"
    f.write_text("engine: spark\n")
    with pytest.raises(ConfigError, match="engine: Input should be 'local' or 'ray'"):
        load_config(f)
    f.write_text("engine: ray\n")
    assert (load_config(f).engine, load_config(f).ray_address) == ("ray", None)
    assert load_config(None).engine == "local"
    monkeypatch.setenv("GATE_RAY_ADDRESS", "ray://ray-head.gate.svc:10001")
    assert load_config(f).ray_address == "ray://ray-head.gate.svc:10001"
    monkeypatch.setenv("GATE_ENGINE", "local")
    assert load_config(f).engine == "local"
