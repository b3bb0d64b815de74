"""Leakage screening benchmark: the near-duplicate search and the hashing of images.

    python benchmarks/leakage.py            # 100,000 x 100,000 hashes; 2,000 JPEGs
    python benchmarks/leakage.py --quick    # 20,000 x 20,000; 300 JPEGs (a smoke run)
    python benchmarks/leakage.py --json out.json

Search: 100,000 random training hashes and 100,000 random held-out hashes, of which a
few hundred are planted copies of training hashes with 0..max_hamming bits flipped. For
max_hamming 4, 8, 10 and 12 it times :class:`gate.leakage.NearDuplicateIndex` (index
build plus query, best of three, a fresh index each time) against numpy brute force
(XOR, popcount, arg-min over every pair; best of three). Brute force over all 10^10 pairs would take
about as long for every radius, so it is timed on the first ``--brute-sample`` held-out
hashes and scaled to the whole set; the report says so. It checks that every planted
copy is found (recall must be 100%) and that the index and brute force agree exactly on
the sample.

Hashing: ``fingerprint_directory`` over an ImageFolder of 500x375 JPEGs (ImageNet's
typical photo size, the writer of ``benchmarks/models.py``), with 1 thread, with a
thread per core (what gate does) and, for comparison, a process pool of the same size
calling ``hash_file``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.models import write_jpeg_folder  # noqa: E402
from gate import leakage  # noqa: E402
from gate.leakage import index as hamming_index  # noqa: E402

RADII = (4, 8, 10, 12)
PHOTO_SIZE = (500, 375)


def brute_force(held: npt.NDArray[np.uint64], train: npt.NDArray[np.uint64], radius: int) -> list[tuple[int, int, int]]:
    """(held index, nearest train index, distance) within ``radius``, every pair compared."""
    out: list[tuple[int, int, int]] = []
    step = max(1, (1 << 20) // len(train))
    for start in range(0, len(held), step):
        d = np.bitwise_count(held[start : start + step, np.newaxis] ^ train[np.newaxis, :])
        nearest = d.argmin(axis=1)
        best = d[np.arange(len(nearest)), nearest]
        for k in np.flatnonzero(best <= radius).tolist():
            out.append((start + k, int(nearest[k]), int(best[k])))
    return out


def plant(
    rng: np.random.Generator, train: npt.NDArray[np.uint64], n_held: int, count: int, radius: int
) -> tuple[npt.NDArray[np.uint64], dict[int, int]]:
    """Random held-out hashes with ``count`` copies of training hashes, 0..radius bits flipped."""
    held = rng.integers(0, 2**64, n_held, dtype=np.uint64, endpoint=False)
    where = rng.choice(n_held, count, replace=False)
    planted: dict[int, int] = {}
    for k, i in enumerate(where.tolist()):
        flips = rng.choice(64, k % (radius + 1), replace=False)  # distances 0..radius in turn
        held[i] = train[rng.integers(len(train))] ^ np.uint64(sum(1 << int(b) for b in flips))
        planted[i] = len(flips)
    return held, planted


def build_and_query(train: npt.NDArray[np.uint64], held: npt.NDArray[np.uint64], radius: int) -> leakage.NearMatches:
    return leakage.NearDuplicateIndex(train).query(held, radius)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def timed_cpu(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall-clock and CPU seconds of this process (the search is single-threaded, and
    CPU time is the steadier figure on a shared machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def search(n: int, planted_count: int, brute_sample: int, rows: list[dict[str, Any]]) -> None:
    rng = np.random.default_rng(2026)
    train = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    print(f"search: {n:,} training x {n:,} held-out hashes, {planted_count} planted near-duplicates", flush=True)
    for radius in RADII:
        held, planted = plant(rng, train, n, planted_count, radius)
        runs = [timed_cpu(functools.partial(build_and_query, train, held, radius)) for _ in range(3)]
        index_s, index_cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        matches = runs[0][2]
        found = dict(zip(matches.held_out_index.tolist(), matches.distance.tolist(), strict=True))
        recall = sum(1 for i, d in planted.items() if found.get(i, 99) <= d) / len(planted)
        sample = held[:brute_sample]
        brute_runs = [timed_cpu(functools.partial(brute_force, sample, train, radius)) for _ in range(3)]
        scale = n / len(sample)
        brute_total, brute_cpu = min(r[0] for r in brute_runs) * scale, min(r[1] for r in brute_runs) * scale
        expected = brute_runs[0][2]
        in_sample = matches.held_out_index < len(sample)
        got = list(
            zip(
                matches.held_out_index[in_sample].tolist(),
                matches.train_index[in_sample].tolist(),
                matches.distance[in_sample].tolist(),
                strict=True,
            )
        )
        plan = hamming_index._plan(n, radius)
        layout = "brute force" if plan is None else "+".join(f"{p.bits}b/r{p.radius}" for p in plan)
        row = {
            "max_hamming": radius,
            "index_s": index_s,
            "index_cpu_s": index_cpu,
            "brute_s_scaled": brute_total,
            "brute_cpu_s_scaled": brute_cpu,
            "brute_sample": len(sample),
            "speedup": brute_total / index_s,
            "speedup_cpu": brute_cpu / index_cpu,
            "recall": recall,
            "matches": len(matches),
            "exact_on_sample": got == expected,
            "substrings": layout,
        }
        rows.append(row)
        print(
            f"  max_hamming {radius:2d}: index {index_s:6.3f} s (CPU {index_cpu:6.3f} s) | brute force "
            f"{brute_total:6.2f} s (CPU {brute_cpu:6.2f} s; timed on {len(sample):,} held-out hashes, scaled "
            f"x{scale:.0f}) | {brute_total / index_s:5.1f}x (CPU {brute_cpu / index_cpu:5.1f}x) | planted recall "
            f"{recall:.0%} | {len(matches)} matches | exact on the sample: {got == expected} | substrings {layout}",
            flush=True,
        )
        if recall != 1.0 or got != expected:
            raise SystemExit("the index missed a planted copy or disagreed with brute force")


def _hash_paths(paths: list[str]) -> list[int]:
    return [leakage.hash_file(p) for p in paths]


def hashing(n_images: int, rows: list[dict[str, Any]]) -> None:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="gate-leakage-") as tmp:
        root = Path(tmp) / "train"
        write_jpeg_folder(root, n_images, size=PHOTO_SIZE, workers=cores)
        print(f"hashing: {n_images:,} JPEGs of {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}, {cores} cores", flush=True)
        leakage.fingerprint_directory(root, workers=cores)  # warm the page cache
        reference: leakage.Fingerprints | None = None
        for label, workers in (("1 thread", 1), (f"{cores} threads", cores)):
            run = functools.partial(leakage.fingerprint_directory, root, workers=workers)
            seconds, result = min((timed(run) for _ in range(3)), key=lambda r: r[0])
            reference = reference or result
            assert result.sha256 == reference.sha256
            rows.append({"hashing": label, "images_per_s": n_images / seconds})
            print(f"  fingerprint_directory, {label}: {n_images / seconds:8.1f} images/s", flush=True)
        assert reference is not None
        paths = [str(root / p) for p in reference.paths]
        chunks = [paths[i : i + 64] for i in range(0, len(paths), 64)]

        def processes() -> list[int]:
            with ProcessPoolExecutor(max_workers=cores) as pool:
                return [h for part in pool.map(_hash_paths, chunks) for h in part]

        seconds, hashes = min((timed(processes) for _ in range(3)), key=lambda r: r[0])
        assert hashes == reference.hashes.tolist()
        rows.append({"hashing": f"{cores} processes", "images_per_s": n_images / seconds})
        print(f"  hash_file on a pool of {cores} processes: {n_images / seconds:8.1f} images/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 hashes and 300 images")
    parser.add_argument("--hashes", type=int, default=None, help="training and held-out hashes (default 100,000)")
    parser.add_argument("--planted", type=int, default=390, help="planted near-duplicates per radius")
    parser.add_argument("--brute-sample", type=int, default=2000, help="held-out hashes brute force is timed on")
    parser.add_argument("--images", type=int, default=None, help="JPEGs to hash (default 2,000)")
    parser.add_argument("--only", choices=["search", "hashing"], default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    n = args.hashes or (20_000 if args.quick else 100_000)
    images = args.images or (300 if args.quick else 2_000)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    if args.only in (None, "search"):
        search(n, args.planted, min(args.brute_sample, n), rows)
    if args.only in (None, "hashing"):
        hashing(images, rows)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
