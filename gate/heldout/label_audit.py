"""The label audit of one held-out set: confident learning run on the candidate's
predictions table, and on the champion's too when there is one.

Without a champion the suspects are the samples confident learning flags from the
candidate's probabilities. With a champion they are the samples flagged from *both*
models' probabilities: a label two independently trained models confidently contradict
is much stronger evidence than one model's disagreement, which may be that model's own
error. The samples only one model flags are counted (``candidate_only``,
``champion_only``), not listed.

The audit becomes the verdict's ``dataset_audit.label_issues``; the ``label_quality``
rule (:mod:`gate.policy.heldout_rules`) judges it, and ``--label-issues-out`` writes its
suspects for the set's owner to review.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gate.heldout.label_issues import SparseProbabilities, find_label_suspects
from gate.predictions import PredictionTable

#: The most suspects the verdict lists (the count is always the full one): a verdict
#: stays a document of reasonable size even for a set with many bad labels.
LISTED_LIMIT = 10_000


@dataclass(frozen=True)
class LabelIssue:
    """One suspected label error."""

    index: int  # position in the set
    sample_id: str
    given: str  # the label the set gives
    suggested: str  # the candidate's most probable class
    confidence: float  # the probability of the suggested class (both models' mean with a champion)
    label_score: float  # the probability of the given label (idem)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample_id": self.sample_id,
            "given_label": self.given,
            "suggested_label": self.suggested,
            "confidence": round(self.confidence, 6),
            "given_label_probability": round(self.label_score, 6),
        }


@dataclass(frozen=True)
class LabelAudit:
    """The suspects of one set, most doubtful first (lowest probability of the given label)."""

    samples: int
    models: tuple[str, ...]  # "candidate", and "champion" when both were asked
    issues: tuple[LabelIssue, ...]
    support: dict[str, int]  # samples per given label
    suspects_per_class: dict[str, int]
    candidate_only: int = 0  # flagged from the candidate alone (with a champion)
    champion_only: int = 0

    @property
    def count(self) -> int:
        return len(self.issues)

    @property
    def rate(self) -> float:
        return self.count / self.samples if self.samples else 0.0

    def remaining(self) -> dict[str, int]:
        """Samples per class once the suspects are set aside."""
        return {name: n - self.suspects_per_class.get(name, 0) for name, n in self.support.items()}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": "confident_learning",
            "models": list(self.models),
            "samples": self.samples,
            "count": self.count,
            "rate": self.rate,
            "per_class": dict(self.suspects_per_class),
            "issues": [issue.to_dict() for issue in self.issues[:LISTED_LIMIT]],
        }
        if self.count > LISTED_LIMIT:
            out["listed"] = LISTED_LIMIT
        if len(self.models) > 1:
            out["candidate_only"], out["champion_only"] = self.candidate_only, self.champion_only
        return out


def table_probabilities(table: PredictionTable) -> SparseProbabilities:
    """What a predictions table knows of each sample's probabilities (see
    :class:`SparseProbabilities`); a table without ``label_score`` gives the label's
    probability from the ranking, 0 where the label is not ranked."""
    scores = table.top_k_score.astype(np.float64)
    if table.label_score is not None:
        given = table.label_score.astype(np.float64)
    else:
        given = np.where(table.top_k_class == table.label[:, None], scores, 0.0).max(axis=1, initial=0.0)
    return SparseProbabilities(table.label, given, table.top_k_class, scores, len(table.classes))


def audit_labels(candidate: PredictionTable, champion: PredictionTable | None = None) -> LabelAudit:
    """The label audit of the set both tables cover (the same samples, in the same order)."""
    mine = table_probabilities(candidate)
    flagged = find_label_suspects(mine).mask
    models: tuple[str, ...] = ("candidate",)
    others: list[SparseProbabilities] = []
    only = (0, 0)
    if champion is not None:
        theirs = table_probabilities(champion)
        second = find_label_suspects(theirs).mask
        only = (int((flagged & ~second).sum()), int((second & ~flagged).sum()))
        flagged, models, others = flagged & second, ("candidate", "champion"), [theirs]
    names = candidate.classes
    support = np.bincount(candidate.label, minlength=len(names))
    per_class = np.bincount(candidate.label[flagged], minlength=len(names))
    return LabelAudit(
        samples=len(candidate),
        models=models,
        issues=_issues(candidate, mine, others, np.flatnonzero(flagged)),
        support={name: int(support[i]) for i, name in enumerate(names)},
        suspects_per_class={name: int(per_class[i]) for i, name in enumerate(names) if per_class[i]},
        candidate_only=only[0],
        champion_only=only[1],
    )


def _issues(
    table: PredictionTable,
    mine: SparseProbabilities,
    others: list[SparseProbabilities],
    rows: npt.NDArray[np.int64],
) -> tuple[LabelIssue, ...]:
    suggested = table.predicted[rows]
    views = [mine, *others]
    confidence = np.mean([_probability_of(v, suggested, rows) for v in views], axis=0) if len(rows) else []
    given = np.mean([v.label_score[rows] for v in views], axis=0) if len(rows) else []
    order = np.argsort(given, kind="stable")
    names = table.classes
    return tuple(
        LabelIssue(
            index=int(rows[o]),
            sample_id=str(table.sample_id[rows[o]]),
            given=names[int(table.label[rows[o]])],
            suggested=names[int(suggested[o])],
            confidence=float(confidence[o]),
            label_score=float(given[o]),
        )
        for o in order
    )


def _probability_of(
    view: SparseProbabilities, classes: npt.NDArray[np.int64], rows: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Each sample's probability of its own class in ``classes`` (0 where not ranked)."""
    ranked = view.top_class[rows] == classes[:, None]
    out: npt.NDArray[np.float64] = np.where(ranked, view.top_score[rows], 0.0).max(axis=1, initial=0.0)
    return out
