"""ONNX Runtime inference: providers, batching, and every broken-model case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

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


def _identity_output(output: onnx.ValueInfoProto, nodes: list[onnx.NodeProto], domains: dict[str, int]) -> bytes:
    """x (N, 3) in, ``nodes`` making ``output``: a model whose output is what ``output`` declares."""
    graph = helper.make_graph(
        nodes, "gate-test", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])], [output]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in domains.items()])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_a_zipmap_output_is_named_for_what_it_is() -> None:
    """scikit-learn classifiers converted with their default ZipMap answer one map per sample."""
    maps = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, []))
    )
    zipmap = helper.make_node("ZipMap", ["x"], ["probabilities"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2])
    data = _identity_output(helper.make_value_info("probabilities", maps), [zipmap], {"": 17, "ai.onnx.ml": 1})
    with pytest.raises(ModelError) as caught:
        load_model(data, provider="cpu", source="sk.onnx")
    message = caught.value.message
    assert "model sk.onnx output 'probabilities' is a sequence of maps (seq(map(int64,tensor(float))))" in message
    assert "gate needs one (N, K) tensor of scores" in message and "zipmap" in message
    assert "rank 0" not in message


@pytest.mark.parametrize(("declared", "real"), [(["N"], [4, 3, 1]), ([], [4, 3, 1])])
def test_an_output_declared_unlike_its_real_shape_is_reported_by_its_real_shape(
    declared: list[int | str], real: list[int]
) -> None:
    axes = helper.make_node("Constant", [], ["axes"], value=numpy_helper.from_array(np.array([2], np.int64)))
    unsqueeze = helper.make_node("Unsqueeze", ["x", "axes"], ["scores"])
    data = _identity_output(
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, declared), [axes, unsqueeze], {"": 17}
    )
    m = load_model(data, provider="cpu", source="m.onnx")  # ONNX Runtime itself cannot tell the shape
    with pytest.raises(ModelError) as caught:
        predict(m, [np.zeros((4, 3), np.float32)], n_classes=3, total=4)
    message = caught.value.message
    assert f"model m.onnx output 'scores' has shape {real} for a batch of 4" in message
    assert "gate needs (N, K) scores" in message and "rank 0" not in message


def test_an_output_declared_wrongly_but_really_n_by_k_is_judged_by_what_it_returns() -> None:
    data = _identity_output(
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N"]),
        [helper.make_node("Identity", ["x"], ["scores"])],
        {"": 17},
    )
    m = load_model(data, provider="cpu", source="m.onnx")
    preds = predict(m, [np.float32([[0.0, 2.0, 1.0], [5.0, 0.0, 0.0]])], n_classes=3, total=2)
    assert preds.labels.tolist() == [1, 0] and preds.top_classes.tolist() == [[1, 2, 0], [0, 1, 2]]


def test_two_outputs_say_what_each_is() -> None:
    label = helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0)
    copy = helper.make_node("Identity", ["x"], ["scores"])
    graph = helper.make_graph(
        [label, copy],
        "gate-test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    with pytest.raises(
        ModelError, match=r"has 2 outputs \('label' \(a tensor\(int64\)\), 'scores' \(a tensor\(float\)\)\)"
    ):
        load_model(model.SerializeToString(), provider="cpu", source="m.onnx")
