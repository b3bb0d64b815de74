"""Near-duplicate groups inside one held-out set, from the 64-bit perceptual hashes the
leakage check computes (:func:`gate.leakage.hash_dataset`, kept by the hash cache).

Two samples are near-duplicates when their hashes differ in at most ``max_hamming``
bits; groups are the connected components of that relation (a chain of near copies is
one group). A group whose samples carry different labels is a *conflict*: at least one of
its labels is wrong, or the classes cannot be told apart from the image. The redundant
samples (each group's size minus one) count the same image more than once in every
metric.

The search compares every pair of distinct hash values, in blocks sized for the cache:
about a second for 20,000 distinct hashes on one core, quadratic beyond (identical hashes,
exact copies, are merged first and cost nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gate.leakage.index import _popcount

#: The most groups the verdict lists (conflicts first, then the largest groups).
LISTED_GROUPS = 1_000
#: Pairwise distances computed at once (64-bit each: 32 MiB).
_BLOCK = 1 << 22


@dataclass(frozen=True)
class DuplicateGroup:
    members: tuple[int, ...]  # sample positions, ascending
    labels: tuple[int, ...]  # their labels, in the same order

    @property
    def conflict(self) -> bool:
        return len(set(self.labels)) > 1


@dataclass(frozen=True)
class DuplicateAudit:
    samples: int
    max_hamming: int
    groups: tuple[DuplicateGroup, ...]  # conflicts first, then by size, then by first member

    @property
    def redundant(self) -> int:
        """Samples beyond the first of each group."""
        return sum(len(g.members) - 1 for g in self.groups)

    @property
    def rate(self) -> float:
        return self.redundant / self.samples if self.samples else 0.0

    @property
    def conflicts(self) -> tuple[DuplicateGroup, ...]:
        return tuple(g for g in self.groups if g.conflict)

    def to_dict(self, sample_ids: Sequence[str], classes: Sequence[str]) -> dict[str, Any]:
        return {
            "max_hamming": self.max_hamming,
            "samples": self.samples,
            "group_count": len(self.groups),
            "redundant": self.redundant,
            "rate": self.rate,
            "conflict_count": len(self.conflicts),
            "groups": [
                {
                    "sample_ids": [str(sample_ids[i]) for i in g.members],
                    "labels": [classes[y] for y in g.labels],
                    "conflict": g.conflict,
                }
                for g in self.groups[:LISTED_GROUPS]
            ],
        }


def near_pairs(hashes: npt.NDArray[np.uint64], max_hamming: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Index pairs (i < j) of ``hashes`` within ``max_hamming`` bits of each other."""
    n = len(hashes)
    rows = max(1, _BLOCK // max(n, 1))
    firsts, seconds = [], []
    for start in range(0, n, rows):
        block = hashes[start : start + rows]
        near = _popcount(block[:, None] ^ hashes[None, :]) <= max_hamming
        i, j = np.nonzero(near)
        i += start
        keep = i < j
        firsts.append(i[keep])
        seconds.append(j[keep])
    if not firsts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(firsts).astype(np.int64), np.concatenate(seconds).astype(np.int64)


def components(n: int, first: npt.NDArray[np.int64], second: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The connected component of each of ``n`` nodes (its smallest member), given edges."""
    comp = np.arange(n, dtype=np.int64)
    while True:
        low = np.minimum(comp[first], comp[second])
        nxt = comp.copy()
        np.minimum.at(nxt, first, low)
        np.minimum.at(nxt, second, low)
        nxt = nxt[nxt]  # pointer jumping: a long chain settles in a few rounds
        if np.array_equal(nxt, comp):
            return comp
        comp = nxt


def find_duplicates(hashes: npt.ArrayLike, labels: npt.ArrayLike, max_hamming: int) -> DuplicateAudit:
    """The near-duplicate groups of a set whose samples have ``hashes`` and ``labels``."""
    if isinstance(max_hamming, bool) or not 0 <= max_hamming <= 64:
        raise ValueError(f"max_hamming must be an integer from 0 to 64, got {max_hamming!r}")
    h = np.asarray(hashes, dtype=np.uint64)
    y = np.asarray(labels, dtype=np.int64)
    distinct, inverse = np.unique(h, return_inverse=True)
    comp = components(len(distinct), *near_pairs(distinct, max_hamming))[inverse.reshape(-1)]
    order = np.argsort(comp, kind="stable")
    starts = np.flatnonzero(np.r_[True, comp[order][1:] != comp[order][:-1]])
    groups = []
    for members in np.split(order, starts[1:]):
        if len(members) > 1:
            ordered = np.sort(members)
            groups.append(DuplicateGroup(tuple(int(m) for m in ordered), tuple(int(v) for v in y[ordered])))
    groups.sort(key=lambda g: (not g.conflict, -len(g.members), g.members[0]))
    return DuplicateAudit(len(h), max_hamming, tuple(groups))
