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
exact copies, are merged first and cost nothing). The pairs found are folded into the
groups as they pile up, so memory stays bounded (about 600 MiB at most) even when every
image is a near copy of every other, where the pairs alone would need gigabytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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


def _pair_blocks(
    hashes: npt.NDArray[np.uint64], max_hamming: int
) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """The index pairs (i < j) of ``hashes`` within ``max_hamming`` bits, a block of rows
    at a time (each row against the hashes from its block on: every pair once)."""
    n = len(hashes)
    rows = max(1, _BLOCK // max(n, 1))
    for start in range(0, n, rows):
        block = hashes[start : start + rows]
        i, j = np.nonzero(_popcount(block[:, None] ^ hashes[None, start:]) <= max_hamming)
        keep = i < j
        yield (i[keep] + start).astype(np.int64), (j[keep] + start).astype(np.int64)


def near_pairs(hashes: npt.NDArray[np.uint64], max_hamming: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Index pairs (i < j) of ``hashes`` within ``max_hamming`` bits of each other."""
    blocks = list(_pair_blocks(hashes, max_hamming))
    empty = np.zeros(0, dtype=np.int64)
    return np.concatenate([empty, *(f for f, _ in blocks)]), np.concatenate([empty, *(s for _, s in blocks)])


def near_components(hashes: npt.NDArray[np.uint64], max_hamming: int) -> npt.NDArray[np.int64]:
    """The connected component of each of ``hashes`` (its smallest member) under "within
    ``max_hamming`` bits". The pairs are folded into the components whenever a block's
    worth has piled up, so memory stays bounded however many pairs a set has (thousands
    of near-identical frames give millions)."""
    comp = np.arange(len(hashes), dtype=np.int64)
    firsts: list[npt.NDArray[np.int64]] = []
    seconds: list[npt.NDArray[np.int64]] = []
    for first, second in _pair_blocks(hashes, max_hamming):
        firsts.append(first)
        seconds.append(second)
        if sum(len(f) for f in firsts) >= _BLOCK:
            comp, firsts, seconds = _fold(comp, firsts, seconds), [], []
    return _fold(comp, firsts, seconds)


def _fold(
    comp: npt.NDArray[np.int64], firsts: list[npt.NDArray[np.int64]], seconds: list[npt.NDArray[np.int64]]
) -> npt.NDArray[np.int64]:
    """The components of the pairs so far (``comp``, each node joined to its component's
    smallest member, one edge per node that has one) and of the new pairs."""
    merged = np.flatnonzero(comp != np.arange(len(comp)))
    first = np.concatenate([merged, *firsts])
    second = np.concatenate([comp[merged], *seconds])
    return components(len(comp), first, second)


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
    comp = near_components(distinct, max_hamming)[inverse.reshape(-1)]
    order = np.argsort(comp, kind="stable")
    starts = np.flatnonzero(np.r_[True, comp[order][1:] != comp[order][:-1]])
    groups = []
    for members in np.split(order, starts[1:]):
        if len(members) > 1:
            ordered = np.sort(members)
            groups.append(DuplicateGroup(tuple(int(m) for m in ordered), tuple(int(v) for v in y[ordered])))
    groups.sort(key=lambda g: (not g.conflict, -len(g.members), g.members[0]))
    return DuplicateAudit(len(h), max_hamming, tuple(groups))
