"""The records the deployment rules judge: what a model declares (its signature, opsets,
size, metadata), how long it takes and how much memory it holds, and how its answers on
two providers (or against a reference model) compare.

Plain data without ONNX or ONNX Runtime, so that :mod:`gate.policy` can read it; the
modules beside this one measure it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: A tensor dimension: a size, a symbolic name (e.g. "N"), or None when unknown.
Dim = int | str | None


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as the model declares it."""

    name: str
    dtype: str  # numpy's name for the element type (float32, float16, uint8...)
    shape: tuple[Dim, ...] | None  # None: no shape declared


@dataclass(frozen=True)
class ModelDescription:
    """What a model file says about itself (read with onnx, no session created)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opsets: dict[str, int]  # domain ("" is the default ONNX domain) -> version
    size_bytes: int
    metadata_classes: str | None  # the raw `classes` metadata value, when present
    checker_error: str | None  # onnx.checker's complaint with full_check, or None


@dataclass(frozen=True)
class LatencyRun:
    """One timed measurement: candidate (and champion, interleaved) at one batch size."""

    batch: int
    runs: int  # timed runs of each model
    warmup: int
    threads: int
    provider: str
    device: str
    candidate_ms: dict[str, float]  # p50, p90, p99, mean, min, max
    champion_ms: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "batch": self.batch,
            "runs": self.runs,
            "warmup": self.warmup,
            "threads": self.threads,
            "provider": self.provider,
            "device": self.device,
            "candidate_ms": self.candidate_ms,
        }
        if self.champion_ms is not None:
            out["champion_ms"] = self.champion_ms
        return out


@dataclass(frozen=True)
class MemoryUse:
    """What one session of the model holds, measured in a process of its own."""

    batch: int
    provider: str
    rss_mb: float  # peak resident memory the session added to a fresh process
    gpu_mb: float | None  # device memory the process held, when measured
    gpu_note: str | None  # why the device memory was not measured
    size_mb: float  # the model file

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "provider": self.provider,
            "peak_rss_mb": self.rss_mb,
            "gpu_mb": self.gpu_mb,
            "gpu_note": self.gpu_note,
            "model_size_mb": self.size_mb,
        }


@dataclass(frozen=True)
class ParityRun:
    """The same samples through two runs (two providers, or candidate and reference)."""

    left: str  # how the first run is named ("CPUExecutionProvider", "candidate")
    right: str
    samples: int
    disagreements: int  # samples whose predicted class differs
    max_prob_diff: float  # largest absolute difference of one class's probability
    examples: list[dict[str, Any]] = field(default_factory=list)
    unavailable: str | None = None  # why the comparison could not be made
    reference_sha256: str | None = None  # the reference model's bytes, when one was compared

    @property
    def disagreement(self) -> float:
        return self.disagreements / self.samples if self.samples else 0.0

    def to_dict(self) -> dict[str, Any]:
        if self.unavailable is not None:
            return {"left": self.left, "right": self.right, "unavailable": self.unavailable}
        return {
            "left": self.left,
            "right": self.right,
            "samples": self.samples,
            "disagreements": self.disagreements,
            "disagreement": self.disagreement,
            "max_prob_diff": self.max_prob_diff,
            "examples": self.examples,
        } | ({} if self.reference_sha256 is None else {"reference_sha256": self.reference_sha256})


@dataclass(frozen=True)
class DeploymentEvidence:
    """Everything the deployment rules of one policy need, keyed by rule id."""

    model: ModelDescription | None = None
    latency: dict[str, LatencyRun] = field(default_factory=dict)
    memory: dict[str, MemoryUse] = field(default_factory=dict)
    parity: dict[str, ParityRun] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """What goes into the verdict's ``metrics`` (under ``latency``, ``memory``, ``parity``)."""
        out: dict[str, Any] = {}
        if self.latency:
            out["latency"] = {rid: run.to_dict() for rid, run in self.latency.items()}
        if self.memory:
            out["memory"] = {rid: use.to_dict() for rid, use in self.memory.items()}
        if self.parity:
            out["parity"] = {rid: run.to_dict() for rid, run in self.parity.items()}
        return out
