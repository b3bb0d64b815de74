"""The leakage report: how many held-out samples nearly duplicate a training image,
and the closest of them, as a policy rule and the verdict's leakage section see it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gate.leakage.fileformat import Fingerprints
from gate.leakage.index import NearDuplicateIndex, NearMatches
from gate.leakage.phash import as_hashes


@dataclass(frozen=True)
class LeakExample:
    """A held-out sample that nearly duplicates a training image."""

    held_out_index: int
    #: The held-out sample's id (e.g. its path in the dataset) when the caller gave ids.
    held_out_id: str | None
    train_index: int
    train_path: str
    distance: int


@dataclass(frozen=True, eq=False)
class LeakageReport:
    """What :func:`find_leaks` found.

    ``leaked`` held-out samples (``rate`` = leaked / held_out_count) lie within
    ``max_hamming`` bits of a training image; ``examples`` are the closest of them,
    by (distance, held-out index), at most the number asked for; ``matches`` lists
    them all.
    """

    max_hamming: int
    held_out_count: int
    train_count: int
    train_sha256: str
    leaked: int
    rate: float
    examples: tuple[LeakExample, ...]
    matches: NearMatches

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (without the full match list)."""
        return {
            "max_hamming": self.max_hamming,
            "held_out": self.held_out_count,
            "train": self.train_count,
            "train_sha256": self.train_sha256,
            "leaked": self.leaked,
            "rate": self.rate,
            "examples": [
                {
                    "held_out_index": e.held_out_index,
                    "held_out_id": e.held_out_id,
                    "train_index": e.train_index,
                    "train_path": e.train_path,
                    "distance": e.distance,
                }
                for e in self.examples
            ],
        }


def find_leaks(
    held_out: npt.ArrayLike,
    train: Fingerprints,
    max_hamming: int,
    *,
    held_out_ids: Sequence[str] | None = None,
    max_examples: int = 20,
) -> LeakageReport:
    """Held-out hashes (e.g. from :func:`hash_dataset`) within ``max_hamming`` bits of a
    training fingerprint. ``held_out_ids``, when given, names the samples in the
    examples. An empty held-out set is a ``ValueError`` (its rate is undefined)."""
    held = as_hashes(held_out, "held_out")
    if not len(held):
        raise ValueError("held_out is empty: the leakage rate of no samples is undefined")
    if held_out_ids is not None and len(held_out_ids) != len(held):
        raise ValueError(f"{len(held_out_ids)} held_out_ids for {len(held)} hashes")
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 0:
        raise ValueError(f"max_examples must be a non-negative integer, got {max_examples!r}")
    matches = NearDuplicateIndex(train.hashes).query(held, max_hamming)
    closest = np.lexsort((matches.held_out_index, matches.distance))[:max_examples]
    examples = tuple(
        LeakExample(
            held_out_index=int(matches.held_out_index[k]),
            held_out_id=None if held_out_ids is None else held_out_ids[int(matches.held_out_index[k])],
            train_index=int(matches.train_index[k]),
            train_path=train.paths[int(matches.train_index[k])],
            distance=int(matches.distance[k]),
        )
        for k in closest
    )
    return LeakageReport(
        max_hamming=max_hamming,
        held_out_count=len(held),
        train_count=len(train),
        train_sha256=train.sha256,
        leaked=len(matches),
        rate=len(matches) / len(held),
        examples=examples,
        matches=matches,
    )
