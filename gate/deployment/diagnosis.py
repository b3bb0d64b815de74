"""The label-order diagnosis: predictions that look like a permutation of the classes.

A model trained or exported with its classes in another order than the held-out set's
scores near zero on the swapped classes, and every number looks random without saying
why. When at least two classes each send at least half of their samples to one other
class, and those classes map one to one (a swap, a rotation), the verdict says so and
names the mapping. It is a finding for the reader, not a rule: it never changes the
decision (the accuracy rules do).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from gate.metrics import ClassificationMetrics
from gate.verdict import Verdict

#: The share of a class's samples that must land on one other class.
PERMUTED_SHARE = 0.5


def _dominant_other(confusion: npt.NDArray[np.int64]) -> dict[int, tuple[int, float]]:
    """Class -> (the other class most of its samples are predicted as, that share), for
    the classes sending at least PERMUTED_SHARE of their samples to one other class."""
    found = {}
    for i, row in enumerate(confusion):
        support = int(row.sum())
        if support == 0:
            continue
        others = row.copy()
        others[i] = -1
        j = int(np.argmax(others))
        share = float(row[j]) / support
        if share >= PERMUTED_SHARE:
            found[i] = (j, share)
    return found


def label_order(metrics: ClassificationMetrics) -> dict[str, Any] | None:
    """The diagnostic when the predictions look permuted, else None."""
    mapping = _dominant_other(metrics.confusion)
    support = metrics.confusion.sum(axis=1)
    targets = [j for j, _ in mapping.values()]
    closed = all(j in mapping or support[j] == 0 for j in targets)  # swaps and cycles, not one bad class
    if len(mapping) < 2 or len(set(targets)) != len(targets) or not closed:
        return None
    names = metrics.classes
    pairs = [
        {"actual": names[i], "predicted": names[j], "share": round(share, 4), "samples": int(metrics.confusion[i, j])}
        for i, (j, share) in mapping.items()
    ]
    shown = ", ".join(f"{names[i]}→{names[j]} {round(share * 100)} %" for i, (j, share) in mapping.items())
    return {
        "kind": "label_order",
        "message": f"predictions look permuted: {shown}; check the model's class order",
        "mapping": pairs,
    }


def diagnose(verdict: Verdict, metrics: ClassificationMetrics) -> None:
    """Add the label-order diagnostic to the verdict when the predictions call for it."""
    found = label_order(metrics)
    if found is not None:
        verdict.diagnostics = [*(verdict.diagnostics or []), found]
