"""Normalisation in the model's graph (gate.preprocess_graph): the same model input as the
host's normalisation to the bit, the same predictions through the local engine, with and
without the tensor cache; models that cannot take it keep the host's. The CUDA path
itself is checked by the `gpu` tests at the end, on a machine where CUDA runs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, load_model_from_string
from PIL import Image

from gate.cache import Caches
from gate.datasets import load_dataset
from gate.datasets.images import normalise
from gate.datasets.spec import Preprocess
from gate.engines.base import EngineResult, ModelInput, RunOptions
from gate.engines.local import LocalEngine, Normalisation
from gate.preprocess_graph import PIXELS_INPUT, NotComposable, with_normalisation
from gate.providers import CUDA
from tests.models import linear_softmax_model

PREPROCESSING = [
    {},
    {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    {"channels": "BGR", "mean": [0.5], "std": [0.25]},
    {"layout": "NHWC", "scale": 127.5, "mean": [1.0], "std": [1.0]},
    {"channels": "L", "mean": [0.1], "std": [0.3], "scale": 1.0},
    {"channels": "BGR", "layout": "NHWC", "mean": [0.3, 0.2, 0.1], "std": [0.5, 0.6, 0.7]},
]


def _identity(shape: list[int | str], *, elem: int = TensorProto.FLOAT, opset: int = 17) -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", elem, shape)],
        [helper.make_tensor_value_info("y", elem, shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize(
    "settings", PREPROCESSING, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default"
)
def test_the_graph_gives_the_hosts_model_input_to_the_bit(settings: dict[str, Any]) -> None:
    preprocess = Preprocess(**settings)
    channels = 1 if preprocess.channels == "L" else 3
    nchw = preprocess.layout == "NCHW"
    shape: list[int | str] = ["N", channels, 16, 16] if nchw else ["N", 16, 16, channels]
    session = ort.InferenceSession(
        with_normalisation(_identity(shape), preprocess, "x"), providers=["CPUExecutionProvider"]
    )
    # every 8-bit value in every channel, and random ones
    pixels = np.random.default_rng(0).integers(0, 256, (6, 16, 16, channels), dtype=np.uint8)
    pixels[0].reshape(-1, channels)[:] = np.arange(256, dtype=np.uint8)[:, None]
    (on_graph,) = session.run(None, {PIXELS_INPUT: pixels})
    on_host = normalise(pixels, preprocess)
    assert on_graph.dtype == on_host.dtype == np.float32
    assert on_graph.shape == on_host.shape
    assert np.array_equal(on_graph.view(np.uint32), on_host.view(np.uint32))


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (_identity(["N", 3, 4, 4], elem=TensorProto.UINT8), "is not float32"),
        (_identity(["N", 3, 4, 4], opset=12), "opset 12 predates 13"),
    ],
)
def test_models_that_cannot_take_it_are_named(model: bytes, reason: str) -> None:
    with pytest.raises(NotComposable, match=reason):
        with_normalisation(model, Preprocess(), "x")
    with pytest.raises(NotComposable, match="no graph input 'image'"):
        with_normalisation(_identity(["N", 3, 4, 4]), Preprocess(), "image")


def _image_set(root: Path, preprocess: str) -> Path:
    rng = np.random.default_rng(3)
    for c in ("a", "b", "c"):
        (root / "imgs" / c).mkdir(parents=True, exist_ok=True)
        for i in range(11):
            Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(root / "imgs" / c / f"{i}.png")
    spec = root / "set.yaml"
    spec.write_text(f"name: s\nsource: imgs\npreprocess: {{resize: 8, crop: 8, {preprocess}}}\n")
    return spec


def _run(model: bytes, spec: Path, normalisation: Normalisation, caches: Caches, batch: int | None = 4) -> EngineResult:
    ds = load_dataset(spec)
    given = ModelInput(model, hashlib.sha256(model).hexdigest(), "m.onnx")
    return LocalEngine(normalisation=normalisation).run(given, ds, RunOptions("cpu", batch, None, caches))


def _same_predictions(a: EngineResult, b: EngineResult) -> None:
    for column in ("predicted", "confidence", "top_k_class", "top_k_score"):
        assert np.array_equal(getattr(a.table, column), getattr(b.table, column)), column


@pytest.mark.parametrize("preprocess", ["mean: [0.5, 0.4, 0.3], std: [0.2, 0.3, 0.4]", "channels: BGR, layout: NHWC"])
def test_the_local_engine_predicts_the_same_with_the_graphs_normalisation(tmp_path: Path, preprocess: str) -> None:
    spec = _image_set(tmp_path, preprocess)
    shape: list[int | str] = ["N", 8, 8, 3] if "NHWC" in preprocess else ["N", 3, 8, 8]
    weights = np.random.default_rng(1).normal(size=(192, 3)).astype(np.float32)
    model = linear_softmax_model(weights, np.zeros(3, np.float32), input_shape=shape)
    host = _run(model, spec, "host", Caches())
    assert "normalisation" not in host.runtime
    without_cache = _run(model, spec, "graph", Caches())
    caches = Caches.at(tmp_path / "cache")
    built, hit = (_run(model, spec, "graph", caches, batch=b) for b in (5, 7))
    assert [r.runtime["normalisation"] for r in (without_cache, built, hit)] == ["graph"] * 3
    assert (built.cache["tensors"], hit.cache["tensors"], hit.cache["session"]) == ("built", "hit", "hit")
    for run in (without_cache, built, hit):
        _same_predictions(run, host)
    # the composed session is cached beside the model's own, not instead of it
    assert _run(model, spec, "host", caches).cache["session"] == "hit"


def test_a_fixed_batch_model_keeps_its_batch_with_the_graphs_normalisation(tmp_path: Path) -> None:
    spec = _image_set(tmp_path, "scale: 1.0")
    weights = np.random.default_rng(5).normal(size=(192, 3)).astype(np.float32)
    model = linear_softmax_model(weights, np.zeros(3, np.float32), input_shape=[4, 3, 8, 8])
    graph = _run(model, spec, "graph", Caches(), batch=None)
    assert graph.runtime["batch_size"] == 4 and graph.runtime["normalisation"] == "graph"
    _same_predictions(graph, _run(model, spec, "host", Caches(), batch=None))


def test_a_model_that_cannot_take_it_runs_with_the_hosts_normalisation(tmp_path: Path) -> None:
    spec = _image_set(tmp_path, "scale: 1.0")
    weights = np.random.default_rng(2).normal(size=(192, 3)).astype(np.float32)
    model = linear_softmax_model(weights, np.zeros(3, np.float32), input_shape=["N", 3, 8, 8])
    old = load_model_from_string(model)  # the same graph declared at opset 12, before the operators used
    old.opset_import[0].version = 12
    result = _run(old.SerializeToString(), spec, "graph", Caches())
    assert result.runtime["normalisation"] == "host (the model's opset 12 predates 13)"
    _same_predictions(result, _run(model, spec, "host", Caches()))


@pytest.mark.gpu
@pytest.mark.parametrize("cached", [False, True])
def test_cuda_normalises_in_the_graph_and_agrees_with_the_cpu(tmp_path: Path, cached: bool) -> None:
    from gate.inference import cuda_runs

    if not cuda_runs():
        pytest.skip("CUDA cannot run here")
    spec = _image_set(tmp_path, "mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]")
    weights = np.random.default_rng(4).normal(size=(192, 3)).astype(np.float32)
    model = linear_softmax_model(weights, np.zeros(3, np.float32), input_shape=["N", 3, 8, 8])
    caches = Caches.at(tmp_path / "cache") if cached else Caches()
    ds = load_dataset(spec)
    given = ModelInput(model, hashlib.sha256(model).hexdigest(), "m.onnx")
    for _ in range(2 if cached else 1):  # cached: the tensor cache is built, then read
        gpu = LocalEngine().run(given, ds, RunOptions("cuda", 8, None, caches))
    assert gpu.runtime["provider"] == CUDA and gpu.runtime["normalisation"] == "graph" and gpu.runtime["io_binding"]
    cpu = _run(model, spec, "host", Caches(), batch=8)
    assert np.array_equal(gpu.table.predicted, cpu.table.predicted)
    assert np.allclose(gpu.table.confidence, cpu.table.confidence, atol=1e-5)


def test_a_corrupted_view_is_normalised_in_the_graph_as_on_the_host(tmp_path: Path) -> None:
    """The robustness suite's corrupted samples reach a model that normalises its own
    input as 8-bit pixels: the same predictions as normalised on the host."""
    from gate.corruptions.names import AVAILABLE
    from gate.corruptions.suite import Cell, Suite, corrupted_view

    spec = _image_set(tmp_path, "mean: [0.5, 0.4, 0.3], std: [0.2, 0.3, 0.4]")
    weights = np.random.default_rng(6).normal(size=(192, 3)).astype(np.float32)
    model = linear_softmax_model(weights, np.zeros(3, np.float32), input_shape=["N", 3, 8, 8])
    view = corrupted_view(load_dataset(spec), Suite((Cell(AVAILABLE[0], 3), Cell(AVAILABLE[-1], 5)), 7), None)
    given = ModelInput(model, hashlib.sha256(model).hexdigest(), "m.onnx")
    ways: tuple[Normalisation, ...] = ("host", "graph")
    runs = {way: LocalEngine(normalisation=way).run(given, view, RunOptions("cpu", 8, None, Caches())) for way in ways}
    assert runs["graph"].runtime["normalisation"] == "graph" and len(runs["graph"].table) == 2 * 33
    _same_predictions(runs["graph"], runs["host"])
