"""Every evaluation has a session cache: runs of the same model within it (the suites that
run the candidate again) share one ONNX Runtime session, even without caches."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from gate.cache import Caches
from gate.datasets import load_dataset
from gate.engines.base import ModelInput, RunOptions
from gate.engines.local import LocalEngine
from tests.models import linear_softmax_model


def test_runs_of_one_model_in_an_evaluation_share_its_session(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "set.npz"
    np.savez(data, x=rng.random((30, 1, 4, 4), dtype=np.float32), y=rng.integers(0, 3, 30), classes=["a", "b", "c"])
    model = linear_softmax_model(
        rng.normal(size=(16, 3)).astype(np.float32), np.zeros(3, np.float32), input_shape=["N", 1, 4, 4]
    )
    given = ModelInput(model, hashlib.sha256(model).hexdigest(), "m.onnx")
    ds = load_dataset(data)
    assert Caches().sessions is None
    caches = Caches().with_sessions()
    assert caches.with_sessions() is caches  # caches that have sessions keep theirs
    options = RunOptions("cpu", 8, None, caches)
    first, again = (LocalEngine().run(given, ds, options) for _ in range(2))
    assert (first.cache["session"], again.cache["session"]) == ("miss", "hit")
    assert np.array_equal(first.table.top_k_score, again.table.top_k_score)
    other = Caches().with_sessions()  # another evaluation: its own sessions
    assert LocalEngine().run(given, ds, RunOptions("cpu", 8, None, other)).cache["session"] == "miss"
