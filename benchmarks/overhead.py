"""Section h of the benchmark: gate's fixed cost on a small model, where it shows most.

* ``gate eval --no-cache`` of a small CNN on an .npz of 16,384 float32 tensors of
  3×32×32 (201 MB) against the plain ONNX Runtime script on the same tensors, the two
  interleaved; once with the set's SHA-256 computed (its first evaluation), then with
  it reused by file identity (every later one);
* the imports of that ``gate eval`` before its first batch (``python -X importtime``),
  and the modules the whole run imports that the plain script does not;
* normalisation on the CPU provider, host against the model's graph
  (:mod:`gate.preprocess_graph`), through the local engine on a warm tensor cache: which
  is faster there decides where the CPU runs it.

Called by bench.py (``--only h``).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.models import small_cnn, write_jpeg_folder

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
IMAGENET = "mean: [0.485, 0.456, 0.406]\n  std: [0.229, 0.224, 0.225]"
POLICY = "version: 1\nname: bench-h\nrules:\n  - {id: acc, type: metric, metric: accuracy, min: 0.01}\n"


def _timed(cmd: list[str], env: dict[str, str], cpu: list[float] | None = None) -> float:
    """The command's wall time; its CPU time (user + system, every thread) appended to
    ``cpu``: on a shared machine the CPU time moves less with the load than the wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return elapsed


def _write_set(work: Path, n: int) -> tuple[Path, Path, Path]:
    model, data, policy = work / "small32.onnx", work / f"set32-{n}.npz", work / "policy-h.yaml"
    model.write_bytes(small_cnn(10, seed=0, side=32))
    policy.write_text(POLICY)
    if not data.exists():
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, 3, 32, 32), dtype=np.float32)
        np.savez(data, x=x, y=rng.integers(0, 10, n), classes=np.array([f"c{i}" for i in range(10)]))
    return model, data, policy


# what `gate eval` imports before its first batch (the command line, the caches, the
# evaluation and its engine); the run itself imports the dataset's modules on a second
# thread, where -X importtime's figures mix the two threads' times
_FIRST_BATCH_IMPORTS = "import gate.cli, gate.cli.eval, gate.cache, gate.evaluation, gate.engines.local"


def imports_seconds(env: dict[str, str]) -> float:
    """The time of the imports ``gate eval`` makes before its first batch, in one thread:
    the sum of ``-X importtime``'s top-level cumulative times."""
    proc = subprocess.run(
        [PY, "-X", "importtime", "-c", _FIRST_BATCH_IMPORTS], capture_output=True, text=True, env={**os.environ, **env}
    )
    top = re.findall(r"^import time:\s+\d+ \|\s+(\d+) \| {1,2}\S+$", proc.stderr, flags=re.MULTILINE)
    return sum(int(us) for us in top) / 1e6


def imported_modules(cmd: list[str], env: dict[str, str]) -> set[str]:
    """Every module a command imports (``python -X importtime``, every thread)."""
    proc = subprocess.run(
        [cmd[0], "-X", "importtime", *cmd[1:]], capture_output=True, text=True, env={**os.environ, **env}, check=False
    )
    return set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \| *(\S+)$", proc.stderr, flags=re.MULTILINE))


def section_h(rep: Any, work: Path, args: argparse.Namespace) -> None:
    n = 2048 if args.quick else 16384
    model, data, policy = _write_set(work, n)
    cache = work / "cache-h"
    shutil.rmtree(cache, ignore_errors=True)
    env = {"GATE_CACHE_DIR": str(cache)}
    gate_cmd = [PY, "-m", "gate", "eval", "--model", str(model), "--dataset", str(data), "--policy", str(policy)]
    gate_cmd += ["--no-cache", "--format", "json", "--provider", "cpu", "--batch-size", "512"]
    plain_cmd = [PY, str(ROOT / "benchmarks" / "plain_ort.py"), str(model), str(data), "512", "cpu"]
    _timed(plain_cmd, env)  # the set into the page cache
    first = _timed(gate_cmd, env)  # hashes the set, remembers its SHA-256
    first_plain = _timed(plain_cmd, env)
    gate_t: list[float] = []
    plain_t: list[float] = []
    gate_cpu: list[float] = []
    plain_cpu: list[float] = []
    for _ in range(args.repeat + 2):
        gate_t.append(_timed(gate_cmd, env, gate_cpu))
        plain_t.append(_timed(plain_cmd, env, plain_cpu))
    g, p = min(gate_t), min(plain_t)
    label = f"small CNN, {n} tensors 3x32x32, gate eval --no-cache"
    rep.add("h", f"{label}: gate / plain time, first evaluation (SHA-256 computed)", first / first_plain, "x")
    rep.add("h", f"{label}: gate / plain time (best of each)", g / p, "x", "<= 1.35", g / p <= 1.35)
    medians = statistics.median(a / b for a, b in zip(gate_t, plain_t, strict=True))
    rep.add("h", f"{label}: gate / plain time, median of the interleaved pairs", medians, "x")
    rep.add("h", f"{label}: gate / plain seconds", g, f"s / {p:.3f} s")
    rep.add("h", f"{label}: gate / plain CPU time (best of each)", min(gate_cpu) / min(plain_cpu), "x")
    cpu_medians = statistics.median(gate_cpu) / statistics.median(plain_cpu)
    rep.add("h", f"{label}: gate / plain CPU time (median of each)", cpu_medians, "x", "<= 1.35", cpu_medians <= 1.35)
    rep.add(
        "h",
        f"{label}: gate / plain CPU seconds (median)",
        statistics.median(gate_cpu),
        f"s / {statistics.median(plain_cpu):.3f} s",
    )
    imports = min(imports_seconds(env) for _ in range(args.repeat))
    rep.add("h", "imports of that gate eval before its first batch", imports, "s")
    rep.rows[-1].update(target="<= 0.3", ok=imports <= 0.3)
    extra = imported_modules(gate_cmd, env) - imported_modules(plain_cmd, env)
    rep.add("h", "modules that gate eval imports and the plain script does not", len(extra), "modules")
    rep.add("h", "the same, gate's own", sum(m.split(".")[0] == "gate" for m in extra), "modules")
    _normalisation_on_cpu(rep, work, args)


def _normalisation_on_cpu(rep: Any, work: Path, args: argparse.Namespace) -> None:
    """The local engine on an image set with its tensor cache warm, the normalisation on
    the host (on the prefetch thread, beside inference) against in the model's graph,
    interleaved, in this process: the small CNN at 224x224."""
    import hashlib

    from gate.cache import Caches
    from gate.datasets import load_dataset
    from gate.engines.base import ModelInput, RunOptions
    from gate.engines.local import LocalEngine, Normalisation

    n = 256 if args.quick else 1024
    folder, spec = work / f"set-h-{n}", work / f"set-h-{n}.yaml"
    if not folder.is_dir():
        write_jpeg_folder(folder, n, size=(224, 224), workers=args.workers)
    spec.write_text(f"name: h\nsource: {folder}\npreprocess:\n  {IMAGENET}\n")
    model = small_cnn(10, seed=0)
    given = ModelInput(model, hashlib.sha256(model).hexdigest(), "small.onnx")
    ds = load_dataset(spec)
    options = RunOptions("cpu", 32, None, Caches.at(work / "cache-h-normalise"))

    def timed(way: Normalisation) -> float:
        t = time.perf_counter()
        LocalEngine(normalisation=way).run(given, ds, options)
        return time.perf_counter() - t

    timed("host")  # decodes the set into the tensor cache; both sessions are created below
    timed("graph")
    host_t, graph_t = [], []
    for _ in range(args.repeat + 2):
        host_t.append(timed("host"))
        graph_t.append(timed("graph"))
    h, g = min(host_t), min(graph_t)
    rep.add(
        "h", f"CPU provider, small CNN, {n} images 224x224 (tensor cache warm): normalised on the host", n / h, "img/s"
    )
    rep.add("h", "the same, normalised in the model's graph", n / g, "img/s")
    rep.add("h", "CPU provider: graph / host normalisation time (> 1: the host is faster)", g / h, "x")
