"""The Ray engine against the local engine, side by side, and a paper estimate for GPU clusters.

    python benchmarks/ray_bench.py            # 4,096 JPEGs, 3 repetitions (about 2.5 minutes on 2 cores)
    python benchmarks/ray_bench.py --quick    # 512 JPEGs, 2 repetitions: a smoke run, not figures

Measured in one run, on this machine:

  1. the same ImageFolder as benchmarks/bench.py's small-CNN set (500x375 JPEGs, resized
     to 256 and cropped to 224, ImageNet normalisation) evaluated by ``evaluate()`` with
     the local engine and with the Ray engine on a local Ray cluster of 2 CPUs, the two
     interleaved, several repetitions (the cluster is started once, before, and its start
     timed on its own); the ratio, and the verdicts compared;
  2. the Ray engine's start-up (to its first finished shard) and its steady-state rate
     per actor, from the shards' completion times; per-core rates of decoding,
     normalising and inference alone (what a worker's CPUs must supply a GPU actor);
  3. the pipeline's cost per shard: many small shards against one, K = 10 and K = 1,000;
  4. the driver's reduction (coverage checks, each shard's rows of the predictions table
     gathered in order) of S = 1,000 shard results with K = 1,000 classes,
     through the engine's own reduction code.

Then the paper estimate of N GPU workers (benchmarks/README.md, "Ray engine") from these
figures and the H200 rate recorded in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench import POLICY_A, machine, write_set  # noqa: E402
from benchmarks.models import small_cnn  # noqa: E402

#: The GPU worker's inference rate for the estimate: ResNet-18 through plain ONNX Runtime
#: CUDA on one NVIDIA H200 (4,096 images), recorded in benchmarks/README.md on 2026-11-26.
H200_RESNET18_IMG_S = 1952.0
#: A worker pod of deploy/ray/rayjob.yaml: 8 CPUs beside its GPU, one of them the actor's.
WORKER_CPUS = 8
#: Bandwidth into the head node that receives every shard's result (10 Gbit/s), assumed.
HEAD_BYTES_S = 1.25e9
#: A 3x224x224 float32 model input: what a decoded sample weighs in the object store.
SAMPLE_BYTES = 3 * 224 * 224 * 4


def _identity_model(k: int) -> bytes:
    """scores = x for x of shape (N, K): a model whose cost is nothing but its I/O."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["scores"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", k])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return bytes(model.SerializeToString())


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def compare_engines(
    model: bytes, ds: Any, policy: Path, repeat: int, report: dict[str, Any]
) -> tuple[list[float], list[float]]:
    """Section 1: evaluate() with each engine on the same set, interleaved."""
    from gate.evaluation import evaluate

    local_t: list[float] = []
    ray_t: list[float] = []
    for rep in range(repeat):
        t_local, local = _timed(lambda: evaluate(model, ds, policy, provider="cpu"))
        t_ray, sharded = _timed(lambda: evaluate(model, ds, policy, provider="cpu", engine="ray"))
        assert local.error is None and sharded.error is None, (local.error, sharded.error)
        same = local.metrics == sharded.metrics and [r.to_dict() for r in local.rules] == [
            r.to_dict() for r in sharded.rules
        ]
        assert same, "the engines' verdicts differ"
        local_t.append(t_local)
        ray_t.append(t_ray)
        print(
            f"  rep {rep + 1}: local {t_local:.2f} s, ray {t_ray:.2f} s"
            f" ({sharded.runtime['shards']} shards of {sharded.runtime['shard_size']},"
            f" {sharded.runtime['actors']} actors); verdicts identical",
            flush=True,
        )
    n = len(ds)
    report["engines"] = {
        "samples": n,
        "local_s": local_t,
        "ray_s": ray_t,
        "local_img_s_best": n / min(local_t),
        "ray_img_s_best": n / min(ray_t),
        "ray_over_local_best": min(ray_t) / min(local_t),
        "ray_over_local_median": statistics.median(ray_t) / statistics.median(local_t),
    }
    return local_t, ray_t


def steady_rate(model: bytes, ds: Any, decode: Any, report: dict[str, Any]) -> None:
    """Section 2a: start-up and steady-state rate per actor, from shard completion times."""
    from gate.engines.ray import evaluate_sharded

    marks: list[tuple[float, int]] = []
    start = time.perf_counter()
    result = evaluate_sharded(
        model, ds, provider="cpu", decode=decode, progress=lambda d, _: marks.append((time.perf_counter() - start, d))
    )
    total = time.perf_counter() - start
    (t_first, first), (t_last, last) = marks[0], marks[-1]
    actors = result.runtime["actors"]
    rate = (last - first) / (t_last - t_first) if t_last > t_first else float("nan")
    print(
        f"  decode={decode}: {total:.2f} s, first shard after {t_first:.2f} s, steady {rate:,.0f} img/s"
        f" over {actors} actor(s) = {rate / actors:,.0f} img/s per actor",
        flush=True,
    )
    report.setdefault("steady", {})[decode] = {
        "total_s": total,
        "first_shard_s": t_first,
        "steady_img_s": rate,
        "actors": actors,
        "per_actor_img_s": rate / actors,
        "shards": result.runtime["shards"],
    }


def per_core(model: bytes, ds: Any, m: int, report: dict[str, Any]) -> None:
    """Section 2b: single-threaded rates of each stage a sample goes through."""
    from gate.datasets import images
    from gate.inference import load_model, predict

    source = ds.pixel_source
    preprocess = ds.spec.preprocess
    t_dec, pixels = _timed(lambda: np.stack([source.pixels(i) for i in range(m)]))
    batches = [pixels[i : i + 64] for i in range(0, m, 64)]
    t_norm, tensors = _timed(lambda: [images.normalise(b, preprocess) for b in batches])
    loaded = load_model(model, provider="cpu", threads=1)
    t_inf, _ = _timed(lambda: predict(loaded, iter(tensors), n_classes=len(ds.classes), total=m))
    rates = {"decode": m / t_dec, "normalise": m / t_norm, "inference_small_cnn": m / t_inf}
    print("  per core: " + ", ".join(f"{k} {v:,.0f} img/s" for k, v in rates.items()), flush=True)
    report["per_core_img_s"] = rates


def per_shard(tmp: Path, report: dict[str, Any]) -> None:
    """Section 3: the pipeline's cost of one more shard, with few and with many classes."""
    from gate.datasets import load_dataset
    from gate.engines.ray import evaluate_sharded

    out: dict[str, float] = {}
    n, shards = 1600, 200
    for k in (10, 1000):
        rng = np.random.default_rng(k)
        path = tmp / f"identity-{k}.npz"
        np.savez(path, x=rng.random((n, k), dtype=np.float32), y=rng.integers(0, k, n))
        ds = load_dataset(path)
        model = _identity_model(k)

        def run(size: int, model: bytes = model, ds: Any = ds) -> float:
            times = [_timed(lambda: evaluate_sharded(model, ds, provider="cpu", shard_size=size))[0] for _ in range(2)]
            return min(times)

        one, many = run(n), run(n // shards)
        out[f"K={k}"] = (many - one) / (shards - 1)
        print(f"  K={k}: 1 shard {one:.2f} s, {shards} shards {many:.2f} s: {out[f'K={k}'] * 1e3:.1f} ms a shard")
    report["per_shard_s"] = out


class _Rows:
    """Shard results as the reduction receives them from the pipeline."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)


def reduction(shards: int, k: int, per_shard_samples: int, repeat: int, report: dict[str, Any]) -> None:
    """Section 4: the driver's reduction of S shard results of K classes."""
    from gate.engines import ray as ray_engine
    from gate.predictions import TOP_K

    n = shards * per_shard_samples
    bounds = ray_engine._shard_bounds(n, per_shard_samples)
    plan = ray_engine._Plan(
        source="bench",
        sha256="0" * 64,
        classes=[str(i) for i in range(k)],
        labels=np.zeros(n, dtype=np.int64),
        sample_ids=[],
        sample_shape=(k,),
        shards=bounds,
        pixels=None,
        preprocess=None,
        arrays=[],
    )
    rng = np.random.default_rng(0)
    top = min(TOP_K, k)
    rows = []
    for s in range(shards):
        rows.append(
            {
                "shard": s,
                "error_type": "",
                "error_message": "",
                "labels": rng.integers(0, k, per_shard_samples),
                "confidence": rng.random(per_shard_samples, dtype=np.float32),
                "top_classes": rng.integers(0, k, (per_shard_samples, top)),
                "top_scores": rng.random((per_shard_samples, top), dtype=np.float32),
                "provider": "CUDAExecutionProvider",
                "session_providers": "CUDAExecutionProvider,CPUExecutionProvider",
                "batch_size": 64,
                "actor": f"actor-{s % 64}",
            }
        )
    best = min(_timed(lambda: ray_engine._reduce(plan, _Rows(rows), None))[0] for _ in range(repeat))
    print(f"  S={shards}, K={k}, {n:,} samples: {best:.3f} s ({best / shards * 1e3:.2f} ms a shard)", flush=True)
    report["reduction"] = {"shards": shards, "classes": k, "samples": n, "seconds": best, "per_shard_s": best / shards}


def estimate(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The paper estimate: N GPU workers, each one inference actor and WORKER_CPUS - 1 decoding CPUs.

    R_w  = min(R_gpu, (WORKER_CPUS - 1) / (1 / R_decode + 1 / R_normalise))   per worker, img/s
    S    = max(4 N, ceil(n / (SHARD_BYTES / SAMPLE_BYTES)))                    the engine's default shards
    c    = t_reduce + 8 K² / B_head                                           the driver, per shard
    T_hi = T0 + n / (N R_w) + S (t_shard + c)       the pipeline's cost per shard paid one after another
    T_lo = T0 + n / (N R_w) + S t_shard / N + S c   ... or spread over the workers
    """
    from gate.engines.ray import SHARD_BYTES, SHARDS_PER_ACTOR

    cores = report["per_core_img_s"]
    r_cpu = (WORKER_CPUS - 1) / (1 / cores["decode"] + 1 / cores["normalise"])
    r_worker = min(H200_RESNET18_IMG_S, r_cpu)
    t0 = report["steady"]["tasks"]["first_shard_s"]
    t_shard = report["per_shard_s"]["K=1000"]
    k = 1000
    driver = report["reduction"]["per_shard_s"] + 8 * k * k / HEAD_BYTES_S
    rows = []
    for n in (50_000, 1_281_167):
        for workers in (1, 8, 64):
            shards = max(SHARDS_PER_ACTOR * workers, math.ceil(n / (SHARD_BYTES // SAMPLE_BYTES)))
            compute = t0 + n / (workers * r_worker)
            slow = compute + shards * (t_shard + driver)
            fast = compute + shards * t_shard / workers + shards * driver
            rows.append(
                {
                    "samples": n,
                    "workers": workers,
                    "shards": shards,
                    "seconds": [fast, slow],
                    "img_s": [n / slow, n / fast],
                }
            )
            print(
                f"  n={n:,} N={workers}: S={shards}, {fast:,.1f}-{slow:,.1f} s,"
                f" {n / slow:,.0f}-{n / fast:,.0f} img/s"
                f" ({n / slow / workers:,.0f}-{n / fast / workers:,.0f} per worker)",
                flush=True,
            )
    report["estimate"] = {
        "r_cpu_img_s": r_cpu,
        "r_worker_img_s": r_worker,
        "r_gpu_img_s": H200_RESNET18_IMG_S,
        "t0_s": t0,
        "t_shard_s": t_shard,
        "driver_per_shard_s": driver,
        "rows": rows,
    }
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, help="JPEGs in the set (default 4096; 512 with --quick)")
    ap.add_argument("--repeat", type=int, help="repetitions of each side (default 3; 2 with --quick)")
    ap.add_argument("--quick", action="store_true", help="a smoke run, not figures")
    ap.add_argument("--workdir", type=Path, help="keep data here (default: a temporary directory)")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args()
    n = args.n or (512 if args.quick else 4096)
    repeat = args.repeat or (2 if args.quick else 3)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gate-ray-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    import ray

    from gate.datasets import load_dataset

    print(f"machine: {machine()}, ray {ray.__version__}\nworkdir: {work}", flush=True)
    report: dict[str, Any] = {"machine": machine(), "ray": ray.__version__}
    started = time.perf_counter()
    spec = write_set(work, f"small-{n}", n, workers=2)
    policy = work / "policy.yaml"
    policy.write_text(POLICY_A)
    model = small_cnn(10, seed=0)
    ds = load_dataset(spec)

    t_init, _ = _timed(
        lambda: ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    )
    print(f"local Ray cluster of 2 CPUs started in {t_init:.2f} s", flush=True)
    report["ray_init_s"] = t_init
    try:
        print(f"1. local engine vs Ray engine, {n:,} JPEGs, small CNN", flush=True)
        local_t, ray_t = compare_engines(model, ds, policy, repeat, report)
        print("2. start-up, steady rate per actor, per-core stages", flush=True)
        for decode in ("actors", "tasks"):
            steady_rate(model, ds, decode, report)
        per_core(model, ds, min(n, 256), report)
        print("3. the pipeline's cost per shard", flush=True)
        per_shard(work, report)
    finally:
        t_down, _ = _timed(ray.shutdown)
        report["ray_shutdown_s"] = t_down
    print("4. the driver's reduction", flush=True)
    reduction(1000, 1000, 1000, repeat, report)
    print("paper estimate: N GPU workers (H200 ResNet-18 rate, this machine's per-core rates, K = 1000)", flush=True)
    estimate(report)

    e = report["engines"]
    print(
        f"\nlocal engine {e['local_img_s_best']:,.0f} img/s, Ray engine (2 CPUs) {e['ray_img_s_best']:,.0f} img/s:"
        f" Ray / local time {e['ray_over_local_best']:.2f}x best of {repeat}"
        f" ({e['ray_over_local_median']:.2f}x median; local {min(local_t):.2f} s, ray {min(ray_t):.2f} s)"
        f"\n(total {time.perf_counter() - started:.0f} s)"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
