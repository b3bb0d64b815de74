"""Slices benchmark: everything gate computes per slice, from a predictions table.

    python benchmarks/slices.py            # 50,000 samples x 3 columns x 20 values, 10 classes
    python benchmarks/slices.py --json out.json

A table of 50,000 samples and 10 classes (about 80 % right) with 3 metadata columns of 20
values each is judged the way an evaluation judges it: the verdict's ``metrics.slices``
(every column, value and class, and the weakest slices) and, per column, a ``per_slice``
rule on recall with Holm-corrected 95 % intervals and a ``slice_gap`` rule. Best of three,
in this process, on one core (the grouping is numpy's single-threaded ``unique`` and
``bincount``). Target: under 1 s. ``benchmarks/bench.py`` runs it as section s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gate.policy import parse_policy
from gate.policy.context import RuleContext
from gate.policy.slice_rules import verdict_slices
from gate.predictions import PredictionTable, build_table

if TYPE_CHECKING:
    from benchmarks.bench import Report

TARGET_S = 1.0


def table(samples: int = 50_000, columns: int = 3, values: int = 20, classes: int = 10) -> PredictionTable:
    """A seeded predictions table with ``columns`` metadata columns of ``values`` values each."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, samples)
    predicted = np.where(rng.random(samples) < 0.8, labels, rng.integers(0, classes, samples))
    metadata = {
        f"col{c}": np.asarray([f"v{v:02d}" for v in rng.integers(0, values, samples)], dtype=np.str_)
        for c in range(columns)
    }
    return build_table(
        classes=[f"class{k}" for k in range(classes)],
        sample_ids=[f"x[{i}]" for i in range(samples)],
        labels=labels,
        predicted=predicted.astype(np.int64),
        confidence=np.ones(samples, np.float32),
        top_class=predicted.reshape(-1, 1).astype(np.int64),
        top_score=np.ones((samples, 1), np.float32),
        metadata=metadata,
    )


def policy_text(columns: int) -> str:
    rules = []
    for c in range(columns):
        rules.append(
            f"{{id: recall-{c}, type: per_slice, slice: col{c}, metric: recall, min: 0.5, confidence: 0.95,"
            " correction: holm, min_support: 30}"
        )
        rules.append(f"{{id: gap-{c}, type: slice_gap, slice: col{c}, metric: accuracy, max_gap: 0.2}}")
    return "version: 1\nname: slices-bench\nrules:\n" + "".join(f"  - {r}\n" for r in rules)


def measure(samples: int = 50_000, columns: int = 3, values: int = 20, repeat: int = 3) -> float:
    """Seconds (best of ``repeat``) for metrics.slices and the slice rules on one table."""
    t = table(samples, columns, values)
    pol = parse_policy(policy_text(columns))
    metrics = t.metrics()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        verdict_slices(t, pol.rules)
        for rule in pol.rules:
            rule.check(RuleContext(metrics, table=t))
        best = min(best, time.perf_counter() - start)
    return best


def section_s(rep: Report, repeat: int = 3) -> None:
    """bench.py's section s: the row of this benchmark."""
    seconds = measure(repeat=repeat)
    rep.add(
        "s",
        "slices: metrics.slices + per_slice/slice_gap on 50,000 samples x 3 columns x 20 values",
        seconds,
        "s",
        "< 1",
        seconds < TARGET_S,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=50_000)
    ap.add_argument("--json", type=Path, help="also write the row as JSON here")
    args = ap.parse_args()
    seconds = measure(args.samples)
    ok = seconds < TARGET_S
    print(f"slices: {args.samples:,} samples x 3 columns x 20 values: {seconds:.3f} s (target < 1 s: {ok})")
    if args.json:
        args.json.write_text(json.dumps({"samples": args.samples, "seconds": seconds, "met": ok}, indent=2))


if __name__ == "__main__":
    main()
