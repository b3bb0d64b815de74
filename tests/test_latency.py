"""``latency`` and ``memory`` rules: timings taken on dedicated sessions, the champion
timed interleaved with the challenger, and what one session holds measured in a process of
its own. No assertion here is about how fast this machine is: only ratios between models
doing known multiples of work, and that the figures are recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from gate.cli import main
from gate.evaluation import evaluate
from gate.verdict import Decision, Status
from tests.conftest import Served, write_pets
from tests.models import lookup_model, slow_lookup_model

#: width² multiply-adds per MatMul: enough that the graph, not the call, dominates the time
WIDTH = 512


def _policy(root: Path, *rules: str) -> Path:
    text = "version: 1\nname: budget\nrules:\n  - {id: accuracy, type: metric, metric: accuracy, min: 0.5}\n"
    path = root / "policy.yaml"
    path.write_text(text + "".join(f"  - {r}\n" for r in rules))
    return path


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, depth in (("champion", 4), ("challenger", 12)):  # the challenger does 3x the MatMuls
        out[name] = tmp_path / f"{name}.onnx"
        out[name].write_bytes(slow_lookup_model(3, width=WIDTH, depth=depth))
    return out


def test_a_challenger_doing_three_times_the_work_fails_max_vs_baseline(tmp_path: Path, models: dict[str, Path]) -> None:
    policy = _policy(tmp_path, "{id: p90, type: latency, batch: 1, percentile: 90, max_vs_baseline: 1.5}")
    verdict = evaluate(models["challenger"], write_pets(tmp_path), policy, baseline=models["champion"], provider="cpu")
    assert verdict.decision is Decision.FAIL, verdict.to_dict()
    rule = verdict.rules[1]
    assert rule.status is Status.FAIL and rule.details["ratio"] > 1.5
    assert "champion" in rule.message and "(interleaved): ratio" in rule.message and "> 1.500" in rule.message
    run = verdict.metrics["latency"]["p90"] if verdict.metrics else {}
    assert run["runs"] == 300 and run["warmup"] == 20 and run["threads"] == 1
    assert run["provider"] == "CPUExecutionProvider" and run["device"]
    assert f"{run['candidate_ms']['p90']:.3f} ms" in rule.message
    assert f"{run['champion_ms']['p90']:.3f} ms" in rule.message


def test_the_champion_against_itself_passes_ten_times_in_a_row(tmp_path: Path, models: dict[str, Path]) -> None:
    policy = _policy(tmp_path, "{id: p90, type: latency, batch: 1, percentile: 90, max_vs_baseline: 1.5}")
    spec = write_pets(tmp_path)
    for _ in range(10):
        verdict = evaluate(models["champion"], spec, policy, baseline=models["champion"], provider="cpu")
        assert verdict.decision is Decision.PASS, verdict.rules[1].message


def test_an_absolute_bound_and_a_throughput_batch_are_recorded(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(lookup_model(3))
    policy = _policy(
        tmp_path,
        "{id: single, type: latency, batch: 1, percentile: 50, max_ms: 60000}",
        "{id: bulk, type: latency, batch: 32, percentile: 99, max_ms: 60000, threads: 2}",
    )
    verdict = evaluate(tmp_path / "m.onnx", write_pets(tmp_path), policy, provider="cpu")
    assert verdict.decision is Decision.PASS, verdict.to_dict()
    latency = verdict.metrics["latency"] if verdict.metrics else {}
    assert (latency["single"]["batch"], latency["single"]["runs"]) == (1, 100)
    assert (latency["bulk"]["batch"], latency["bulk"]["runs"], latency["bulk"]["threads"]) == (32, 1000, 2)
    assert "champion_ms" not in latency["single"]


def test_max_vs_baseline_without_a_champion_is_refused_before_inference(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(lookup_model(3))
    policy = _policy(tmp_path, "{id: p90, type: latency, max_vs_baseline: 1.5}")
    verdict = evaluate(tmp_path / "m.onnx", write_pets(tmp_path), policy)
    assert verdict.decision is Decision.ERROR and verdict.error is not None
    assert "rule 'p90' (latency) needs a champion to time against" in verdict.error["message"]
    assert verdict.metrics is None


def test_memory_bounds_on_the_session_and_the_file(tmp_path: Path, models: dict[str, Path]) -> None:
    policy = _policy(tmp_path, "{id: memory, type: memory, max_rss_mb: 4000, max_size_mb: 0.5}")
    verdict = evaluate(models["champion"], write_pets(tmp_path), policy, provider="cpu")
    # the file holds a 512 x 512 float32 matrix: 1.05 MB > 0.5 MB
    assert verdict.decision is Decision.FAIL
    use = verdict.metrics["memory"]["memory"] if verdict.metrics else {}
    assert use["model_size_mb"] == pytest.approx(models["champion"].stat().st_size / 1e6, abs=1e-6)
    assert use["peak_rss_mb"] > 0 and use["provider"] == "CPUExecutionProvider"
    assert "model size 1.05" in verdict.rules[1].message and "> 0.500 MB" in verdict.rules[1].message


def test_gpu_memory_on_the_cpu_is_inconclusive_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(lookup_model(3))
    policy = _policy(tmp_path, "{id: memory, type: memory, max_gpu_mb: 1000}")
    verdict = evaluate(tmp_path / "m.onnx", write_pets(tmp_path), policy, provider="cpu")
    assert verdict.rules[1].status is Status.INCONCLUSIVE and verdict.decision is Decision.FAIL
    assert verdict.rules[1].message == "GPU memory not measured: the session ran on CPUExecutionProvider"


def test_deployment_rules_through_gate_check(
    tmp_path: Path, models: dict[str, Path], serve: Callable[..., Served], capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _policy(
        tmp_path,
        "{id: p90, type: latency, percentile: 90, max_vs_baseline: 1.5}",
        "{id: contract, type: model_contract, inputs: [{name: x, dtype: float32, shape: [N, 1]}]}",
        "{id: memory, type: memory, max_rss_mb: 4000}",
    )
    s = serve()
    argv = ["check", "--server", s.address, "--model", str(models["challenger"]), "--dataset", "pets"]
    argv += ["--policy-file", str(policy), "--baseline", str(models["champion"]), "--format", "json"]
    assert main(argv) == 1
    document = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in document["rules"]] == ["pass", "fail", "pass", "pass"]
    assert set(document["metrics"]["latency"]["p90"]) >= {"candidate_ms", "champion_ms", "threads", "device"}
    assert document["metrics"]["memory"]["memory"]["peak_rss_mb"] > 0
