"""The near-duplicate search: which held-out hashes lie within a Hamming radius of a
training hash, and which training hash is nearest.

How it searches
---------------

:class:`NearDuplicateIndex` answers "which held-out hashes lie within ``r`` bits of a
training hash, and which training hash is nearest" with multi-index hashing. The 64
bits are cut into ``m`` disjoint substrings. With ``r = q·m + a`` (``0 <= a < m``), a
pair within distance ``r`` agrees within ``q`` bits on one of the first ``a + 1``
substrings or within ``q - 1`` bits on one of the others (otherwise its distance would
be at least ``(a + 1)(q + 1) + (m - a - 1) q = r + 1``); ``m = r + 1`` is the plain
pigeonhole case where some substring matches exactly.

Each substring of the training hashes is indexed: the hashes sorted by its value, and
for narrow substrings a table with, per value, where its run starts, how long it is,
and a padded row holding its first few hashes (so one gather fetches a probe's
candidates); wide substrings are looked up by binary search instead. A query probes
every value within the substring's radius of its own, and each candidate is checked
with a full 64-bit popcount, so the answer is exact. ``m`` is chosen per radius and
training-set size by a cost model (lookups and candidates expected for uniformly spread
hashes, weighed by costs measured on the benchmark machine); brute force (XOR and
popcount against every training hash) is used when the model does not promise an index
at least twice as fast: small training sets, large radii (from 17 bits for 100,000
training hashes, from 9 for 1,000). Everything runs in numpy, in chunks sized for the
processor's caches; ``benchmarks/leakage.py`` times it.

Wrong arguments (a radius outside 0..64, hashes that are not uint64) are
``ValueError``.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from gate.leakage.phash import Hashes, as_hashes

#: Upper bound on the elements of the temporary arrays of one search step: small
#: enough to stay in the processor's caches, large enough to amortise numpy's calls.
_CHUNK = 1 << 17
#: The same for brute force, whose passes are simpler.
_BRUTE_CHUNK = 1 << 20


def _popcount_bytes(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
    """Set bits of each uint64, by a byte lookup table (numpy < 2.0 has no bitwise_count)."""
    contiguous = np.ascontiguousarray(x, dtype=np.uint64)
    as_bytes = contiguous.view(np.uint8).reshape(*contiguous.shape, 8)
    counts: npt.NDArray[np.uint8] = _BYTE_BITS[as_bytes].sum(axis=-1, dtype=np.uint8)
    return counts


_BYTE_BITS: Final = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
    if _HAS_BITWISE_COUNT:
        counts: npt.NDArray[np.uint8] = np.bitwise_count(x)
        return counts
    return _popcount_bytes(x)


_HAS_BITWISE_COUNT: Final = hasattr(np, "bitwise_count")


@dataclass(frozen=True, eq=False)
class NearMatches:
    """Held-out samples within the radius of some training hash, one row each, in
    ascending ``held_out_index``: the nearest training hash (the lowest index among
    equally near ones) and the distance in bits."""

    held_out_index: npt.NDArray[np.int64]
    train_index: npt.NDArray[np.int64]
    distance: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.held_out_index)


@dataclass(frozen=True)
class _Part:
    """A substring of the hash: ``bits`` bits from bit ``offset`` up, searched within
    ``radius`` bits."""

    offset: int
    bits: int
    radius: int


# Costs of the numpy passes per query, in units of one brute-force pair (XOR, popcount,
# compare: 0.7-1 ns on the benchmark machine), fitted to timings there: a lookup in a
# padded table, each slot of its row, a level of binary search, a candidate expanded
# from a sorted run.
_COST_LOOKUP = 20.0
_COST_SLOT = 1.5
_COST_SEARCH_LEVEL = 3.0
_COST_CANDIDATE = 15.0


def _table_ok(bits: int, n: int) -> bool:
    """Whether a padded table (2**bits rows of :func:`_slots` hashes) is small enough
    for ``n`` training hashes: at most 8 per training hash, or 2**18 in all."""
    return bits <= 24 and (1 << bits) * _slots(n, bits) <= max(1 << 18, 8 * n)


def _ball(bits: int, radius: int) -> int:
    return sum(math.comb(bits, k) for k in range(radius + 1))


def _split(m: int, radius: int) -> tuple[_Part, ...]:
    """``m`` substrings covering the 64 bits, with the radii that keep the search exact."""
    base, extra = divmod(64, m)
    q, a = divmod(radius, m)
    parts: list[_Part] = []
    offset = 0
    for j in range(m):
        bits = base + (1 if j < extra else 0)
        r = q if j <= a else q - 1
        if r >= 0:
            parts.append(_Part(offset, bits, r))
        offset += bits
    return tuple(parts)


def _part_cost(n: int, part: _Part) -> float:
    """Expected cost per query of one substring, for uniformly spread hashes."""
    lookups = _ball(part.bits, part.radius)
    if _table_ok(part.bits, n):
        return lookups * (_COST_LOOKUP + _COST_SLOT * _slots(n, part.bits))
    per_lookup = _COST_SEARCH_LEVEL * math.log2(n + 1) + _COST_CANDIDATE * n / 2.0**part.bits
    return lookups * per_lookup


@functools.lru_cache(maxsize=256)
def _plan(n: int, radius: int) -> tuple[_Part, ...] | None:
    """The cheapest substrings for ``n`` training hashes and ``radius``; None: brute force.

    An index must promise half the brute-force cost: the model is rough, and brute force
    needs no tables and does not slow down on unevenly spread hashes."""
    best: tuple[float, tuple[_Part, ...] | None] = (n / 2.0, None)
    for m in range(1, min(radius + 1, 64) + 1):
        parts = _split(m, radius)
        cost = sum(_part_cost(n, part) for part in parts)
        if cost < best[0]:
            best = (cost, parts)
    return best[1]


@functools.lru_cache(maxsize=64)
def _xor_masks(bits: int, radius: int) -> npt.NDArray[np.uint64]:
    """Every ``bits``-bit value with at most ``radius`` bits set."""
    masks = [0]
    for k in range(1, radius + 1):
        masks.extend(sum(1 << b for b in combo) for combo in itertools.combinations(range(bits), k))
    array = np.array(masks, dtype=np.uint64)
    array.flags.writeable = False
    return array


class _Table:
    """One substring of the training hashes, indexed.

    The training hashes are sorted by the substring's value, so each value's hashes
    form a run. Narrow substrings get a counting table (each value's run start and
    length) and a padded copy of the first ``slots`` hashes of every run, which lets a
    lookup gather its candidates as one fixed-width row; longer runs (rare for
    uniformly spread hashes) spill over and are expanded separately. Wide substrings
    keep the sorted values and are looked up by binary search.
    """

    def __init__(self, train: Hashes, part: _Part) -> None:
        keys = (train >> np.uint64(part.offset)) & np.uint64((1 << part.bits) - 1)
        order = np.argsort(keys, kind="stable")
        #: Training index of each hash in run order.
        self.order: npt.NDArray[np.int64] = order.astype(np.int64)
        #: The training hashes in run order.
        self.hashes: Hashes = train[order]
        self.starts: npt.NDArray[np.int64] | None = None
        self.counts: npt.NDArray[np.int32] | None = None
        self.padded: Hashes | None = None
        self.slots = 0
        self._sorted: Hashes | None = None
        if _table_ok(part.bits, len(train)):
            counts = np.bincount(keys.astype(np.intp), minlength=1 << part.bits)
            self.counts = counts.astype(np.int32)
            self.starts = (np.cumsum(counts) - counts).astype(np.int64)
            self.slots = _slots(len(train), part.bits)
            # row v holds the first `slots` hashes of value v's run (zeros pad short runs)
            sorted_keys = keys[order].astype(np.intp)
            ranks = np.arange(len(train), dtype=np.int64) - self.starts[sorted_keys]
            fits = ranks < self.slots
            padded = np.zeros((1 << part.bits, self.slots), dtype=np.uint64)
            padded[sorted_keys[fits], ranks[fits]] = self.hashes[fits]
            self.padded = padded
        else:
            self._sorted = keys[order]

    def runs(self, probes: Hashes) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Start (into :attr:`hashes`) and length of each probe value's run (wide
        substrings: by binary search)."""
        assert self._sorted is not None
        lo = np.searchsorted(self._sorted, probes, side="left")
        hi = np.searchsorted(self._sorted, probes, side="right")
        return lo.astype(np.int64), (hi - lo).astype(np.int64)


def _slots(n: int, bits: int) -> int:
    """Padded row width for runs of mean length ``λ = n / 2**bits``: ``λ + 2√λ`` rounded
    up, so only a few percent of the looked-up runs spill over."""
    mean = n / 2.0**bits
    return max(1, math.ceil(mean + 2.0 * math.sqrt(mean)))


_Found = list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8]]]


class NearDuplicateIndex:
    """Training hashes indexed for Hamming-radius queries (multi-index hashing).

    Build once per training set; each radius's substring tables are built on first use
    and kept. Queries are exact: the tests compare them with brute force.
    """

    def __init__(self, train_hashes: npt.ArrayLike) -> None:
        self._train = as_hashes(train_hashes, "train_hashes").copy()
        self._train.flags.writeable = False
        self._tables: dict[tuple[int, int], _Table] = {}

    def __len__(self) -> int:
        return len(self._train)

    def _table(self, part: _Part) -> _Table:
        key = (part.offset, part.bits)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = _Table(self._train, part)
        return table

    def query(self, held_out: npt.ArrayLike, max_hamming: int) -> NearMatches:
        """Held-out hashes within ``max_hamming`` bits (0..64) of a training hash, each
        with its nearest training hash."""
        if isinstance(max_hamming, bool) or not isinstance(max_hamming, int) or not 0 <= max_hamming <= 64:
            raise ValueError(f"max_hamming must be an integer from 0 to 64, got {max_hamming!r}")
        held = as_hashes(held_out, "held_out")
        found: _Found = []
        if len(held) and len(self._train):
            plan = _plan(len(self._train), max_hamming)
            if plan is None:
                self._brute_force(held, max_hamming, found)
            else:
                for part in plan:
                    self._search_part(held, max_hamming, part, found)
        return _nearest(found)

    def _brute_force(self, held: Hashes, radius: int, found: _Found) -> None:
        train = self._train
        step = max(1, _BRUTE_CHUNK // len(train))
        for c0 in range(0, len(held), step):
            distances = _popcount(held[c0 : c0 + step, np.newaxis] ^ train[np.newaxis, :])
            nearest = distances.argmin(axis=1)  # the first, i.e. lowest, index among ties
            best = distances[np.arange(len(nearest)), nearest]
            rows = np.flatnonzero(best <= radius)
            found.append((rows.astype(np.int64) + c0, nearest[rows].astype(np.int64), best[rows]))

    def _search_part(self, held: Hashes, radius: int, part: _Part, found: _Found) -> None:
        """Candidates whose substring ``part`` lies within its radius of the query's,
        checked in chunks small enough for the processor's caches."""
        table = self._table(part)
        masks = _xor_masks(part.bits, part.radius)
        keys = (held >> np.uint64(part.offset)) & np.uint64((1 << part.bits) - 1)
        if table.padded is not None:
            # values below 2**24: plain intp indices, which numpy's take gathers fastest
            masks_i = masks.astype(np.intp)
            keys_i = keys.astype(np.intp)
            step = max(1, _CHUNK // (len(masks) * table.slots))
            for c0 in range(0, len(held), step):
                probes = (keys_i[c0 : c0 + step, np.newaxis] ^ masks_i[np.newaxis, :]).reshape(-1)
                self._check_padded(held, c0, len(masks), probes, table, radius, found)
            return
        step = max(1, _CHUNK // len(masks))
        for c0 in range(0, len(held), step):
            probes_u = (keys[c0 : c0 + step, np.newaxis] ^ masks[np.newaxis, :]).reshape(-1)
            lo, count = table.runs(probes_u)
            rows = np.arange(c0, min(c0 + step, len(held)), dtype=np.int64).repeat(len(masks))
            self._check_runs(held, rows, lo, count, table, radius, found)

    def _check_padded(
        self,
        held: Hashes,
        c0: int,
        n_masks: int,
        probes: npt.NDArray[np.intp],
        table: _Table,
        radius: int,
        found: _Found,
    ) -> None:
        """Each probe's padded row against its query at once, then the spilled runs."""
        assert table.padded is not None and table.starts is not None and table.counts is not None
        slots = table.slots
        queries = held[c0 : c0 + len(probes) // n_masks]
        candidates = np.take(table.padded, probes, axis=0).reshape(len(queries), n_masks, slots)
        distances = _popcount(candidates ^ queries[:, np.newaxis, np.newaxis]).reshape(-1)
        close = np.flatnonzero(distances <= radius)
        count = np.take(table.counts, probes)
        if close.size:
            probe, slot = np.divmod(close, slots)
            real = slot < count[probe]  # padding is not a hash
            probe, slot = probe[real], slot[real]
            train = table.order[table.starts[probes[probe]] + slot]
            found.append(((probe // n_masks).astype(np.int64) + c0, train, distances[close[real]]))
        spill = np.flatnonzero(count > slots)
        if spill.size:
            rows = (spill // n_masks).astype(np.int64) + c0
            start = table.starts[probes[spill]] + slots
            self._check_runs(held, rows, start, (count[spill] - slots).astype(np.int64), table, radius, found)

    def _check_runs(
        self,
        held: Hashes,
        rows: npt.NDArray[np.int64],
        lo: npt.NDArray[np.int64],
        count: npt.NDArray[np.int64],
        table: _Table,
        radius: int,
        found: _Found,
    ) -> None:
        """Check held-out row ``rows[k]`` against the ``count[k]`` training hashes from
        ``lo[k]`` in run order, every k; at most ~_CHUNK candidates at a time."""
        hit = np.flatnonzero(count)
        rows, lo, count = rows[hit], lo[hit], count[hit]
        ends = np.cumsum(count)
        start = 0
        while start < len(count):
            done = int(ends[start - 1]) if start else 0
            end = max(start + 1, int(np.searchsorted(ends, done + _CHUNK, side="right")))
            runs = count[start:end]
            total = int(ends[end - 1]) - done
            # candidate i of run k sits at lo[k] + i - (first candidate of run k)
            shift = lo[start:end] - (ends[start:end] - runs - done)
            position = np.repeat(shift, runs) + np.arange(total, dtype=np.int64)
            candidate_rows = np.repeat(rows[start:end], runs)
            distances = _popcount(table.hashes[position] ^ held[candidate_rows])
            keep = np.flatnonzero(distances <= radius)
            if keep.size:
                found.append((candidate_rows[keep], table.order[position[keep]], distances[keep]))
            start = end


def _nearest(found: _Found) -> NearMatches:
    """One row per held-out sample: the smallest distance, then the lowest train index."""
    if not found:
        empty = np.empty(0, dtype=np.int64)
        return NearMatches(empty, empty.copy(), empty.copy())
    rows = np.concatenate([f[0] for f in found])
    train = np.concatenate([f[1] for f in found])
    distance = np.concatenate([f[2] for f in found]).astype(np.int64)
    order = np.lexsort((train, distance, rows))
    rows, train, distance = rows[order], train[order], distance[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    return NearMatches(rows[first], train[first], distance[first])
