"""A local Ray cluster started by the engine itself, shared by concurrent evaluations.

Kept apart from tests/test_ray_engine.py: that module's cluster is stopped when its
tests end, so this one starts on a machine with no other Ray cluster running.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray", reason="the Ray engine is an optional extra: pip install 'gate[ray]'")

from tests.models import predictions_for

ROOT = Path(__file__).resolve().parent.parent
PETS = ["cat", "dog", "rabbit"]
PETS_CM = [[100, 4, 6], [8, 90, 2], [4, 6, 80]]


def _pets(tmp: Path) -> None:
    x, y = predictions_for(PETS_CM)
    np.savez(tmp / "pets.npz", x=x, y=y, classes=np.array(PETS))


_CONCURRENT = """
import json, sys, threading
import ray
from gate.datasets import load_dataset
from gate.engines.ray import evaluate_sharded
from tests.models import lookup_model

ds, out = load_dataset(sys.argv[1]), {}

def run(name):
    result = evaluate_sharded(lookup_model(3), ds, provider="cpu", shard_size=100)
    out[name] = [result.runtime["address"], result.table.metrics().confusion.tolist()]

threads = [threading.Thread(target=run, args=(str(i),)) for i in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"runs": out, "connected_after": ray.is_initialized()}))
"""


def test_without_an_address_concurrent_evaluations_run_on_a_local_cluster_that_then_stops(tmp_path: Path) -> None:
    _pets(tmp_path)
    # a process of its own: no cluster there until the engine starts one
    proc = subprocess.run(
        [sys.executable, "-c", _CONCURRENT, str(tmp_path / "pets.npz")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["runs"] == {"0": ["local", PETS_CM], "1": ["local", PETS_CM]}
    assert report["connected_after"] is False  # the last evaluation stopped the cluster it started
