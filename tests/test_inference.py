"""ONNX Runtime inference: providers, batching, and every broken-model case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gate.errors import ModelError, ProviderError
from gate.inference import check_compatible, cuda_runs, load_model, predict
from gate.providers import CPU, CUDA
from tests.models import linear_softmax_model, lookup_model, rank3_output_model, two_input_model


def _batches(x: np.ndarray, size: int) -> list[np.ndarray]:
    return [x[i : i + size] for i in range(0, len(x), size)]


def _run(model_bytes: bytes, x: np.ndarray, k: int, *, batch: int = 4, provider: str = "cpu") -> np.ndarray:
    m = load_model(model_bytes, provider=provider)  # type: ignore[arg-type]
    return predict(m, _batches(x, m.fixed_batch or batch), n_classes=k, total=len(x)).labels


X = np.array([[2], [0], [1], [1], [2], [0], [2]], dtype=np.float32)


def test_cpu_provider_reports_what_ran() -> None:
    m = load_model(lookup_model(3), provider="cpu")
    assert m.provider == CPU and m.session.get_providers() == [CPU]
    assert m.runtime()["provider"] == CPU


def test_auto_reports_the_provider_that_actually_ran() -> None:
    m = load_model(lookup_model(3), provider="auto")
    assert m.provider == m.session.get_providers()[0]
    assert m.provider == (CUDA if cuda_runs() else CPU)


def test_cuda_refuses_to_fall_back_when_it_cannot_run() -> None:
    if cuda_runs():
        pytest.skip("CUDA runs here")
    with pytest.raises(ProviderError, match="provider 'cuda' requested"):
        load_model(lookup_model(3), provider="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("io_binding", [True, False])
def test_cuda_provider_runs_and_agrees_with_cpu(io_binding: bool) -> None:
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(64, 10)).astype(np.float32), rng.normal(size=10).astype(np.float32)
    model = linear_softmax_model(w, b, input_shape=["N", 1, 8, 8])
    x = rng.random((1000, 1, 8, 8), dtype=np.float32)
    m = load_model(model, provider="cuda")
    assert m.provider == CUDA and m.runtime()["device"]
    seen: list[int] = []
    gpu = predict(
        m, _batches(x, 128), n_classes=10, total=len(x), io_binding=io_binding, progress=lambda d, t: seen.append(d)
    )
    cpu = _run(model, x, 10, batch=128)
    assert (gpu.labels == cpu).mean() >= 0.999  # float reductions may differ in the last bit
    assert seen[-1] == 1000 and len(seen) == 8
    on_cpu = predict(load_model(model, provider="cpu"), _batches(x, 128), n_classes=10, total=len(x))
    assert np.allclose(gpu.confidence, on_cpu.confidence, atol=1e-5)


@pytest.mark.gpu
def test_cuda_calibration_and_champion_comparison_match_cpu(tmp_path: Path) -> None:
    from gate.evaluation import evaluate
    from gate.policy import parse_policy

    rng = np.random.default_rng(1)
    x = rng.random((2000, 1, 8, 8), dtype=np.float32)
    w_true = rng.normal(size=(64, 4)).astype(np.float32)
    y = np.argmax(x.reshape(2000, 64) @ w_true, axis=1)
    data = tmp_path / "set.npz"
    np.savez(data, x=x, y=y, classes=np.array(["a", "b", "c", "d"]))
    shape: list[int | str] = ["N", 1, 8, 8]
    candidate = linear_softmax_model(
        w_true + rng.normal(scale=0.5, size=(64, 4)).astype(np.float32), np.zeros(4, np.float32), input_shape=shape
    )
    champion = linear_softmax_model(w_true, np.zeros(4, np.float32), input_shape=shape)
    policy = parse_policy(
        "version: 1\nname: t\nrules:\n  - {id: cal, type: metric, metric: ece, max: 1.0}\n"
        "  - {id: champ, type: baseline, metric: accuracy, max_drop: 0.0, test: mcnemar}\n"
    )
    runs = {
        provider: evaluate(candidate, data, policy, provider=provider, baseline=champion)  # type: ignore[arg-type]
        for provider in ("cuda", "cpu")
    }
    gpu, cpu = runs["cuda"], runs["cpu"]
    assert gpu.error is None and cpu.error is None
    assert gpu.runtime["provider"] == CUDA and cpu.runtime["provider"] == CPU
    assert gpu.metrics is not None and cpu.metrics is not None
    assert gpu.metrics["confusion_matrix"] == cpu.metrics["confusion_matrix"]
    assert gpu.metrics["ece"] == pytest.approx(cpu.metrics["ece"], abs=1e-5)
    assert gpu.baseline is not None and cpu.baseline is not None
    assert gpu.baseline["comparison"] == cpu.baseline["comparison"]
    assert [r.status for r in gpu.rules] == [r.status for r in cpu.rules]


@pytest.mark.gpu
def test_cuda_fixed_batch_and_nan_checks() -> None:
    m = load_model(lookup_model(3, batch=4, nan_below_zero=True), provider="cuda")
    assert predict(m, _batches(X, 3), n_classes=3, total=7).labels.tolist() == [2, 0, 1, 1, 2, 0, 2]
    bad = X.copy()
    bad[5, 0] = -1.0
    with pytest.raises(ModelError, match=r"output holds NaN for sample #5"):
        predict(m, _batches(bad, 4), n_classes=3, total=7)


@pytest.mark.parametrize("probabilities", [False, True])
@pytest.mark.parametrize("batch", ["N", 1, 4])
def test_logits_probabilities_and_fixed_batches(probabilities: bool, batch: int | str) -> None:
    labels = _run(lookup_model(3, batch=batch, probabilities=probabilities), X, 3, batch=3)
    assert labels.tolist() == [2, 0, 1, 1, 2, 0, 2]


def test_progress_is_reported_per_batch() -> None:
    seen: list[tuple[int, int]] = []
    m = load_model(lookup_model(3), provider="cpu")
    predict(m, _batches(X, 3), n_classes=3, total=7, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(3, 7), (6, 7), (7, 7)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"\x08\x07garbage that is not a protobuf", "cannot load model m.onnx"),
        (lookup_model(3)[:-20], "cannot load model m.onnx"),
        (two_input_model(3), "has 2 inputs ('a', 'b'); gate needs exactly one image input"),
        (rank3_output_model(3), "output 'scores' has rank 3 (shape ['N', 3, 1]); gate needs (N, K) scores"),
    ],
)
def test_broken_models_are_model_errors(data: bytes, message: str) -> None:
    with pytest.raises(ModelError, match=None) as exc:
        load_model(data, provider="cpu", source="m.onnx")
    assert message in str(exc.value)


def test_wrong_number_of_classes() -> None:
    m = load_model(lookup_model(4), provider="cpu", source="m.onnx")
    with pytest.raises(ModelError, match=r"model m.onnx outputs 4 classes; the dataset has 3 \(cat, dog, rabbit\)"):
        check_compatible(m, ["cat", "dog", "rabbit"], (1,))


def test_metadata_classes_must_match_the_dataset() -> None:
    m = load_model(lookup_model(3, classes=["cat", "rabbit", "dog"]), provider="cpu", source="m.onnx")
    assert m.classes == ["cat", "rabbit", "dog"]
    with pytest.raises(ModelError, match="metadata classes"):
        check_compatible(m, ["cat", "dog", "rabbit"], (1,))
    check_compatible(m, ["cat", "rabbit", "dog"], (1,))


def test_input_shape_mismatch_names_both_shapes() -> None:
    m = load_model(
        linear_softmax_model(np.zeros((64, 2), np.float32), np.zeros(2, np.float32), input_shape=["N", 1, 8, 8]),
        provider="cpu",
        source="m.onnx",
    )
    with pytest.raises(
        ModelError, match=r"expects shape \['N', 1, 8, 8\]; the dataset's samples have shape \[3, 8, 8\]"
    ):
        check_compatible(m, ["a", "b"], (3, 8, 8))


def test_nan_output_names_the_sample() -> None:
    x = X.copy()
    x[5, 0] = -1.0  # this sample's scores become NaN
    m = load_model(lookup_model(3, nan_below_zero=True), provider="cpu", source="m.onnx")
    ids = [f"img{i}.png" for i in range(len(x))]
    with pytest.raises(ModelError, match=r"output holds NaN for sample img5.png \(index 5\)"):
        predict(m, _batches(x, 4), n_classes=3, total=len(x), sample_ids=ids)


def test_runtime_failure_is_a_model_error() -> None:
    m = load_model(lookup_model(3), provider="cpu", source="m.onnx")
    with pytest.raises(ModelError, match=r"model m\.onnx failed on samples 0\.\.1"):
        predict(m, [np.zeros((2, 5), np.float32)], n_classes=3, total=2)


def test_unknown_provider_is_refused() -> None:
    with pytest.raises(ProviderError, match="provider='tpu' is not valid"):
        load_model(lookup_model(3), provider="tpu")  # type: ignore[arg-type]
