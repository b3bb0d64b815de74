"""Section r of the benchmark: common corruptions (gate.corruptions).

* the throughput of each corruption on one core: 224×224 RGB photos, severities 1..5 in
  turn, single-threaded (images a second, each the mean over the five severities);
* the robustness suite of docs/corruptions.md (gaussian_noise, motion_blur,
  jpeg_compression, brightness, contrast × severities 1, 2, 3) on a set of 224² images,
  its extra time against 15 × the clean evaluation's (target: at most 1.2×, i.e. no cost
  beyond the extra inference); in process, no caches, the clean evaluation and the one
  with the suite interleaved, the best of ``--repeat`` each.

Called by bench.py (``--only r``), or on its own: ``python benchmarks/corruptions.py
--images 2000 --model resnet``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.models import resnet18, small_cnn, write_jpeg_folder  # noqa: E402

SUITE = ["gaussian_noise", "motion_blur", "jpeg_compression", "brightness", "contrast"]
SEVERITIES = [1, 2, 3]
CLEAN = "version: 1\nname: clean\nrules:\n  - {id: acc, type: metric, metric: accuracy, min: 0.01}\n"
ROBUST = CLEAN.replace("name: clean", "name: robust") + (
    f"  - {{id: robust, type: robustness, corruptions: [{', '.join(SUITE)}], severities: {SEVERITIES},"
    " metric: accuracy, min: 0.01}\n"
)
SPEC = (
    "name: {name}\nsource: {source}\npreprocess:\n  resize: 256\n  crop: 224\n"
    "  mean: [0.485, 0.456, 0.406]\n  std: [0.229, 0.224, 0.225]\n"
)


def _photo() -> np.ndarray:
    from benchmarks.models import _jpeg_bytes
    from gate.datasets import images
    from gate.datasets.spec import Preprocess

    return images.load_pixels(_jpeg_bytes(0, 0, (256, 256), 90), Preprocess(crop=224), "photo")


def throughput(rep: Any, seconds: float, names: Sequence[str] = ()) -> None:
    """Images a second per core for each corruption (all of them unless ``names``), in
    this one thread."""
    from gate.corruptions.catalogue import AVAILABLE, corrupt
    from gate.corruptions.randomness import sample_rng

    photo = _photo()
    for name in names or AVAILABLE:
        done, start = 0, time.perf_counter()
        while done < 5 or time.perf_counter() - start < seconds:
            severity = done % 5 + 1
            corrupt(photo, name, severity, sample_rng(str(done), name, severity, 0))
            done += 1
        rep.add("r", f"{name}, one core", done / (time.perf_counter() - start), "images/s")


def _evaluate(model: Path, spec: Path, policy: Path) -> float:
    from gate.evaluation import evaluate
    from gate.verdict import Decision

    start = time.perf_counter()
    verdict = evaluate(model, spec, policy, provider="cpu")
    elapsed = time.perf_counter() - start
    if verdict.decision is Decision.ERROR:
        raise SystemExit(f"evaluation failed: {verdict.error}")
    return elapsed


def suite_overhead(rep: Any, work: Path, *, images: int, model: str, repeat: int, workers: int) -> None:
    folder = work / f"photos-{images}"
    if not folder.is_dir():
        write_jpeg_folder(folder, images, size=(500, 375), workers=workers)
    spec, clean, robust = work / f"photos-{images}.yaml", work / "clean.yaml", work / "robust.yaml"
    spec.write_text(SPEC.format(name=f"photos-{images}", source=folder))
    clean.write_text(CLEAN)
    robust.write_text(ROBUST)
    onnx = work / f"{model}.onnx"
    onnx.write_bytes(resnet18(10) if model == "resnet" else small_cnn(10))
    plain, suite = [], []
    for _ in range(repeat):
        plain.append(_evaluate(onnx, spec, clean))
        suite.append(_evaluate(onnx, spec, robust))
    cells = len(SUITE) * len(SEVERITIES)
    t_clean, t_suite = min(plain), min(suite)
    extra = (t_suite - t_clean) / (cells * t_clean)
    rep.add("r", f"clean evaluation, {images} images at 224², {model}", t_clean, "s")
    rep.add("r", f"with the 5×3 suite, {images} images at 224², {model}", t_suite, "s")
    rep.add("r", f"suite's extra time / ({cells} × clean), {model}", extra, "×", "<= 1.2", extra <= 1.2)


def section_r(rep: Any, work: Path, args: argparse.Namespace) -> None:
    throughput(rep, seconds=1.0 if args.quick else 3.0)
    images = 100 if args.quick else 2000
    for model in ("small", "resnet"):
        suite_overhead(rep, work, images=images, model=model, repeat=args.repeat, workers=args.workers)


def main() -> None:
    from benchmarks.bench import Report, machine

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--model", choices=["small", "resnet"], default="resnet")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0, help="time per corruption for the throughput rows")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--corruptions", nargs="+", default=(), help="the throughput rows of these corruptions only")
    ap.add_argument("--skip-suite", action="store_true", help="the throughput rows only")
    args = ap.parse_args()
    print(f"machine: {machine()}", flush=True)
    rep = Report()
    if not args.skip_throughput:
        throughput(rep, args.seconds, args.corruptions)
    if not args.skip_suite:
        with tempfile.TemporaryDirectory(prefix="gate-bench-r-") as work:
            suite_overhead(
                rep, Path(work), images=args.images, model=args.model, repeat=args.repeat, workers=os.cpu_count() or 2
            )
    print(f"\n{rep.table()}")


if __name__ == "__main__":
    main()
