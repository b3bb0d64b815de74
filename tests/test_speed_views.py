"""The engine reads an .npz set's batches as read-only views of its array, not copies (a
copy of the whole set is a measurable part of a small model's evaluation), while a
caller's batches stay writable copies of its own; float64 tensors still become float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from gate.cache import Caches
from gate.datasets import load_dataset
from gate.engines.base import ModelInput, RunOptions
from gate.engines.local import LocalEngine
from tests.models import linear_softmax_model


def _npz(path: Path, dtype: type = np.float32) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((40, 1, 4, 4)).astype(dtype), y=rng.integers(0, 3, 40), classes=["a", "b", "c"])
    return path


def test_the_engine_reads_views_and_a_caller_gets_copies(tmp_path: Path) -> None:
    ds = load_dataset(_npz(tmp_path / "set.npz"))
    views = list(ds.input_batches(16))
    assert [len(v) for v in views] == [16, 16, 8]
    assert all(v.base is not None and not v.flags.writeable for v in views)
    with pytest.raises(ValueError, match="read-only"):
        views[0][0, 0, 0, 0] = 1.0
    (batch,) = list(ds.batches(40))
    assert batch.flags.writeable and not any(np.shares_memory(batch, v) for v in views)
    np.testing.assert_array_equal(np.concatenate(views), batch)
    batch[:] = 0  # a caller's copy: the set is untouched
    assert np.concatenate(list(ds.input_batches(40))).any()


def test_float64_tensors_still_go_to_the_model_as_float32_copies(tmp_path: Path) -> None:
    ds = load_dataset(_npz(tmp_path / "set.npz", np.float64))
    views = list(ds.input_batches(16))
    assert all(v.dtype == np.float32 and v.flags.writeable for v in views)


def test_the_engine_predicts_from_the_views_what_the_model_gives_the_copies(tmp_path: Path) -> None:
    ds = load_dataset(_npz(tmp_path / "set.npz"))
    rng = np.random.default_rng(1)
    model = linear_softmax_model(
        rng.standard_normal((16, 3)).astype(np.float32), np.zeros(3, np.float32), input_shape=["N", 1, 4, 4]
    )
    given = ModelInput(model, "0" * 64, "m.onnx")
    table = LocalEngine().run(given, ds, RunOptions("cpu", 16, None, Caches())).table
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (scores,) = session.run(None, {session.get_inputs()[0].name: np.concatenate(list(ds.batches(40)))})
    np.testing.assert_array_equal(table.predicted, scores.argmax(axis=1))
    np.testing.assert_allclose(table.confidence, scores.max(axis=1), rtol=1e-6)
