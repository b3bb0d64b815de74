"""Suspected label errors in a held-out set, by confident learning.

The method (Northcutt, Jiang and Chuang, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 2021) needs, per sample, the model's probability of each class,
and judges each class against its own bar:

1. **Per-class thresholds**: ``t_j`` is the mean probability of class ``j`` over the
   samples labelled ``j`` (how sure the model usually is of that class when the label is
   right, or mostly right).
2. **Confident joint**: a sample labelled ``i`` counts in cell ``(i, j)`` when the model's
   probability of ``j`` reaches ``t_j``; when several classes reach their bars, ``j`` is
   the most probable class. Samples reaching no bar are not counted.
3. **Calibration**: each row is scaled to the number of samples carrying that label, the
   whole to the set's size, and rounded to counts keeping each row's total.
4. **Pruning by noise rate**: for each label ``i`` and other class ``j``, the ``C[i, j]``
   samples labelled ``i`` with the largest margin ``p_j - p_i`` are suspects.
5. A suspect whose label is the model's own top class (within 1e-6) is dropped.

This is cleanlab's ``find_label_issues`` with its default ``filter_by=
"prune_by_noise_rate"``; tests/test_heldout_labels.py compares the two on the same
probabilities and finds the same suspects. The differences, documented in
docs/heldout-quality.md: gate does not raise a class's diagonal count to at least one
sample before pruning (cleanlab's ``min_examples_per_class``), and between equal margins
it prunes the earlier sample, where cleanlab's order is its sort's.

Where the probabilities come from: the predictions table keeps the k = min(5, K) most
probable classes of each sample and the probability of its given label
(``label_score``). With K <= 5 that is every probability. With more classes, a class
outside a sample's top k is read as probability 0: such a class was below the sample's
k-th probability, so it rarely reaches its bar or wins a margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Probabilities this close count as equal (cleanlab's tolerance, for the same answers).
_CLOSE = 1e-6


@dataclass(frozen=True)
class SparseProbabilities:
    """The probabilities a predictions table knows, per sample: its ranked classes and
    their probabilities, and its given label's probability (which the ranking may hold
    too). Classes absent from a row are read as probability 0."""

    labels: npt.NDArray[np.int64]  # (N,) the given label
    label_score: npt.NDArray[np.float64]  # (N,) the probability of the given label
    top_class: npt.NDArray[np.int64]  # (N, k) the most probable classes, best first
    top_score: npt.NDArray[np.float64]  # (N, k) their probabilities
    n_classes: int

    @classmethod
    def dense(cls, labels: npt.ArrayLike, probs: npt.ArrayLike) -> SparseProbabilities:
        """From a full (N, K) probability matrix (every class ranked)."""
        p = np.asarray(probs, dtype=np.float64)
        y = np.asarray(labels, dtype=np.int64)
        order = np.argsort(-p, axis=1, kind="stable")
        rows = np.arange(len(p))
        return cls(y, p[rows, y], order, np.take_along_axis(p, order, axis=1), p.shape[1])

    def probability(self, j: int, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """The probability of class ``j`` for the samples ``rows`` (0 where unknown)."""
        known = self.top_class[rows] == j
        out = np.where(known, self.top_score[rows], 0.0).max(axis=1, initial=0.0)
        given = self.labels[rows] == j
        out[given] = self.label_score[rows][given]
        result: npt.NDArray[np.float64] = out
        return result


@dataclass(frozen=True)
class LabelSuspects:
    """What confident learning found: which samples, and the counts behind the choice."""

    mask: npt.NDArray[np.bool_]  # (N,) suspected label errors
    thresholds: npt.NDArray[np.float64]  # (K,) per-class thresholds (inf: no sample has the label)
    confident_joint: npt.NDArray[np.int64]  # (K, K) calibrated counts, rows given label, columns guess

    @property
    def count(self) -> int:
        return int(self.mask.sum())


def per_class_thresholds(p: SparseProbabilities) -> npt.NDArray[np.float64]:
    """``t_j``: the mean probability of ``j`` over the samples labelled ``j``; infinite for a
    class no sample carries (no sample can reach it)."""
    sums = np.bincount(p.labels, weights=p.label_score, minlength=p.n_classes)
    counts = np.bincount(p.labels, minlength=p.n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: npt.NDArray[np.float64] = np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)
    return out


def confident_guesses(p: SparseProbabilities, thresholds: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Each sample's confidently guessed class (step 2 of the module docstring), -1 when its
    probabilities reach no class's threshold."""
    classes = np.concatenate([p.top_class, p.labels[:, None]], axis=1)
    scores = np.concatenate([p.top_score, p.label_score[:, None]], axis=1)
    confident = scores >= thresholds[classes] - _CLOSE
    # the label's own column repeats a ranked class when the label is ranked: count it once
    confident[:, -1] &= ~(p.top_class == p.labels[:, None]).any(axis=1)
    many = confident.sum(axis=1)
    first = np.where(confident, classes, p.n_classes).min(axis=1)
    guess = np.where(many > 1, p.top_class[:, 0], first)
    out: npt.NDArray[np.int64] = np.where(many > 0, guess, -1).astype(np.int64)
    return out


def calibrated_joint(labels: npt.NDArray[np.int64], guess: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.int64]:
    """The confident joint, scaled to the label counts and the set's size, as counts."""
    counted = guess >= 0
    joint = np.bincount(labels[counted] * k + guess[counted], minlength=k * k).reshape(k, k).astype(np.float64)
    label_counts = np.bincount(labels, minlength=k).astype(np.float64)
    rows = joint.sum(axis=1)
    scaled = joint / np.maximum(rows, 1e-12)[:, None] * label_counts[:, None]
    total = scaled.sum()
    if total > 0:
        scaled *= len(labels) / total
    return np.stack([_round_keeping_total(row) for row in scaled]) if k else scaled.astype(np.int64)


def _round_keeping_total(row: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Counts from a row of reals that add up to the row's rounded total: each rounded to
    the nearest, then the entries that rounding moved furthest the wrong way moved by one
    until the total is right. Entries with equal remainders (equal counts in one row scale
    to equal values) are taken in the order of numpy's default sort of the remainders, the
    order cleanlab takes them in, so that the two agree on such ties."""
    counts = np.round(row)
    short = int(round(float(row.sum())) - counts.sum())
    if short:
        order = np.argsort(row - counts)  # remainders, most negative first
        picked = order[::-1][:short] if short > 0 else order[:-short]
        counts[picked] += 1 if short > 0 else -1
    out: npt.NDArray[np.int64] = counts.astype(np.int64)
    return out


def prune_by_noise_rate(p: SparseProbabilities, joint: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Step 4: for each off-diagonal cell (i, j), its count of samples labelled ``i`` with
    the largest ``p_j - p_i``."""
    mask = np.zeros(len(p.labels), dtype=bool)
    for i, j in zip(*np.nonzero(joint), strict=True):
        rows = np.flatnonzero(p.labels == i)
        if i == j or len(rows) <= 1:  # a class of one sample is never pruned (as in cleanlab)
            continue
        margin = p.probability(int(j), rows) - p.label_score[rows]
        mask[rows[np.argsort(-margin, kind="stable")[: int(joint[i, j])]]] = True
    return mask


def find_label_suspects(p: SparseProbabilities) -> LabelSuspects:
    """The samples whose given label the probabilities confidently contradict."""
    thresholds = per_class_thresholds(p)
    guess = confident_guesses(p, thresholds)
    joint = calibrated_joint(p.labels, guess, p.n_classes)
    mask = prune_by_noise_rate(p, joint)
    mask &= p.label_score + _CLOSE < p.top_score[:, 0]  # the model's own top class is the label
    return LabelSuspects(mask, thresholds, joint)
