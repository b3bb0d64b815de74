"""Classification metrics, all derived from one confusion matrix.

Pure numpy, O(N + K²): the confusion matrix is one ``bincount`` over the N samples and
every other number comes from its row sums (support), column sums (predicted counts) and
diagonal (true positives).

Undefined values are a decision, never an accident: a ratio whose denominator is zero is
``None`` (``null`` in JSON), never a silent 0. Averages over classes skip undefined
per-class values explicitly; an average with nothing left to average is ``None`` too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "CALIBRATION_BINS",
    "GLOBAL_METRICS",
    "PER_CLASS_METRICS",
    "TOP_K_METRICS",
    "Calibration",
    "ClassMetrics",
    "ClassificationMetrics",
    "MetricInfo",
    "confusion_matrix",
]


@dataclass(frozen=True)
class MetricInfo:
    """What a metric means to a policy: its range and which direction is better."""

    name: str
    low: float
    high: float  # math.inf for unbounded
    higher_is_better: bool
    description: str


#: Every global metric a policy may name, with its range. Keys are the names used in
#: policies and in the verdict JSON's ``metrics`` object.
GLOBAL_METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("accuracy", 0.0, 1.0, True, "share of samples predicted correctly"),
        MetricInfo("balanced_accuracy", 0.0, 1.0, True, "mean recall over classes with samples"),
        MetricInfo("macro_precision", 0.0, 1.0, True, "unweighted mean of defined per-class precision"),
        MetricInfo("macro_recall", 0.0, 1.0, True, "unweighted mean of defined per-class recall"),
        MetricInfo("macro_f1", 0.0, 1.0, True, "unweighted mean of defined per-class F1"),
        MetricInfo("weighted_precision", 0.0, 1.0, True, "support-weighted mean of defined per-class precision"),
        MetricInfo("weighted_recall", 0.0, 1.0, True, "support-weighted mean of per-class recall"),
        MetricInfo("weighted_f1", 0.0, 1.0, True, "support-weighted mean of per-class F1"),
        MetricInfo("mcc", -1.0, 1.0, True, "Matthews correlation coefficient (multi-class)"),
        MetricInfo("cohen_kappa", -1.0, 1.0, True, "Cohen's kappa: agreement beyond chance"),
        MetricInfo("majority_baseline_accuracy", 0.0, 1.0, True, "accuracy of always predicting the largest class"),
        MetricInfo("imbalance_ratio", 1.0, math.inf, False, "largest / smallest class support"),
        MetricInfo(
            "ece",
            0.0,
            1.0,
            False,
            "expected calibration error: confidence vs accuracy over 15 equal-width bins",
        ),
        *(
            MetricInfo(
                f"top_{k}_accuracy", 0.0, 1.0, True, f"share of samples whose label is among the {k} top classes"
            )
            for k in range(2, 6)
        ),
    )
}

#: The top-k accuracies among GLOBAL_METRICS, by k. They are read from the predictions
#: table's top classes (not from the confusion matrix), so metrics built from a bare
#: confusion matrix leave them undefined, and the verdict's ``metrics`` object lists them
#: only when a policy asks (:mod:`gate.heldout.top_k`), keeping its fields as they were.
TOP_K_METRICS: dict[str, int] = {f"top_{k}_accuracy": k for k in range(2, 6)}

#: Equal-width confidence bins of the expected calibration error and the reliability diagram.
CALIBRATION_BINS = 15

# Confidence sums are kept in fixed point (steps of 2⁻³²) so that the bins of separately
# evaluated shards add up to exactly the bins of the whole set, in any order.
_FIXED_POINT = float(1 << 32)

#: Per-class metrics a ``per_class`` rule may name.
PER_CLASS_METRICS: tuple[str, ...] = ("precision", "recall", "f1")


def confusion_matrix(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int) -> npt.NDArray[np.int64]:
    """Count matrix C with C[i, j] = number of samples of actual class i predicted as j."""
    if n_classes < 1:
        raise ValueError(f"n_classes={n_classes} is not valid. It should be >= 1.")
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 1 or p.ndim != 1 or t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must be 1-D and of equal length; got shapes {t.shape} and {p.shape}.")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class indices; got dtype {arr.dtype}.")
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"{name} holds values outside [0, {n_classes}).")
    flat = t.astype(np.int64) * n_classes + p.astype(np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def top_k_hits(y_true: npt.ArrayLike, top_k_class: npt.NDArray[np.int64]) -> tuple[int, ...]:
    """How many samples have their label among their j most probable classes, for each
    j from 1 to the number of ranked classes (``top_k_class``: (N, k), best first)."""
    t = np.asarray(y_true, dtype=np.int64)
    rank_hit = top_k_class == t[:, None]  # at most one True per row
    return tuple(int(x) for x in np.cumsum(rank_hit.sum(axis=0)))


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else float(num) / float(den)


def _mean_defined(values: Sequence[float | None], weights: Sequence[float] | None = None) -> float | None:
    """Mean over the defined values (weighted when weights are given); None if none is."""
    pairs = [(v, 1.0 if weights is None else float(weights[i])) for i, v in enumerate(values) if v is not None]
    total = sum(w for _, w in pairs)
    if not pairs or total == 0:
        return None
    return sum(v * w for v, w in pairs) / total


@dataclass(frozen=True)
class Calibration:
    """Per-bin counts behind the expected calibration error (ECE) and the reliability diagram.

    A sample's *confidence* is the probability the model gave its predicted class. Bin
    ``b`` holds confidences in ``(b/15, (b+1)/15]`` (0 goes to the first bin). ECE is
    ``Σ_b n_b/N · |accuracy_b − mean confidence_b|``. Bins are additive: the bins of two
    disjoint sets, merged, are the bins of their union, exactly.
    """

    counts: npt.NDArray[np.int64]  # samples per bin
    correct: npt.NDArray[np.int64]  # correctly predicted samples per bin
    confidence_fp: npt.NDArray[np.int64]  # sum of confidences per bin, fixed point (2⁻³²)

    @classmethod
    def empty(cls) -> Calibration:
        z = np.zeros(CALIBRATION_BINS, dtype=np.int64)
        return cls(z, z.copy(), z.copy())

    @classmethod
    def from_predictions(cls, correct: npt.ArrayLike, confidence: npt.ArrayLike) -> Calibration:
        ok = np.asarray(correct, dtype=bool)
        conf = np.asarray(confidence, dtype=np.float64)
        if ok.shape != conf.shape or ok.ndim != 1:
            raise ValueError(f"correct and confidence must be 1-D and of equal length; got {ok.shape}, {conf.shape}.")
        if conf.size and not (np.isfinite(conf).all() and conf.min() >= 0.0 and conf.max() <= 1.0):
            raise ValueError("confidences must be probabilities in [0, 1].")
        b = np.clip(np.ceil(conf * CALIBRATION_BINS).astype(np.int64) - 1, 0, CALIBRATION_BINS - 1)
        fixed = np.rint(conf * _FIXED_POINT).astype(np.int64)
        return cls(
            np.bincount(b, minlength=CALIBRATION_BINS).astype(np.int64),
            np.bincount(b, weights=ok, minlength=CALIBRATION_BINS).astype(np.int64),
            _int_bincount(b, fixed),
        )

    def merge(self, other: Calibration) -> Calibration:
        return Calibration(
            self.counts + other.counts, self.correct + other.correct, self.confidence_fp + other.confidence_fp
        )

    @property
    def samples(self) -> int:
        return int(self.counts.sum())

    @property
    def ece(self) -> float | None:
        n = self.samples
        if n == 0:
            return None
        conf = self.confidence_fp.astype(np.float64) / _FIXED_POINT
        return float(np.abs(self.correct - conf).sum() / n)

    def bins(self) -> list[dict[str, Any]]:
        """The reliability diagram: one entry per bin (accuracy and confidence None when empty)."""
        out = []
        for b in range(CALIBRATION_BINS):
            n = int(self.counts[b])
            out.append(
                {
                    "lower": b / CALIBRATION_BINS,
                    "upper": (b + 1) / CALIBRATION_BINS,
                    "count": n,
                    "accuracy": None if n == 0 else int(self.correct[b]) / n,
                    "confidence": None if n == 0 else float(self.confidence_fp[b]) / _FIXED_POINT / n,
                }
            )
        return out


def _int_bincount(bins: npt.NDArray[np.int64], values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Exact integer sums of ``values`` per bin (``np.bincount`` sums weights in float)."""
    out = np.zeros(CALIBRATION_BINS, dtype=np.int64)
    np.add.at(out, bins, values)
    return out


@dataclass(frozen=True)
class ClassMetrics:
    """The numbers of one class, with the counts they came from."""

    name: str
    support: int  # actual samples of the class (row sum)
    predicted: int  # samples predicted as the class (column sum)
    tp: int
    precision: float | None  # tp / predicted; None when the class is never predicted
    recall: float | None  # tp / support; None when the class has no samples
    f1: float | None  # 2tp / (2tp + fp + fn); None only when both are zero

    @property
    def fp(self) -> int:
        return self.predicted - self.tp

    @property
    def fn(self) -> int:
        return self.support - self.tp

    def counts(self, metric: str) -> tuple[int, int]:
        """Numerator and denominator of ``metric`` (for messages like ``12/100``)."""
        if metric == "precision":
            return self.tp, self.predicted
        if metric == "recall":
            return self.tp, self.support
        if metric == "f1":
            return 2 * self.tp, 2 * self.tp + self.fp + self.fn
        raise KeyError(metric)

    def value(self, metric: str) -> float | None:
        if metric not in PER_CLASS_METRICS:
            raise KeyError(metric)
        v: float | None = getattr(self, metric)
        return v


@dataclass(frozen=True)
class ClassificationMetrics:
    """Everything gate knows about a set of predictions, from one confusion matrix."""

    classes: tuple[str, ...]
    confusion: npt.NDArray[np.int64]  # rows actual, columns predicted, in `classes` order
    per_class: tuple[ClassMetrics, ...]
    samples: int
    accuracy: float | None
    balanced_accuracy: float | None
    macro_precision: float | None
    macro_recall: float | None
    macro_f1: float | None
    weighted_precision: float | None
    weighted_recall: float | None
    weighted_f1: float | None
    mcc: float | None
    cohen_kappa: float | None
    majority_baseline_accuracy: float | None
    imbalance_ratio: float | None
    calibration: Calibration | None = None  # known when the model's confidences are
    # samples whose label is among the j most probable classes, for j = 1, 2, ... (as many
    # as the predictions table ranks); known when the table's top classes are
    top_k_hits: tuple[int, ...] | None = None

    @classmethod
    def from_predictions(
        cls,
        y_true: npt.ArrayLike,
        y_pred: npt.ArrayLike,
        classes: Sequence[str],
        confidence: npt.ArrayLike | None = None,
        *,
        top_k_class: npt.NDArray[np.int64] | None = None,
    ) -> ClassificationMetrics:
        calibration = None
        if confidence is not None:
            calibration = Calibration.from_predictions(np.asarray(y_true) == np.asarray(y_pred), confidence)
        out = cls.from_confusion(confusion_matrix(y_true, y_pred, len(classes)), classes, calibration)
        if top_k_class is None:
            return out
        return dataclasses.replace(out, top_k_hits=top_k_hits(y_true, top_k_class))

    @classmethod
    def from_confusion(
        cls, cm: npt.ArrayLike, classes: Sequence[str], calibration: Calibration | None = None
    ) -> ClassificationMetrics:
        c = np.asarray(cm, dtype=np.int64)
        k = len(classes)
        if c.shape != (k, k):
            raise ValueError(f"confusion matrix shape {c.shape} does not match {k} classes.")
        if (c < 0).any():
            raise ValueError("confusion matrix holds negative counts.")
        support = c.sum(axis=1)  # actual per class
        predicted = c.sum(axis=0)  # predicted per class
        tp = np.diag(c)
        n = int(c.sum())

        per_class = tuple(
            ClassMetrics(
                name=str(classes[i]),
                support=int(support[i]),
                predicted=int(predicted[i]),
                tp=int(tp[i]),
                precision=_ratio(tp[i], predicted[i]),
                recall=_ratio(tp[i], support[i]),
                # F1 = 2TP / (2TP + FP + FN) = 2TP / (support + predicted)
                f1=_ratio(2 * tp[i], support[i] + predicted[i]),
            )
            for i in range(k)
        )
        precisions = [m.precision for m in per_class]
        recalls = [m.recall for m in per_class]
        f1s = [m.f1 for m in per_class]
        weights = [float(s) for s in support]

        correct = int(tp.sum())
        # Multi-class MCC (Gorodkin): (c·s − Σ p_k t_k) / sqrt((s² − Σ p_k²)(s² − Σ t_k²))
        cov_tp = float(correct) * n - float(np.dot(predicted, support))
        cov_pp = float(n) * n - float(np.dot(predicted, predicted))
        cov_tt = float(n) * n - float(np.dot(support, support))
        mcc = None if cov_pp * cov_tt == 0 else cov_tp / math.sqrt(cov_pp * cov_tt)
        # Cohen's kappa: (p_o − p_e) / (1 − p_e), p_e the agreement expected by chance
        p_o = _ratio(correct, n)
        p_e = None if n == 0 else float(np.dot(predicted, support)) / (float(n) * n)
        kappa = None if p_o is None or p_e is None or p_e == 1 else (p_o - p_e) / (1 - p_e)
        smallest = int(support.min()) if k else 0
        return cls(
            classes=tuple(str(x) for x in classes),
            confusion=c,
            per_class=per_class,
            samples=n,
            accuracy=p_o,
            balanced_accuracy=_mean_defined(recalls),
            macro_precision=_mean_defined(precisions),
            macro_recall=_mean_defined(recalls),
            macro_f1=_mean_defined(f1s),
            weighted_precision=_mean_defined(precisions, weights),
            weighted_recall=_mean_defined(recalls, weights),
            weighted_f1=_mean_defined(f1s, weights),
            mcc=mcc,
            cohen_kappa=kappa,
            majority_baseline_accuracy=_ratio(int(support.max()), n) if k else None,
            # a class with no samples makes the ratio infinite: undefined, not a number
            imbalance_ratio=_ratio(int(support.max()), smallest) if k else None,
            calibration=calibration,
        )

    @property
    def ece(self) -> float | None:
        return None if self.calibration is None else self.calibration.ece

    def value(self, metric: str) -> float | None:
        """A global metric by its policy name (see GLOBAL_METRICS)."""
        if metric not in GLOBAL_METRICS:
            raise KeyError(metric)
        if metric in TOP_K_METRICS:
            return self.top_k_accuracy(TOP_K_METRICS[metric])
        v: float | None = getattr(self, metric)
        return v

    def top_k_accuracy(self, k: int) -> float | None:
        """The share of samples whose label is among the ``k`` most probable classes;
        None without the table's top classes or samples. When the table ranks fewer than
        ``k`` classes it ranks them all, so every label is among them."""
        if self.top_k_hits is None or self.samples == 0:
            return None
        hits = self.top_k_hits[min(k, len(self.top_k_hits)) - 1]
        return hits / self.samples

    def class_metrics(self, name: str) -> ClassMetrics:
        return self.per_class[self.classes.index(name)]

    def to_dict(self) -> dict[str, Any]:
        """The verdict JSON's ``metrics`` object."""
        out: dict[str, Any] = {"samples": self.samples}
        out.update({name: self.value(name) for name in GLOBAL_METRICS if name not in TOP_K_METRICS})
        out["per_class"] = {
            m.name: {
                "precision": m.precision,
                "recall": m.recall,
                "f1": m.f1,
                "support": m.support,
                "predicted": m.predicted,
                "tp": m.tp,
            }
            for m in self.per_class
        }
        out["confusion_matrix"] = self.confusion.tolist()
        if self.calibration is not None:
            out["calibration"] = {"bins": self.calibration.bins()}
        return out
