"""The Ray engine on a real local Ray cluster (2 CPUs, started once for the session):
sharded evaluation gives exactly the local engine's predictions table, metrics and
verdict, and a failure in any one shard fails the whole evaluation.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the ray extra (gate[ray]) is not installed")

from gate import demo  # noqa: E402
from gate.cli import main  # noqa: E402
from gate.datasets import Dataset, load_dataset  # noqa: E402
from gate.engines import ray as ray_engine  # noqa: E402
from gate.engines.base import prediction_table  # noqa: E402
from gate.engines.ray import ShardedResult, evaluate_sharded  # noqa: E402
from gate.errors import DatasetError, GateError, InternalError, ModelError, ProviderError, RequestError  # noqa: E402
from gate.evaluation import evaluate  # noqa: E402
from gate.inference import load_model, predict  # noqa: E402
from gate.metrics import ClassificationMetrics  # noqa: E402
from gate.predictions import PredictionTable  # noqa: E402
from gate.verdict import Decision  # noqa: E402
from tests.conftest import Served  # noqa: E402
from tests.models import lookup_model, predictions_for  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = ROOT / "policies" / "default.yaml"
PETS = ["cat", "dog", "rabbit"]
# the tutorial's matrix twice over: 300 samples
PETS_CM = [[100, 4, 6], [8, 90, 2], [4, 6, 80]]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """One local Ray cluster of 2 CPUs shared by every test here (and stopped after them,
    so that the rest of the suite runs without it); yields its address."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> demo.DemoFiles:
    """The demo's 930 digit PNGs (an ImageFolder with a spec) and its good and bad models."""
    return demo.build(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def manifest(digits: demo.DemoFiles) -> Path:
    """The same PNGs through a CSV manifest, in another order, with a metadata column."""
    root = digits.heldout_spec.parent
    files = sorted((root / "heldout").rglob("*.png"))
    random.Random(7).shuffle(files)
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "camera"])
        for i, file in enumerate(files):
            writer.writerow([file.relative_to(root).as_posix(), file.parent.name, f"cam{i % 3}"])
    spec = digits.heldout_spec.read_text(encoding="utf-8").replace("source: heldout", "source: manifest.csv")
    path = root / "manifest.yaml"
    path.write_text(spec.replace("name: digits-heldout", "name: digits-manifest"), encoding="utf-8")
    return path


def _pets(tmp: Path, *, nan_at: int | None = None) -> Dataset:
    x, y = predictions_for(PETS_CM)
    if nan_at is not None:
        x[nan_at] = -1.0  # lookup_model(nan_below_zero=True) answers NaN for it
    path = tmp / "pets.npz"
    np.savez(path, x=x, y=y, classes=np.array(PETS))
    return load_dataset(path)


def _local(model: bytes, ds: Dataset, batch: int) -> tuple[PredictionTable, ClassificationMetrics]:
    """The local engine's inference path: the same session, batches and checks."""
    loaded = load_model(model, provider="cpu")
    preds = predict(loaded, ds.batches(batch), n_classes=len(ds.classes), total=len(ds), sample_ids=ds.sample_ids)
    table = prediction_table(ds, preds)
    return table, ClassificationMetrics.from_predictions(ds.labels, preds.labels, ds.classes, preds.confidence)


def _local_error(model: bytes, ds: Dataset, batch: int) -> GateError:
    with pytest.raises(GateError) as caught:
        _local(model, ds, batch)
    return caught.value


def _assert_same(result: ShardedResult, table: PredictionTable, metrics: ClassificationMetrics) -> None:
    got = result.table
    assert got.classes == table.classes
    for column in ("sample_id", "label", "predicted", "confidence", "top_k_class", "top_k_score"):
        np.testing.assert_array_equal(getattr(got, column), getattr(table, column), err_msg=column)
    sharded = got.metrics()
    np.testing.assert_array_equal(sharded.confusion, metrics.confusion)
    assert sharded.calibration is not None and metrics.calibration is not None
    for part in ("counts", "correct", "confidence_fp"):
        np.testing.assert_array_equal(getattr(sharded.calibration, part), getattr(metrics.calibration, part))
    assert sharded.to_dict() == metrics.to_dict()


def test_npz_in_eight_shards_equals_the_local_engine(cluster: str, tmp_path: Path) -> None:
    ds = _pets(tmp_path)
    model = lookup_model(3)
    seen: list[tuple[int, int]] = []
    # shards of 40 and batches of 16: the shard boundaries cut through the local engine's batches
    result = evaluate_sharded(
        model, ds, provider="cpu", batch_size=16, shard_size=40, progress=lambda d, t: seen.append((d, t))
    )
    preds, metrics = _local(model, ds, 16)
    _assert_same(result, preds, metrics)
    assert result.table.metrics().confusion.tolist() == PETS_CM
    assert result.runtime["engine"] == "ray" and result.runtime["ray"] == ray.__version__
    assert result.runtime["address"] == cluster  # the connection this process already had
    assert result.runtime["shards"] == 8 and result.runtime["shard_size"] == 40
    assert result.runtime["provider"] == "CPUExecutionProvider" and result.runtime["batch_size"] == 16
    assert 1 <= result.runtime["actors"] <= 2 == result.runtime["cluster"]["CPU"]
    # progress: once per shard, growing to the whole set
    assert len(seen) == 8 and seen[-1] == (300, 300)
    assert [d for d, _ in seen] == sorted({d for d, _ in seen})


@pytest.mark.parametrize(
    ("source", "decode", "actors"),
    [("imagefolder", "tasks", 1), ("manifest", "actors", None)],
)
def test_images_in_ten_shards_equal_the_local_engine(
    cluster: str, digits: demo.DemoFiles, manifest: Path, source: str, decode: Any, actors: int | None
) -> None:
    ds = load_dataset(digits.heldout_spec if source == "imagefolder" else manifest)
    model = digits.good_model.read_bytes()
    result = evaluate_sharded(model, ds, provider="cpu", batch_size=32, shard_size=100, decode=decode, actors=actors)
    preds, metrics = _local(model, ds, 32)
    _assert_same(result, preds, metrics)
    assert metrics.accuracy is not None and metrics.accuracy > 0.9  # a real model on real images
    assert result.runtime["shards"] == 10 and result.runtime["decode"] == decode
    if actors is not None:
        assert result.runtime["actors"] == 1


def test_nan_in_one_shard_fails_the_whole_evaluation(cluster: str, tmp_path: Path) -> None:
    ds = _pets(tmp_path, nan_at=77)  # in the second of eight shards
    model = lookup_model(3, nan_below_zero=True)
    with pytest.raises(ModelError) as caught:
        evaluate_sharded(model, ds, provider="cpu", batch_size=16, shard_size=40)
    message = caught.value.message
    assert message.startswith("shard 2 of 8 (samples 40..79): ")
    # the local engine's own message, positions counted from the start of the set
    local = _local_error(model, ds, 16)
    assert isinstance(local, ModelError) and "sample x[77] (index 77)" in local.message
    assert message.endswith(local.message)


@pytest.mark.parametrize("decode", ["tasks", "actors"])
def test_an_undecodable_image_in_one_shard_is_a_dataset_error(
    cluster: str, digits: demo.DemoFiles, tmp_path: Path, decode: Any
) -> None:
    root = tmp_path / "digits"
    shutil.copytree(digits.heldout_spec.parent / "heldout", root / "heldout")
    shutil.copy(digits.heldout_spec, root / "heldout.yaml")
    victim = sorted((root / "heldout" / "five").glob("*.png"))[3]
    data = victim.read_bytes()
    # the header survives (the set loads: sizes come from headers), the pixel data does not
    victim.write_bytes(data[: data.index(b"IDAT") + 10])
    ds = load_dataset(root / "heldout.yaml")
    name = victim.relative_to(root / "heldout").as_posix()
    index = ds.sample_ids.index(name)
    model = digits.good_model.read_bytes()
    with pytest.raises(DatasetError) as caught:
        evaluate_sharded(model, ds, provider="cpu", batch_size=32, shard_size=100, decode=decode, actors=1)
    message = caught.value.message
    shard = index // 100
    assert message.startswith(f"shard {shard + 1} of 10 (samples {shard * 100}..{shard * 100 + 99}): ")
    assert f"cannot read image {name}" in message
    assert message.endswith(_local_error(model, ds, 32).message)


def _actor_processes() -> list[int]:
    """PIDs of the Ray Data actors (``ray::MapWorker...``) among this process's descendants:
    the workers of the cluster this test session started."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    family, grown = {os.getpid()}, True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in family} - family
        family |= children
        grown = bool(children)
    actors = []
    for pid in family - {os.getpid()}:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::MapWorker"):
                actors.append(pid)
    return actors


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the actor processes through /proc")
def test_a_worker_that_keeps_dying_fails_the_whole_evaluation(cluster: str, digits: demo.DemoFiles) -> None:
    ds = load_dataset(digits.heldout_spec)
    stop, killed = threading.Event(), []

    def kill_actors() -> None:  # every inference actor, again after each restart
        while not stop.is_set():
            for pid in _actor_processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            stop.wait(0.1)

    killer = threading.Thread(target=kill_actors, daemon=True)
    killer.start()
    try:
        with pytest.raises(InternalError) as caught:
            evaluate_sharded(digits.good_model.read_bytes(), ds, provider="cpu", batch_size=32, shard_size=100)
    finally:
        stop.set()
        killer.join()
    # restarted and retried a bounded number of times, then ERROR: never a partial result
    assert len(killed) > ray_engine.WORKER_RETRIES
    assert "shard(s) unfinished (shard " in caught.value.message and "of 10 (samples " in caught.value.message
    assert "ActorDiedError" in caught.value.message


def _volatile_free(verdict: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in verdict.items() if k not in ("runtime", "duration_s", "started_at")}


def test_evaluate_with_the_ray_engine_gives_the_local_verdict(cluster: str, digits: demo.DemoFiles) -> None:
    # the starved model FAILs by name; the good one runs as its baseline (paired comparison)
    common: dict[str, Any] = {"provider": "cpu", "baseline": digits.good_model}
    local = evaluate(digits.bad_model, digits.heldout_spec, DEFAULT_POLICY, **common)
    sharded = evaluate(digits.bad_model, digits.heldout_spec, DEFAULT_POLICY, engine="ray", **common)
    assert local.decision is Decision.FAIL and local.error is None
    assert _volatile_free(sharded.to_dict()) == _volatile_free(local.to_dict())
    assert sharded.runtime["engine"] == "ray" and sharded.runtime["shards"] > 1
    assert "engine" not in local.runtime


def _gate_process(*argv: str) -> tuple[int, dict[str, Any], str]:
    """`gate ARGV...` as a process of its own: exit code, the JSON document on stdout, stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "gate", *argv], capture_output=True, text=True, timeout=300, check=False, cwd=ROOT
    )
    try:
        document = json.loads(proc.stdout)  # stdout is exactly one JSON document, Ray or not
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not one JSON document:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-2000:]}")
    return proc.returncode, document, proc.stderr


def test_gate_eval_engine_ray_matches_local_and_a_failing_shard_exits_2(
    cluster: str, digits: demo.DemoFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["eval", "--model", str(digits.bad_model), "--dataset", str(digits.heldout_spec)]
    argv += ["--policy", str(DEFAULT_POLICY), "--format", "json", "--provider", "cpu", "--no-cache", "--quiet"]
    code_local = main(argv)
    local = json.loads(capsys.readouterr().out)
    # processes of their own that join this module's cluster by its address
    code, sharded, stderr = _gate_process(*argv, "--engine", "ray", "--ray-address", cluster)
    assert code == code_local == 1, stderr[-2000:]
    assert _volatile_free(sharded) == _volatile_free(local)
    assert sharded["runtime"]["engine"] == "ray" and sharded["runtime"]["address"] == cluster
    assert sharded["runtime"]["shards"] > 1

    x, y = predictions_for(PETS_CM)
    x[200] = -1.0
    np.savez(tmp_path / "nan.npz", x=x, y=y, classes=np.array(PETS))
    (tmp_path / "nan.onnx").write_bytes(lookup_model(3, nan_below_zero=True))
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nname: p\nrules:\n  - {id: acc, type: metric, metric: accuracy, min: 0.5}\n")
    nan_argv = ["eval", "--model", str(tmp_path / "nan.onnx"), "--dataset", str(tmp_path / "nan.npz")]
    nan_argv += ["--policy", str(policy), "--format", "json", "--engine", "ray", "--ray-address", cluster]
    code, failed, _ = _gate_process(*nan_argv, "--no-cache", "--quiet")
    assert code == 2 and failed["verdict"] == "ERROR" and failed["metrics"] is None
    assert failed["error"]["type"] == "ModelError"
    assert "sample x[200] (index 200)" in failed["error"]["message"]


def test_without_ray_the_engine_asks_for_the_extra(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = _pets(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    assert not ray_engine.ray_installed()
    with pytest.raises(RequestError, match=r"install gate\[ray\]"):
        evaluate_sharded(lookup_model(3), ds)
    verdict = evaluate(lookup_model(3), ds, DEFAULT_POLICY, engine="ray")
    assert verdict.decision is Decision.ERROR and verdict.error is not None
    assert verdict.error["type"] == "RequestError" and "gate[ray]" in verdict.error["message"]


def test_requests_the_cluster_cannot_serve_are_refused(cluster: str, tmp_path: Path) -> None:
    ds = _pets(tmp_path)
    with pytest.raises(ProviderError, match="no GPUs"):
        evaluate_sharded(lookup_model(3), ds, provider="cuda")
    for bad in ({"actors": 0}, {"shard_size": 0}, {"batch_size": -1}, {"decode": "threads"}):
        with pytest.raises(RequestError):
            evaluate_sharded(lookup_model(3), ds, provider="cpu", **bad)
    with pytest.raises(RequestError, match="CPU"):
        evaluate_sharded(lookup_model(3), _images_like(tmp_path), provider="cpu", decode="tasks", actors=2)


def _images_like(tmp: Path) -> Dataset:
    from PIL import Image

    for i, name in enumerate(PETS):
        (tmp / "imgs" / name).mkdir(parents=True)
        Image.fromarray(np.full((4, 4, 3), 60 * i, np.uint8)).save(tmp / "imgs" / name / "a.png")
    return load_dataset(tmp / "imgs")


@pytest.mark.parametrize(("n", "size"), [(1, 1), (300, 40), (300, 300), (301, 100), (7, 3)])
def test_shards_cover_every_sample_exactly_once(n: int, size: int) -> None:
    bounds = ray_engine._shard_bounds(n, size)
    covered = np.concatenate([np.arange(a, b) for a, b in bounds])
    np.testing.assert_array_equal(covered, np.arange(n))
    assert all(0 < b - a <= size for a, b in bounds)


@pytest.mark.parametrize(
    ("n", "sample_bytes", "batch", "actors", "expected"),
    [
        (300, 4, 512, 2, 38),  # small set: about four shards per actor
        (4096, 602_112, 32, 2, 192),  # 3x224x224 float32: at most SHARD_BYTES (222), in whole batches
        (10, 4, 8, 16, 1),
    ],
)
def test_default_shard_size(n: int, sample_bytes: int, batch: int, actors: int, expected: int) -> None:
    assert ray_engine._default_shard_size(n, sample_bytes, batch, actors) == expected


def test_the_former_module_name_still_imports_the_engine() -> None:
    from gate.engines import ray_engine as former

    assert former.evaluate_sharded is evaluate_sharded and former.ShardedResult is ShardedResult
    assert former.ray_installed is ray_engine.ray_installed


def test_positions_in_messages_count_from_the_start_of_the_set() -> None:
    shifted = ray_engine._dataset_positions("NaN for sample a.png (index 3); failed on samples 0..15", 120)
    assert shifted == "NaN for sample a.png (index 123); failed on samples 120..135"


def test_a_server_with_engine_ray_gives_the_local_servers_verdict(cluster: str, serve: Callable[..., Served]) -> None:
    """`engine: ray` in the server's configuration: its worker processes drive the cluster."""
    model = lookup_model(3)
    sha = hashlib.sha256(model).hexdigest()
    docs = {}
    for engine in ("local", "ray"):
        s = serve(engine=engine, ray_address=cluster if engine == "ray" else None)
        with s.client() as client:
            client.upload_model(model, filename="m.onnx")
            docs[engine] = client.evaluate(sha, "pets-large", policy_name="default", provider="cpu").document
    ray_doc, local_doc = docs["ray"], docs["local"]
    assert ray_doc["runtime"]["engine"] == "ray", ray_doc["error"]
    assert "engine" not in local_doc["runtime"] or local_doc["runtime"]["engine"] == "local"
    for key in ("verdict", "metrics", "rules", "model"):
        assert ray_doc[key] == local_doc[key], key
    assert ray_doc["dataset"]["sha256"] == local_doc["dataset"]["sha256"]  # the servers' own copies of one set
