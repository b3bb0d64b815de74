"""Abstention: the model answers only when its confidence (the probability of its top
class) reaches a threshold, and is judged on the samples it answers.

* **coverage**: the share of samples answered (confidence >= threshold);
* **selective accuracy**: the share of answered samples predicted right;
* **per-class recall** on the answered samples: of the answered samples labelled ``c``,
  the share predicted ``c``;
* the **risk-coverage curve**: for every threshold the table's confidences allow, the
  coverage and the risk (1 - selective accuracy); its area (AURC) is lower for a model
  whose confidence ranks its own errors last.

All of it is read from the predictions table's ``confidence`` column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gate.predictions import PredictionTable

#: Points of the risk-coverage curve the verdict keeps (evenly spread over coverage).
CURVE_POINTS = 101


@dataclass(frozen=True)
class SelectivePoint:
    """The model abstaining below one confidence threshold."""

    threshold: float
    samples: int
    answered: int
    correct: int
    class_answered: dict[str, int]  # answered samples per label
    class_correct: dict[str, int]  # of which predicted right

    @property
    def coverage(self) -> float | None:
        return self.answered / self.samples if self.samples else None

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.answered if self.answered else None

    def recall(self, name: str) -> float | None:
        n = self.class_answered[name]
        return self.class_correct[name] / n if n else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "coverage": self.coverage,
            "answered": self.answered,
            "accuracy": self.accuracy,
            "per_class_recall": {name: self.recall(name) for name in self.class_answered},
        }


def selective_at(table: PredictionTable, threshold: float) -> SelectivePoint:
    """The answered samples at ``threshold`` and how right they are. The table keeps
    confidences as 32-bit floats, so the threshold is read at that precision too: a
    sample whose probability is 0.9 (stored as 0.89999998) is answered at threshold 0.9."""
    answered = table.confidence >= np.float32(threshold)
    right = answered & table.correct
    k = len(table.classes)
    per_answered = np.bincount(table.label[answered], minlength=k)
    per_correct = np.bincount(table.label[right], minlength=k)
    return SelectivePoint(
        threshold=threshold,
        samples=len(table),
        answered=int(answered.sum()),
        correct=int(right.sum()),
        class_answered={name: int(per_answered[i]) for i, name in enumerate(table.classes)},
        class_correct={name: int(per_correct[i]) for i, name in enumerate(table.classes)},
    )


def risk_coverage(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> dict[str, Any]:
    """The risk-coverage curve (at most :data:`CURVE_POINTS` points, highest threshold
    first) and the area under it, from per-sample confidences and correctness."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    n = len(conf)
    if n == 0:
        return {"points": [], "aurc": None}
    order = np.argsort(-conf, kind="stable")
    conf, hits = conf[order], np.cumsum(ok[order])
    # one point per distinct confidence: answering every sample at or above it
    last = np.flatnonzero(np.r_[conf[1:] != conf[:-1], True])
    answered = last + 1
    risk = 1.0 - hits[last] / answered
    coverage = answered / n
    aurc = float(np.sum(risk * np.diff(np.r_[0.0, coverage])))
    keep = np.unique(np.searchsorted(coverage, np.linspace(0.0, 1.0, CURVE_POINTS)[1:], side="left"))
    keep = np.unique(np.r_[0, keep[keep < len(coverage)], len(coverage) - 1])
    points = [{"threshold": float(conf[last[i]]), "coverage": float(coverage[i]), "risk": float(risk[i])} for i in keep]
    return {"points": points, "aurc": aurc}
