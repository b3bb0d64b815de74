"""What an inference engine is: one pass of a model over a labelled set, giving the
predictions table (:mod:`gate.predictions`) and a description of how it ran.

:mod:`gate.engines.local` runs in this process; :mod:`gate.engines.ray` shards the set
over a Ray cluster. Both answer the same table for the same model and set; everything
the verdict says is computed from it by the caller (:mod:`gate.evaluation`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gate.datasets.metadata import metadata_columns
from gate.errors import ModelError
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


@dataclass(frozen=True)
class RunOptions:
    """How to run: the requested provider, the batch size (None: chosen per model), a
    ``progress(done, total)`` callback, and the caches an engine may use (sessions, tensors)."""

    provider: Provider
    batch_size: int | None
    progress: ProgressFn | None
    caches: Caches


class InferenceEngine(Protocol):
    def run(self, model: ModelInput, dataset: Dataset, options: RunOptions) -> EngineResult:
        """Run ``model`` over every sample of ``dataset``; a GateError for anything that
        stops it (a partial table is never returned)."""
        ...


def read_model(
    model: bytes | str | os.PathLike[str], what: str, name: str | None, expected_sha256: str | None
) -> ModelInput:
    """The model's bytes, read once, and their SHA-256, computed once (and checked against
    ``expected_sha256`` when the caller knows what the file should hold)."""
    if isinstance(model, bytes):
        data, where = model, "<bytes>"
    else:
        path = Path(model)
        where = str(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError as e:
            raise ModelError(f"{what} file not found: {path}") from e
        except IsADirectoryError as e:
            raise ModelError(f"{what} path is a directory, not an ONNX file: {path}") from e
        except OSError as e:
            raise ModelError(f"cannot read {what} file {path}: {e.strerror}") from e
    sha = hashlib.sha256(data).hexdigest()
    source = name or where  # messages name the model as the caller does
    if expected_sha256 is not None and sha != expected_sha256.lower():
        raise ModelError(
            f"{what} file {source} changed or damaged on disk: its sha256 is {sha}, expected {expected_sha256}"
        )
    return ModelInput(data, sha, source)


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
        metadata=metadata_columns(dataset.metadata),
        label_score=predictions.label_scores,
    )
