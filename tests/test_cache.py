"""The caches: hit when nothing changed, rebuilt when anything did, never wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gate.cache import Caches
from gate.cli import main
from gate.datasets import TensorCache, TensorCacheUse, load_dataset
from gate.evaluation import evaluate
from gate.inference import auto_batch_size
from gate.policy import parse_policy
from tests.conftest import ROOT
from tests.models import linear_softmax_model

POLICY = parse_policy("version: 1\nname: p\nrules:\n  - {id: acc, type: metric, metric: accuracy, min: 0.01}\n")
OTHER = parse_policy("version: 1\nname: q\nrules:\n  - {id: r, type: per_class, metric: recall, min: 0.99}\n")


def _images(root: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / "imgs" / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(root / "imgs" / c / f"{i}.png")
    spec = root / "set.yaml"
    spec.write_text(
        "name: s\nsource: imgs\npreprocess: {resize: 8, crop: 8, mean: [0.5, 0.4, 0.3], std: [0.2, 0.3, 0.4]}\n"
    )
    return spec


def _model(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return linear_softmax_model(
        rng.normal(size=(192, 2)).astype(np.float32), np.zeros(2, np.float32), input_shape=["N", 3, 8, 8]
    )


def test_cached_tensors_equal_decoded_ones_bit_for_bit(tmp_path: Path) -> None:
    ds = load_dataset(_images(tmp_path))
    cache = TensorCache(tmp_path / "cache")
    fresh = np.concatenate(list(ds.batches(5)))
    first, second = TensorCacheUse(), TensorCacheUse()
    built = np.concatenate(list(cache.batches(ds, 7, first)))
    read = np.concatenate(list(cache.batches(ds, 3, second)))
    assert (first.status, second.status) == ("built", "hit")
    assert fresh.dtype == np.float32 and fresh.shape == (24, 3, 8, 8)
    assert np.array_equal(fresh, built) and np.array_equal(fresh, read)
    # one version directory, holding the entry and the components of its version
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [cache.version.tag]
    assert sorted(p.name for p in cache.path_for(ds).parent.iterdir()) == ["VERSION.json", f"{ds.sha256}.npy"]


def test_an_abandoned_build_leaves_nothing(tmp_path: Path) -> None:
    ds = load_dataset(_images(tmp_path))
    cache = TensorCache(tmp_path / "cache")
    batches = cache.batches(ds, 4, TensorCacheUse())
    next(batches)
    batches.close()  # the evaluation stopped after one batch
    assert [p for p in (tmp_path / "cache").rglob("*") if not p.is_dir()] == []


def test_a_truncated_entry_is_rebuilt(tmp_path: Path) -> None:
    ds = load_dataset(_images(tmp_path))
    cache = TensorCache(tmp_path / "cache")
    list(cache.batches(ds, 4, TensorCacheUse()))
    path = cache.path_for(ds)
    path.write_bytes(path.read_bytes()[:-10])
    use = TensorCacheUse()
    again = np.concatenate(list(cache.batches(ds, 4, use)))
    assert use.status == "built" and np.array_equal(again, np.concatenate(list(ds.batches(4))))


def _runtime(v: Any) -> dict[str, Any]:
    """What each cache gave (the versions of the caches in use aside)."""
    return {k: s for k, s in v.runtime.get("cache", {}).items() if k != "versions"}


def test_evaluations_reuse_and_invalidate(tmp_path: Path) -> None:
    spec = _images(tmp_path)
    caches = Caches.at(tmp_path / "cache")
    m1, m2 = _model(1), _model(2)

    cold = evaluate(m1, spec, POLICY, provider="cpu", caches=caches)
    assert _runtime(cold) == {"session": "miss", "tensors": "built", "results": "miss"}
    # another model on the same set: decoding is skipped
    other_model = evaluate(m2, spec, POLICY, provider="cpu", caches=caches)
    assert _runtime(other_model) == {"session": "miss", "tensors": "hit", "results": "miss"}
    # the first model again under another policy: inference is skipped
    regate = evaluate(m1, spec, OTHER, provider="cpu", caches=caches)
    assert _runtime(regate) == {"results": "hit"}
    assert regate.metrics == cold.metrics and regate.policy["name"] == "q"
    uncached = evaluate(m1, spec, OTHER, provider="cpu")
    assert uncached.metrics == cold.metrics and [r.to_dict() for r in uncached.rules] == [
        r.to_dict() for r in regate.rules
    ]

    # a changed image file: a new dataset hash, so nothing is reused
    first = sorted((tmp_path / "imgs" / "a").iterdir())[0]
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(first)
    changed = evaluate(m1, spec, POLICY, provider="cpu", caches=caches)
    assert changed.dataset["sha256"] != cold.dataset["sha256"]
    assert _runtime(changed) == {"session": "hit", "tensors": "built", "results": "miss"}
    # a changed preprocessing spec: the same
    spec.write_text(spec.read_text().replace("std: [0.2, 0.3, 0.4]", "std: [0.25, 0.3, 0.4]"))
    respec = evaluate(m1, spec, POLICY, provider="cpu", caches=caches)
    assert _runtime(respec) == {"session": "hit", "tensors": "built", "results": "miss"}


def test_a_corrupt_result_entry_is_ignored(tmp_path: Path) -> None:
    spec = _images(tmp_path)
    caches = Caches.at(tmp_path / "cache")
    cold = evaluate(_model(1), spec, POLICY, provider="cpu", caches=caches)
    for entry in (tmp_path / "cache" / "results").glob("*/*.npz"):
        entry.write_bytes(b"garbage")
    again = evaluate(_model(1), spec, POLICY, provider="cpu", caches=caches)
    assert _runtime(again)["results"] == "miss" and again.metrics == cold.metrics


def test_gate_eval_cache_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _images(tmp_path)
    model = tmp_path / "m.onnx"
    model.write_bytes(_model(1))
    policy = ROOT / "policies" / "default.yaml"
    argv = ["eval", "--model", str(model), "--dataset", str(spec), "--policy", str(policy), "--format", "json"]
    main([*argv, "--cache-dir", str(tmp_path / "c")])
    main([*argv, "--cache-dir", str(tmp_path / "c")])
    main([*argv, "--no-cache"])
    docs = [json.loads(d) for d in capsys.readouterr().out.replace("}\n{", "}\n\x00{").split("\x00")]
    assert [d["runtime"].get("cache", {}).get("results") for d in docs] == ["miss", "hit", None]
    assert docs[0]["metrics"] == docs[1]["metrics"] == docs[2]["metrics"]


@pytest.mark.parametrize(("shape", "size"), [((3, 224, 224), 32), ((1, 8, 8), 512), ((3, 512, 512), 8), ((1,), 512)])
def test_batch_size_is_chosen_per_model_input(shape: tuple[int, ...], size: int) -> None:
    assert auto_batch_size(shape) == size


def test_digest_cache_skips_unchanged_files_and_notices_changes(tmp_path: Path) -> None:
    spec = _images(tmp_path)
    digests = tmp_path / "digests"
    cold = load_dataset(spec, digest_cache=digests)
    assert len(list(digests.iterdir())) == 1
    warm = load_dataset(spec, digest_cache=digests)
    assert warm.sha256 == cold.sha256 == load_dataset(spec).sha256
    # a rewritten file has a new signature: it is read again and the hash follows
    first = sorted((tmp_path / "imgs" / "b").iterdir())[0]
    Image.fromarray(np.full((10, 12, 3), 7, np.uint8)).save(first)
    changed = load_dataset(spec, digest_cache=digests)
    assert changed.sha256 != cold.sha256 and changed.sha256 == load_dataset(spec).sha256
