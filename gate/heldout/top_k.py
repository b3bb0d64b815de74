"""Top-k accuracy and per-class top-k recall, from the predictions table's ranked classes.

A sample is a top-k hit when its label is among its k most probable classes (the table
ranks k = min(5, K)). ``top_k_accuracy`` for k = 2..5 is a global metric a ``metric`` rule
may name (``top_3_accuracy``, see :data:`gate.metrics.TOP_K_METRICS`); the verdict lists
the whole section, with each class's top-k recall, when a policy names one of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gate.metrics import TOP_K_METRICS
from gate.predictions import TOP_K, PredictionTable


def top_k_section(table: PredictionTable) -> dict[str, Any]:
    """``{"accuracy": {"top_1": ..}, "per_class_recall": {class: {"top_1": ..}}}`` for k = 1..5
    (k beyond the ranked classes: every label is ranked, so 1.0)."""
    ranked = table.top_k_class.shape[1]
    hit_rank = table.top_k_class == table.label[:, None]  # (N, k), at most one True per row
    hits = np.cumsum(hit_rank, axis=1).astype(bool)  # label among the first j+1
    support = np.bincount(table.label, minlength=len(table.classes))
    accuracy: dict[str, float | None] = {}
    recall: dict[str, dict[str, float | None]] = {name: {} for name in table.classes}
    for k in range(1, TOP_K + 1):
        column = hits[:, min(k, ranked) - 1] if ranked else np.zeros(len(table), dtype=bool)
        accuracy[f"top_{k}"] = float(column.mean()) if len(table) else None
        per = np.bincount(table.label[column], minlength=len(table.classes))
        for i, name in enumerate(table.classes):
            recall[name][f"top_{k}"] = int(per[i]) / int(support[i]) if support[i] else None
    return {"accuracy": accuracy, "per_class_recall": recall}


def names_top_k(metric_names: set[str]) -> bool:
    """Whether any of ``metric_names`` is a top-k accuracy."""
    return bool(metric_names & set(TOP_K_METRICS))
