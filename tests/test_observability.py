"""What operators and CI systems see: Prometheus metrics, JSON logs with the evaluation
id, `gate health`, the report directory, the CI job summary and the progress bar."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from gate.cli import main
from tests.conftest import ROOT, Served, write_pets
from tests.models import lookup_model, slow_lookup_model

DEFAULT_POLICY = ROOT / "policies" / "default.yaml"


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_metrics_endpoint_counts_evaluations(serve: Callable[..., Served]) -> None:
    s = serve(metrics_listen="127.0.0.1:0")
    assert s.server.metrics_port
    before = _scrape(s.server.metrics_port)
    assert before['gate_evaluations_total{verdict="PASS"}'] == 0
    with s.client() as c:
        sha = c.upload_model(lookup_model(3)).sha256
        c.evaluate(sha, "pets", policy_name="default")
        c.evaluate(
            sha,
            "pets",
            policy_yaml="version: 1\nname: s\nrules:\n  - {id: r, type: per_class, metric: recall, min: 0.9}\n",
        )
        c.evaluate(c.upload_model(lookup_model(4)).sha256, "pets", policy_name="default")  # ERROR: 4 classes
    after = _scrape(s.server.metrics_port)
    assert after['gate_evaluations_total{verdict="PASS"}'] == 1
    assert after['gate_evaluations_total{verdict="FAIL"}'] == 1
    assert after['gate_evaluations_total{verdict="ERROR"}'] == 1
    assert after["gate_evaluation_duration_seconds_count"] == 3
    assert after["gate_samples_total"] == 300  # two complete evaluations of 150
    assert after["gate_evaluation_samples_per_second"] > 0
    assert after["gate_evaluation_queue_depth"] == 0 and after["gate_evaluations_running"] == 0
    assert after["gate_model_store_bytes"] == sum(p.stat().st_size for p in (s.root / "data" / "models").iterdir())


def test_json_logs_carry_the_evaluation_id(tmp_path: Path) -> None:
    write_pets(tmp_path)
    config = tmp_path / "gate.yaml"
    config.write_text(f"data_dir: data\ndatasets: [datasets]\npolicies: [{ROOT / 'policies'}]\nlog_format: json\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gate", "serve", "--config", str(config), "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        lines = []
        while True:
            line = proc.stderr.readline()
            lines.append(json.loads(line))  # every line is one JSON object
            if "gate listening on" in line:
                break
        address = lines[-1]["message"].rsplit(" ", 1)[1]
        from gate.client import GateClient

        with GateClient(address, timeout=60) as c:
            while c.health() != "SERVING":
                pass
            evaluation = c.evaluate(c.upload_model(lookup_model(3)).sha256, "pets", policy_name="default")
        proc.terminate()
        proc.wait(timeout=30)
        records = [json.loads(line) for line in proc.stderr.read().splitlines() if line.strip()]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    mine = [r for r in records if r.get("evaluation_id") == evaluation.evaluation_id]
    assert any(r["message"].endswith(": PASS") and r["level"] == "info" for r in mine)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)


def test_gate_health(serve: Callable[..., Served], capsys: pytest.CaptureFixture[str]) -> None:
    s = serve()
    assert main(["health", "--server", s.address]) == 0
    assert capsys.readouterr().out == "SERVING\n"
    s.server.stop(grace=None)
    assert main(["health", "--server", s.address, "--timeout", "2"]) == 1


def test_report_dir_and_job_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_pets(tmp_path)
    model = tmp_path / "m.onnx"
    model.write_bytes(lookup_model(3))
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    reports = tmp_path / "reports"
    code = main(
        [
            "eval",
            "--model",
            str(model),
            "--dataset",
            str(spec),
            "--policy",
            str(DEFAULT_POLICY),
            "--report-dir",
            str(reports),
            "--format",
            "json",
            "--provider",
            "cpu",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert sorted(p.name for p in reports.iterdir()) == ["junit.xml", "report.html", "report.md", "verdict.json"]
    assert json.loads((reports / "verdict.json").read_text()) == json.loads(out)
    assert summary.read_text().startswith("earlier step\n")
    assert (reports / "report.md").read_text() in summary.read_text()


def test_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    spec = write_pets(tmp_path, repeat=20)
    model = tmp_path / "slow.onnx"
    model.write_bytes(slow_lookup_model(3))
    argv = [
        sys.executable,
        "-m",
        "gate",
        "eval",
        "--model",
        str(model),
        "--dataset",
        str(spec),
        "--policy",
        str(DEFAULT_POLICY),
        "--batch-size",
        "16",
        "--provider",
        "cpu",
        "--no-cache",
    ]
    env = {**os.environ, "GATE_CACHE_DIR": str(tmp_path / "cache")}

    def stderr_on_tty(*extra: str) -> str:
        controller, terminal = pty.openpty()
        proc = subprocess.Popen([*argv, *extra], stdout=subprocess.DEVNULL, stderr=terminal, env=env)
        os.close(terminal)
        chunks = []
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=120)
        os.close(controller)
        return b"".join(chunks).decode()

    shown = stderr_on_tty()
    assert "gate: [" in shown and "3000/3000 samples" in shown
    assert "gate: [" not in stderr_on_tty("--quiet")
    piped = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert piped.returncode == 0 and "gate: [" not in piped.stderr
