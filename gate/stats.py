"""Small, exact statistics behind the evidence-aware rules; numpy and the standard library only.

* :func:`wilson_interval`: the Wilson score interval of a proportion (a recall is
  ``tp / support``), so a floor can be checked against what the counts *prove*, not
  against a point estimate that 10 samples cannot pin down.
* :func:`mcnemar_exact`: the exact (binomial) McNemar test on paired right/wrong
  outcomes of two models on the same samples.
* :func:`paired_bootstrap`: a seeded percentile interval of the accuracy difference of
  two models on the same samples.
* :func:`prior_shift_precision`: a class's precision recomputed for other class priors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

__all__ = [
    "BootstrapInterval",
    "McNemar",
    "mcnemar_exact",
    "paired_bootstrap",
    "prior_shift_precision",
    "wilson_interval",
    "z_for",
]


def z_for(confidence: float) -> float:
    """The two-sided standard normal quantile of a confidence level (0.95 → 1.95996…)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence} must lie strictly between 0 and 1")
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def wilson_interval(successes: int, trials: int, confidence: float) -> tuple[float, float] | None:
    """The two-sided Wilson score interval of ``successes / trials``; None when trials is 0.

    With p = k/n and z the two-sided quantile of ``confidence``::

        centre = (p + z²/2n) / (1 + z²/n)
        half   = z · sqrt(p(1−p)/n + z²/4n²) / (1 + z²/n)

    For 9/10 at 0.95 this gives [0.596, 0.982].
    """
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes out of {trials} trials is not a proportion")
    if trials == 0:
        return None
    z = z_for(confidence)
    n = float(trials)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    # at the ends the bounds are exactly 0 and 1 (the formula gives them up to rounding)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class McNemar:
    """The paired right/wrong table of a challenger against a champion, and its test.

    ``challenger_worse`` counts samples the champion got right and the challenger wrong;
    ``challenger_better`` the reverse. Samples both got right (or both wrong) say nothing
    about which model is better and do not enter the test.
    """

    challenger_worse: int
    challenger_better: int
    p_value: float  # exact two-sided

    @property
    def discordant(self) -> int:
        return self.challenger_worse + self.challenger_better

    def significantly_worse(self, alpha: float) -> bool:
        """The challenger loses more samples than it wins, beyond what chance explains."""
        return self.challenger_worse > self.challenger_better and self.p_value < alpha

    def to_dict(self) -> dict[str, float | int]:
        return {
            "challenger_worse": self.challenger_worse,
            "challenger_better": self.challenger_better,
            "p_value": self.p_value,
        }


def _binom_half_cdf(k: int, n: int) -> float:
    """P(X ≤ k) for X ~ Binomial(n, ½), summed in log space from a table of log m!."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])
    i = np.arange(k + 1)
    log_pmf = log_fact[n] - log_fact[i] - log_fact[n - i] - n * math.log(2.0)
    top = float(log_pmf.max())
    return float(math.exp(top) * np.exp(log_pmf - top).sum())


def mcnemar_exact(champion_correct: npt.ArrayLike, challenger_correct: npt.ArrayLike) -> McNemar:
    """Exact McNemar test: under "equally good", each discordant sample is a fair coin,
    so the two-sided p-value is ``min(1, 2 · P(Binomial(b + c, ½) ≤ min(b, c)))``."""
    a = np.asarray(champion_correct, dtype=bool)
    b = np.asarray(challenger_correct, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired outcomes must be 1-D and of equal length; got {a.shape} and {b.shape}")
    worse = int(np.count_nonzero(a & ~b))
    better = int(np.count_nonzero(~a & b))
    n = worse + better
    p = 1.0 if n == 0 else min(1.0, 2.0 * _binom_half_cdf(min(worse, better), n))
    return McNemar(worse, better, p)


@dataclass(frozen=True)
class BootstrapInterval:
    """A percentile interval of ``accuracy(challenger) − accuracy(champion)``."""

    difference: float
    low: float
    high: float
    confidence: float
    resamples: int
    seed: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "difference": self.difference,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "resamples": self.resamples,
            "seed": self.seed,
        }


def paired_bootstrap(
    champion_correct: npt.ArrayLike,
    challenger_correct: npt.ArrayLike,
    *,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapInterval | None:
    """Seeded paired bootstrap of the accuracy difference; None for an empty set.

    Resampling N samples with replacement only changes how many of them fall in each of
    the three kinds (challenger alone right: +1, alone wrong: −1, same: 0), so each
    resample is one multinomial draw over those three counts — the same distribution
    as resampling the samples, in O(resamples) whatever N is.
    """
    a = np.asarray(champion_correct, dtype=bool)
    b = np.asarray(challenger_correct, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired outcomes must be 1-D and of equal length; got {a.shape} and {b.shape}")
    n = int(a.size)
    if n == 0:
        return None
    up = int(np.count_nonzero(~a & b))
    down = int(np.count_nonzero(a & ~b))
    rng = np.random.Generator(np.random.PCG64(seed))
    draws = rng.multinomial(n, [up / n, down / n, (n - up - down) / n], size=resamples)
    diffs = (draws[:, 0] - draws[:, 1]) / n
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    return BootstrapInterval((up - down) / n, float(low), float(high), confidence, resamples, seed)


def prior_shift_precision(
    confusion: npt.ArrayLike, classes: Sequence[str], target: str, prevalence: Mapping[str, float]
) -> float | None:
    """Precision of ``target`` if the classes occurred with the rates in ``prevalence``.

    Recall does not depend on how common a class is; precision does. With r_jc the rate
    at which actual class j is predicted as c (row-normalised confusion matrix) and π_j
    the production prevalence::

        precision_c(π) = π_c · r_cc / Σ_j π_j · r_jc

    ``prevalence`` must give every class a rate (summing to 1). None when a class with a
    nonzero rate has no held-out samples (its row is unknown) or nothing would be
    predicted as ``target``.
    """
    c = np.asarray(confusion, dtype=np.float64)
    support = c.sum(axis=1)
    t = list(classes).index(target)
    num = 0.0
    den = 0.0
    for j, name in enumerate(classes):
        pi = prevalence[name]
        if pi == 0.0:
            continue
        if support[j] == 0:
            return None
        share = pi * c[j, t] / support[j]
        den += share
        if j == t:
            num = share
    return None if den == 0.0 else num / den
