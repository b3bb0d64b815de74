"""Latency measured honestly: a dedicated session per model with a stated thread count,
warm-up runs, then a fixed number of timed runs; the champion, when there is one, is
timed in the same loop on the same provider, alternating which model goes first, so that
whatever else the machine does weighs on both alike and their ratio stays meaningful on a
noisy machine where an absolute figure is not.
"""

from __future__ import annotations

import gc
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gate.datasets.input_cast import cast_for_model
from gate.deployment.evidence import LatencyRun
from gate.engines.base import ModelInput
from gate.errors import ModelError
from gate.inference import LoadedModel, cuda_device_name, load_model
from gate.providers import CUDA, Provider

#: Untimed runs of each model before timing: first runs allocate buffers and pick kernels.
WARMUP_RUNS = 20
#: The percentiles reported for every measurement.
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class LatencyPlan:
    """What one ``latency`` rule asks to be measured."""

    batch: int
    threads: int
    runs: int


def _timed(model: LoadedModel, x: npt.NDArray[Any]) -> Callable[[], int]:
    """A call that runs the model once on ``x`` and answers the nanoseconds it took."""
    feed = {model.input_name: x}
    outputs = [model.output_name]
    session = model.session

    def once() -> int:
        start = time.perf_counter_ns()
        session.run(outputs, feed)
        return time.perf_counter_ns() - start

    return once


def _summary(ns: list[int]) -> dict[str, float]:
    ms = np.asarray(ns, dtype=np.float64) / 1e6
    out = {f"p{q}": round(float(np.percentile(ms, q)), 4) for q in PERCENTILES}
    out.update(mean=round(float(ms.mean()), 4), min=round(float(ms.min()), 4), max=round(float(ms.max()), 4))
    return out


def device_name(provider: str) -> str:
    """The processor the timings were taken on, as precisely as this machine says."""
    if provider == CUDA:
        return cuda_device_name() or "CUDA device"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def _session(model: ModelInput, provider: Provider, threads: int, batch: int) -> LoadedModel:
    loaded = load_model(model.data, provider=provider, source=model.source, threads=threads, sha256=model.sha256)
    if loaded.fixed_batch is not None and loaded.fixed_batch != batch:
        raise ModelError(
            f"model {model.source} has a fixed batch of {loaded.fixed_batch}; a latency rule times batch {batch}"
        )
    return loaded


def measure_latency(
    candidate: ModelInput,
    champion: ModelInput | None,
    sample: npt.NDArray[Any],
    plan: LatencyPlan,
    *,
    provider: Provider,
) -> LatencyRun:
    """Time ``candidate`` (and ``champion``, interleaved) on one batch ``sample``."""
    mine = _session(candidate, provider, plan.threads, plan.batch)
    runners = [_timed(mine, cast_for_model(sample, mine.input_dtype))]
    if champion is not None:
        theirs = _session(champion, provider, plan.threads, plan.batch)
        runners.append(_timed(theirs, cast_for_model(sample, theirs.input_dtype)))
    times: list[list[int]] = [[] for _ in runners]
    for _ in range(WARMUP_RUNS):
        for run in runners:
            run()
    collecting = gc.isenabled()
    gc.disable()  # a collection in the middle of one model's run would be charged to it alone
    try:
        for i in range(plan.runs):
            order = range(len(runners)) if i % 2 == 0 else reversed(range(len(runners)))
            for k in order:
                times[k].append(runners[k]())
    finally:
        if collecting:
            gc.enable()
    return LatencyRun(
        batch=plan.batch,
        runs=plan.runs,
        warmup=WARMUP_RUNS,
        threads=plan.threads,
        provider=mine.provider,
        device=device_name(mine.provider),
        candidate_ms=_summary(times[0]),
        champion_ms=_summary(times[1]) if champion is not None else None,
    )
