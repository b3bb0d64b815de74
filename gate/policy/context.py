"""What rules may look at besides the candidate's metrics.

Most rules judge one confusion matrix (:class:`~gate.metrics.ClassificationMetrics`).
A few need more evidence, which the evaluation gathers only when the policy asks for
it (see :attr:`gate.policy.rules.Rule.needs`):

* ``baseline``: the champion model's run on the same samples (``baseline`` rules);
* ``train_sample``: the candidate's metrics on a sample of its training data
  (``train_test_gap`` rules);
* ``fingerprint``: perceptual hashes of the held-out images and of the training
  images (``leakage`` rules);
* ``robustness``: the candidate's (and the champion's) runs on corrupted copies of the
  held-out images (``robustness`` rules);
* ``heldout``: the audit of the held-out set itself, suspected label errors and
  near-duplicates (``label_quality`` and ``heldout_duplicates`` rules, see
  :mod:`gate.heldout`), which the evaluation computes whenever such a rule is present.

Every rule may also read the candidate's predictions table (:attr:`RuleContext.table`,
always set by an evaluation): per-sample labels, predictions, confidences, top-k and
metadata, from which rules on subgroups, abstention or label quality are computed without
a second inference pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from gate.metrics import ClassificationMetrics
from gate.predictions import PredictionTable
from gate.stats import mcnemar_exact, paired_bootstrap

if TYPE_CHECKING:
    from gate.deployment.evidence import DeploymentEvidence
    from gate.heldout.evidence import HeldoutEvidence

#: What each kind of extra evidence is called in messages, and how a caller provides it.
NEEDS: dict[str, str] = {
    "baseline": "a champion model to compare with (`gate eval --baseline CHAMPION.onnx`; API: baseline_sha256)",
    "train_sample": "a training sample for the dataset (`train_sample:` in the dataset spec)",
    "fingerprint": "a fingerprint file of the training images (`gate fingerprint`, then `--fingerprint FILE`;"
    " API: fingerprint)",
    "robustness": "image samples to corrupt (an image folder, manifest or spec; not an .npz of tensors)",
    "heldout": "the held-out set's audit (suspected label errors from the predictions tables, near-duplicates"
    " from the set's images), which an evaluation computes",
}


@dataclass(frozen=True)
class BaselineRun:
    """The champion's run on the candidate's samples, paired sample by sample."""

    model: dict[str, Any]  # sha256 and name of the champion model
    metrics: ClassificationMetrics
    labels: npt.NDArray[np.int64]  # true class per sample
    champion_correct: npt.NDArray[np.bool_]
    challenger_correct: npt.NDArray[np.bool_]

    def to_dict(self) -> dict[str, Any]:
        """The verdict's ``baseline`` section: the champion, its metrics, and the paired
        comparison (bootstrap interval of the accuracy difference, McNemar table)."""
        interval = paired_bootstrap(self.champion_correct, self.challenger_correct)
        return {
            "model": self.model,
            "metrics": self.metrics.to_dict(),
            "comparison": {
                "accuracy_difference": interval.to_dict() if interval is not None else None,
                "mcnemar": mcnemar_exact(self.champion_correct, self.challenger_correct).to_dict(),
            },
        }


@dataclass(frozen=True)
class TrainSample:
    """The candidate's metrics on a labelled sample of its training data."""

    name: str
    source: str
    metrics: ClassificationMetrics


@dataclass(frozen=True)
class LeakageInputs:
    """Perceptual hashes of the held-out samples and the training fingerprints."""

    heldout_hashes: npt.NDArray[np.uint64]
    sample_ids: list[str]
    fingerprints: Any  # gate.leakage.Fingerprints
    sha256: str  # of the fingerprint file


@dataclass(frozen=True)
class RobustnessRun:
    """Runs on corrupted copies of the held-out set under one seed: the clean table and one
    table per (corruption, severity), rows in the clean set's order; the champion's too
    when there is one (see :mod:`gate.corruptions.evidence`)."""

    seed: int
    clean: PredictionTable
    cells: dict[tuple[str, int], PredictionTable]
    champion_clean: PredictionTable | None = None
    champion_cells: dict[tuple[str, int], PredictionTable] | None = None


@dataclass(frozen=True)
class RuleContext:
    metrics: ClassificationMetrics
    baseline: BaselineRun | None = None
    train_sample: TrainSample | None = None
    leakage: LeakageInputs | None = None
    # the candidate's predictions table; None only when rules are applied to bare metrics
    table: PredictionTable | None = None
    # the model's description and serving measurements, for deployment rules
    deployment: DeploymentEvidence | None = None
    # runs on corrupted images, by seed
    robustness: dict[int, RobustnessRun] | None = None
    # the held-out set's audit (label errors, duplicates), when the policy's rules ask
    heldout: HeldoutEvidence | None = None

    def has(self, need: str) -> bool:
        """Whether the evidence named by ``need`` (a key of NEEDS) is here."""
        return {
            "baseline": self.baseline,
            "train_sample": self.train_sample,
            "fingerprint": self.leakage,
            "robustness": self.robustness,
            "heldout": self.heldout,
        }[need] is not None
