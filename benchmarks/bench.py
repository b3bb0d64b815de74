"""gate's benchmark: every figure measured side by side in one run, printed as a ratio
next to its target. Speed lives here, never in the tests.

    python benchmarks/bench.py                 # everything, on the CPU (make bench)
    python benchmarks/bench.py --only a,d      # some sections
    python benchmarks/bench.py --provider cuda # on a GPU machine: section a on CUDA
    python benchmarks/bench.py --quick         # smaller sets, for a smoke run

Sections (see benchmarks/README.md for the latest figures):
  a  `gate eval` end to end vs a plain ONNX Runtime script on the same tensors
     (small CNN and ResNet-18-sized), the tensor cache warm
  b  an ImageFolder of JPEGs cold (decode) vs warm (tensor cache); cold vs decode and
     inference alone (do they overlap?)
  c  re-gating 50,000 samples under a new policy vs the cold evaluation
  d  metrics vs scikit-learn at N = 1e6
  e  upload MB/s through the gate server vs a bare grpcio stream of the same bytes that
     also SHA-256s them at both ends and writes the file (benchmarks/sink_server.py)
  f  server throughput with 1, 2 and 4 concurrent clients
  g  peak RSS of the cold 50,000-sample 224x224 evaluation (measured in c)
  h  gate's fixed cost on a small model: `gate eval --no-cache` on 16,384 tensors vs the
     plain script, its imports, and host vs in-graph normalisation on the CPU
     (benchmarks/overhead.py)
  s  slices: metrics.slices and per_slice/slice_gap rules on 50,000 samples x 3 metadata
     columns x 20 values, in this process (benchmarks/slices.py)
  p  policy replay: `gate replay --data-dir` over 1,000 stored evaluations, the whole
     command (benchmarks/replay.py)

Whole commands are timed as processes (best of several runs, the two sides of a ratio
interleaved), because machines here are shared and noisy.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.corruptions import section_r  # noqa: E402
from benchmarks.models import resnet18, small_cnn, write_jpeg_folder  # noqa: E402
from benchmarks.overhead import section_h  # noqa: E402
from benchmarks.slices import section_s  # noqa: E402

PY = sys.executable
IMAGENET = "mean: [0.485, 0.456, 0.406]\n  std: [0.229, 0.224, 0.225]"
SPEC = "name: {name}\nsource: {source}\npreprocess:\n  resize: 256\n  crop: 224\n  {norm}\n"
POLICY_A = "version: 1\nname: bench-a\nrules:\n  - {id: acc, type: metric, metric: accuracy, min: 0.01}\n"
POLICY_B = "version: 1\nname: bench-b\nrules:\n  - {id: rec, type: per_class, metric: recall, min: 0.5}\n"


class Report:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, section: str, figure: str, value: float, unit: str, target: str = "", ok: bool | None = None) -> None:
        row = {"section": section, "figure": figure, "value": value, "unit": unit, "target": target, "ok": ok}
        self.rows.append(row)
        mark = "" if ok is None else ("  ok" if ok else "  MISSED")
        print(f"[{section}] {figure}: {value:,.3f} {unit}  {('target ' + target) if target else ''}{mark}", flush=True)

    def table(self) -> str:
        lines = ["| | figure | measured | target | |", "|---|---|---|---|---|"]
        for r in self.rows:
            mark = "" if r["ok"] is None else ("met" if r["ok"] else "**missed**")
            lines.append(f"| {r['section']} | {r['figure']} | {r['value']:,.3f} {r['unit']} | {r['target']} | {mark} |")
        return "\n".join(lines)


def run(cmd: list[str], *, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0, 1)) -> tuple[float, str, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode not in ok:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return elapsed, proc.stdout, proc.stderr


def best(times: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(times))


def gate_eval(model: Path, spec: Path, policy: Path, cache: Path, *, provider: str = "cpu") -> list[str]:
    return [
        PY,
        "-m",
        "gate",
        "eval",
        "--model",
        str(model),
        "--dataset",
        str(spec),
        "--policy",
        str(policy),
        "--format",
        "json",
        "--provider",
        provider,
        "--cache-dir",
        str(cache),
    ]


def forget_results(cache: Path) -> None:
    shutil.rmtree(cache / "results", ignore_errors=True)


# ImageNet's validation photos are typically about 500x375: decoding and resizing those is
# the real cost of a cold evaluation
PHOTO_SIZE = (500, 375)


def write_set(root: Path, name: str, n: int, *, workers: int) -> Path:
    folder = root / name
    if not folder.is_dir():
        write_jpeg_folder(folder, n, size=PHOTO_SIZE, workers=workers)
    spec = root / f"{name}.yaml"
    spec.write_text(SPEC.format(name=name, source=folder, norm=IMAGENET))
    return spec


def export_tensors(spec: Path, out: Path) -> int:
    """The dataset's model input as one float32 .npy (what the plain script loads)."""
    from gate.datasets import load_dataset

    ds = load_dataset(spec)
    arr = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(len(ds), *ds.sample_shape))
    start = 0
    for batch in ds.batches(64):
        arr[start : start + len(batch)] = batch
        start += len(batch)
    arr.flush()
    del arr
    return len(ds)


# -- sections -------------------------------------------------------------------------


def section_p(rep: Report) -> None:
    """Policy replay over 1,000 stored evaluations (its own script, one JSON row)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "replay.py")], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout
    row = json.loads(out[out.index("{") :])
    rep.add(
        "p",
        "gate replay --data-dir, 1,000 stored evaluations (whole command)",
        row["command_s"],
        "s",
        "< 1 s",
        row["met"],
    )
    rep.add("p", "the same, CPU time (process and children)", row["command_cpu_s"], "s")


def section_a(rep: Report, work: Path, args: argparse.Namespace) -> dict[str, float]:
    """gate eval (warm tensor cache, no result cache) vs plain ORT on the same tensors."""
    policy = work / "policy-a.yaml"
    policy.write_text(POLICY_A)
    inference_alone: dict[str, float] = {}
    for label, build, n in (("small CNN", small_cnn, args.n_small), ("ResNet-18", resnet18, args.n_resnet)):
        key = "small" if label == "small CNN" else "resnet"
        if key not in args.models:
            continue
        model = work / f"{key}.onnx"
        model.write_bytes(build(10, seed=0))
        spec = write_set(work, f"set-{key}", n, workers=args.workers)
        cache = work / f"cache-a-{key}"
        run(gate_eval(model, spec, policy, cache, provider=args.provider))  # builds the tensor cache
        tensors = work / f"tensors-{key}.npy"
        export_tensors(spec, tensors)
        batch = json.loads(run(gate_eval(model, spec, policy, cache, provider=args.provider))[1])["runtime"].get(
            "batch_size", 32
        )

        gate_cmd = gate_eval(model, spec, policy, cache, provider=args.provider)
        plain_cmd = [PY, str(ROOT / "benchmarks" / "plain_ort.py"), str(model), str(tensors), str(batch), args.provider]
        gate_t, plain_t = [], []
        for _ in range(args.repeat):  # interleaved, so both sides see the same machine
            forget_results(cache)
            gate_t.append(run(gate_cmd)[0])
            plain_t.append(run(plain_cmd)[0])
        g, p = min(gate_t), min(plain_t)
        inference_alone[key] = p
        rep.add("a", f"{label} ({n} imgs, {args.provider}): gate eval", n / g, "img/s")
        rep.add("a", f"{label} ({n} imgs, {args.provider}): plain ONNX Runtime", n / p, "img/s")
        target = "<= 1.10" if key == "resnet" else ""
        rep.add(
            "a", f"{label}: gate eval / plain time", g / p, "x", target, (g / p <= 1.10) if key == "resnet" else None
        )
        tensors.unlink()
    return inference_alone


def section_b(rep: Report, work: Path, args: argparse.Namespace, inference_alone: dict[str, float]) -> None:
    policy = work / "policy-a.yaml"
    policy.write_text(POLICY_A)
    for key, build, n in (("small", small_cnn, args.n_small), ("resnet", resnet18, args.n_resnet)):
        if key not in args.models:
            continue
        model = work / f"{key}.onnx"
        if not model.exists():
            model.write_bytes(build(10, seed=0))
        spec = write_set(work, f"set-{key}", n, workers=args.workers)
        cold_t, warm_t = [], []
        for i in range(args.repeat):
            cache = work / f"cache-b-{key}-{i}"
            cold_t.append(run(gate_eval(model, spec, policy, cache, provider=args.provider))[0])  # decodes
            forget_results(cache)
            warm_t.append(run(gate_eval(model, spec, policy, cache, provider=args.provider))[0])  # cache
            shutil.rmtree(cache)
        cold, warm = min(cold_t), min(warm_t)
        if key == "small":
            rep.add(
                "b", f"small CNN ImageFolder ({n} JPEGs): cold / warm time", cold / warm, "x", ">= 5", cold / warm >= 5
            )
        else:
            code = (
                "import sys,time; from gate.datasets import load_dataset; ds=load_dataset(sys.argv[1]);"
                "t=time.perf_counter(); [None for _ in ds.batches(32)]; print(time.perf_counter()-t)"
            )
            decode = min(run([PY, "-c", code, str(spec)])[0] for _ in range(args.repeat))
            infer = inference_alone.get("resnet") or float("nan")
            ratio = cold / max(decode, infer)
            rep.add("b", f"ResNet-18 ({n} JPEGs): decode alone", decode, "s")
            rep.add("b", f"ResNet-18 ({n} JPEGs): inference alone (plain script)", infer, "s")
            rep.add("b", f"ResNet-18 ({n} JPEGs): cold gate eval", cold, "s")
            rep.add("b", "ResNet-18: cold / max(decode, inference)", ratio, "x", "<= 1.2", ratio <= 1.2)


def section_cg(rep: Report, work: Path, args: argparse.Namespace) -> None:
    """Cold 50,000-sample evaluation (peak RSS measured) vs re-gating under a new policy."""
    n = args.n_large
    spec = write_set(work, "set-large", n, workers=args.workers)
    model = work / "small.onnx"
    if not model.exists():
        model.write_bytes(small_cnn(10, seed=0))
    pa, pb = work / "policy-a.yaml", work / "policy-b.yaml"
    pa.write_text(POLICY_A)
    pb.write_text(POLICY_B)
    cache = work / "cache-large"
    shutil.rmtree(cache, ignore_errors=True)
    cold, _, err = run([PY, str(ROOT / "benchmarks" / "peak_rss.py"), *gate_eval(model, spec, pa, cache)])
    peak = float(re.findall(r"peak_rss_mib=([\d.]+)", err)[-1])
    regate = best(args.repeat, lambda: run(gate_eval(model, spec, pb, cache))[0])
    rep.add("c", f"cold evaluation of {n} JPEGs (small CNN, 224x224)", cold, "s")
    rep.add("c", f"re-gating {n} samples under a new policy", regate, "s")
    rep.add("c", "cold / re-gate time", cold / regate, "x", ">= 50", cold / regate >= 50)
    rep.add("g", f"peak RSS, cold {n}-sample 224x224 evaluation", peak, "MiB", "< 2048", peak < 2048)
    shutil.rmtree(cache, ignore_errors=True)


def section_d(rep: Report, args: argparse.Namespace) -> None:
    import warnings

    from sklearn.metrics import classification_report
    from sklearn.metrics import confusion_matrix as sk_confusion

    from gate.metrics import ClassificationMetrics

    n, k = 1_000_000, 10
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, k, n), rng.integers(0, k, n)
    names = [f"c{i}" for i in range(k)]

    def ours() -> float:
        t = time.perf_counter()
        ClassificationMetrics.from_predictions(y, p, names).to_dict()
        return time.perf_counter() - t

    def theirs() -> float:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            classification_report(y, p, output_dict=True, zero_division=0)
            sk_confusion(y, p)
        return time.perf_counter() - t

    a, b = best(args.repeat, ours), best(args.repeat, theirs)
    rep.add("d", "metrics at N=1e6, K=10: gate", a * 1000, "ms")
    rep.add("d", "metrics at N=1e6, K=10: scikit-learn report + confusion matrix", b * 1000, "ms")
    rep.add("d", "scikit-learn / gate time", b / a, "x", ">= 100", b / a >= 100)


def _serve(work: Path, name: str, datasets: list[Path], extra: str = "") -> tuple[subprocess.Popen[str], str]:
    root = work / name
    root.mkdir(exist_ok=True)
    config = root / "gate.yaml"
    config.write_text(
        f"listen: 127.0.0.1:0\ndata_dir: data\ndatasets: {json.dumps([str(d) for d in datasets])}\n"
        f"policies: [{ROOT / 'policies'}]\nmax_concurrent_evaluations: 4\nmax_queued_evaluations: 16\n{extra}"
    )
    proc = subprocess.Popen([PY, "-m", "gate", "serve", "--config", str(config)], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    while True:
        line = proc.stderr.readline()
        if not line:
            raise SystemExit("gate serve exited early")
        found = re.search(r"gate listening on (\S+)", line)
        if found:
            address = found.group(1)
            break
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
    from gate.client import GateClient

    with GateClient(address, timeout=600) as c:
        while c.health() != "SERVING":
            time.sleep(0.05)
    return proc, address


def section_e(rep: Report, work: Path, args: argparse.Namespace) -> None:
    import grpc

    from gate._proto.gate.v1 import gate_pb2 as pb
    from gate.client import CHUNK_BYTES, GateClient

    spec = write_set(work, "set-tiny", 64, workers=1)
    gate_proc, address = _serve(work, "server-e", [spec])
    sink_dir = work / "sink"
    sink_dir.mkdir(exist_ok=True)
    sink = subprocess.Popen(
        [PY, str(ROOT / "benchmarks" / "sink_server.py"), str(sink_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert sink.stdout is not None
    sink_address = f"127.0.0.1:{sink.stdout.readline().strip()}"
    size = args.upload_mib << 20
    rng = np.random.default_rng(1)
    try:
        channel = grpc.insecure_channel(sink_address)
        upload = channel.stream_unary(
            "/bench.Sink/Upload",
            request_serializer=pb.ModelChunk.SerializeToString,
            response_deserializer=pb.ModelRef.FromString,
        )

        def hashed_chunks(data: bytes) -> Iterator[Any]:
            """The stream gate's client sends: hashed while it goes, the hash in the last chunk."""
            digest = hashlib.sha256()
            view = memoryview(data)
            for i in range(0, size, CHUNK_BYTES):
                digest.update(view[i : i + CHUNK_BYTES])
                yield pb.ModelChunk(data=bytes(view[i : i + CHUNK_BYTES]))
            yield pb.ModelChunk(sha256=digest.hexdigest())

        def bare() -> float:
            data = rng.bytes(size)
            t = time.perf_counter()
            ref = upload(hashed_chunks(data))
            elapsed = time.perf_counter() - t
            assert ref.sha256 == hashlib.sha256(data).hexdigest()
            return elapsed

        client = GateClient(address, timeout=600)

        def gated() -> float:
            data = rng.bytes(size)  # new bytes each time: a real upload, not the idempotent path
            t = time.perf_counter()
            client.upload_model(data)
            return time.perf_counter() - t

        bare_t, gate_t = [], []
        for _ in range(args.repeat + 2):
            bare_t.append(bare())
            gate_t.append(gated())
        b, g = min(bare_t), min(gate_t)
        mib = size / (1 << 20)
        rep.add(
            "e",
            f"upload {args.upload_mib} MiB, 1 MiB chunks: bare grpcio stream, SHA-256 at both ends, file written",
            mib / b,
            "MiB/s",
        )
        rep.add(
            "e",
            f"upload {args.upload_mib} MiB, 1 MiB chunks: gate UploadModel (hash verified, stored)",
            mib / g,
            "MiB/s",
        )
        rep.add("e", "gate / bare (hashing, writing) throughput", b / g, "", ">= 0.90", b / g >= 0.90)
        client.close()
        channel.close()
    finally:
        gate_proc.terminate()
        sink.terminate()
        gate_proc.wait()
        sink.wait()


def section_f(rep: Report, work: Path, args: argparse.Namespace) -> None:
    from gate.client import GateClient

    n = args.n_small
    spec = write_set(work, "set-small", n, workers=args.workers)
    proc, address = _serve(work, "server-f", [spec])
    try:
        models = [small_cnn(10, seed=100 + i) for i in range(4 * args.repeat * 3)]
        with GateClient(address, timeout=600) as c:
            shas = [c.upload_model(m).sha256 for m in models]
            c.evaluate(shas[0], "set-small", policy_yaml=POLICY_A)  # warms the tensor cache
        queue = list(shas[1:])
        lock = threading.Lock()
        for clients in (1, 2, 4):
            per_client = max(1, args.repeat)
            jobs = []
            with lock:
                for _ in range(clients * per_client):
                    jobs.append(queue.pop())

            def worker(mine: list[str]) -> None:
                with GateClient(address, timeout=600) as c:
                    for sha in mine:
                        c.evaluate(sha, "set-small", policy_yaml=POLICY_A)

            split = [jobs[i::clients] for i in range(clients)]
            t = time.perf_counter()
            threads = [threading.Thread(target=worker, args=(s,)) for s in split]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            elapsed = time.perf_counter() - t
            rep.add(
                "f", f"server throughput, {clients} concurrent client(s), small CNN", len(jobs) * n / elapsed, "img/s"
            )
    finally:
        proc.terminate()
        proc.wait()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime

    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}"
        f" ({', '.join(onnxruntime.get_available_providers())} available)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="a,b,c,d,e,f,h,r,s,p", help="sections to run (g comes with c)")
    ap.add_argument("--provider", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--quick", action="store_true", help="small sets: a smoke run, not figures")
    ap.add_argument("--workdir", type=Path, help="keep data here (default: a temporary directory)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes writing JPEGs")
    ap.add_argument("--models", default="small,resnet", help="models for sections a and b")
    args = ap.parse_args()
    args.n_small, args.n_resnet, args.n_large = (512, 64, 2000) if args.quick else (4096, 512, 50_000)
    args.repeat = 2 if args.quick else 3
    args.upload_mib = 16 if args.quick else 64
    if args.provider == "cuda":
        args.n_resnet = 256 if args.quick else 4096
    sections = set(args.only.split(","))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gate-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    # an installed gate has its bytecode; a checkout under PYTHONDONTWRITEBYTECODE would
    # compile every module again in every command timed (about 0.2 s each)
    compileall.compile_dir(ROOT / "gate", quiet=1)
    print(f"machine: {machine()}\nworkdir: {work}", flush=True)
    rep = Report()
    t0 = time.perf_counter()
    inference_alone: dict[str, float] = {}
    if "a" in sections:
        inference_alone = section_a(rep, work, args)
    if "b" in sections:
        section_b(rep, work, args, inference_alone)
    if "c" in sections or "g" in sections:
        section_cg(rep, work, args)
    if "d" in sections:
        section_d(rep, args)
    if "e" in sections:
        section_e(rep, work, args)
    if "f" in sections:
        section_f(rep, work, args)
    if "h" in sections:
        section_h(rep, work, args)
    if "r" in sections:
        section_r(rep, work, args)
    if "s" in sections:
        section_s(rep, args.repeat)
    if "p" in sections:
        section_p(rep)
    print(f"\n{rep.table()}\n\n(total {time.perf_counter() - t0:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rep.rows}, indent=2))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
