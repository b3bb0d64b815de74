"""What an inference engine is: one pass of a model over a labelled set, giving the
predictions table (:mod:`gate.predictions`) and a description of how it ran.

:mod:`gate.engines.local` runs in this process; :mod:`gate.engines.ray` shards the set
over a Ray cluster. Both answer the same table for the same model and set; everything
the verdict says is computed from it by the caller (:mod:`gate.evaluation`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gate.predictions import PredictionTable, build_table

if TYPE_CHECKING:
    from gate.cache import Caches
    from gate.datasets import Dataset
    from gate.inference import Predictions
    from gate.providers import Provider

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ModelInput:
    """A model to run: its bytes, read once, and their SHA-256, computed once."""

    data: bytes
    sha256: str
    source: str  # how messages name the model


@dataclass
class EngineResult:
    """One engine run: the table, what ran it (the verdict's ``runtime``), and which caches it reused."""

    table: PredictionTable
    runtime: dict[str, Any]
    cache: dict[str, str] = field(default_factory=dict)


class InferenceEngine(Protocol):
    def run(
        self,
        model: ModelInput,
        dataset: Dataset,
        *,
        provider: Provider,
        batch_size: int | None,
        progress: ProgressFn | None,
        caches: Caches,
    ) -> EngineResult:
        """Run ``model`` over every sample of ``dataset``; a GateError for anything that
        stops it (a partial table is never returned)."""
        ...


def prediction_table(dataset: Dataset, predictions: Predictions) -> PredictionTable:
    """The table of a model's ``predictions`` on ``dataset``, in dataset order."""
    return build_table(
        classes=dataset.classes,
        sample_ids=dataset.sample_ids,
        labels=dataset.labels,
        predicted=predictions.labels,
        confidence=predictions.confidence,
        top_class=predictions.top_classes,
        top_score=predictions.top_scores,
    )
