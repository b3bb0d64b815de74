"""Where a corruption's randomness comes from: one generator per (sample id, corruption,
severity, seed), so that a verdict can be reproduced exactly and two models are shown the
same corrupted pixels, whatever the order or the machine the samples are corrupted on."""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

#: Bump when the derivation of the generators changes (it changes every corrupted pixel).
SEEDING_VERSION = "gate.corruptions.seed/v1"


class NoiseSource(Protocol):
    """The draws a corruption makes. Both :class:`numpy.random.Generator` (what gate
    uses) and the legacy :class:`numpy.random.RandomState` provide them with these
    signatures, which lets the tests replay the reference implementation's draws."""

    def normal(self, loc: float = ..., scale: float = ..., size: Any = ...) -> npt.NDArray[np.float64]: ...

    def poisson(self, lam: Any = ..., size: Any = ...) -> npt.NDArray[np.int64]: ...

    def uniform(self, low: float = ..., high: float = ..., size: Any = ...) -> Any: ...

    def random(self, size: Any = ...) -> Any: ...


def sample_rng(sample_id: str, corruption: str, severity: int, seed: int) -> np.random.Generator:
    """The generator for one sample's corruption at one severity under one seed."""
    key = "\0".join((SEEDING_VERSION, sample_id, corruption, str(severity), str(seed))).encode("utf-8")
    return np.random.Generator(np.random.PCG64(int.from_bytes(hashlib.sha256(key).digest(), "big")))
