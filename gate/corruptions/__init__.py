"""Common corruptions of images (ImageNet-C), seeded per sample, and the robustness suite
that runs a model on them.

* :mod:`gate.corruptions.catalogue`: the corruptions by name and :func:`corrupt`;
* :mod:`gate.corruptions.randomness`: one generator per (sample id, corruption, severity, seed);
* :mod:`gate.corruptions.suite`: a dataset's corrupted views, decoded once for all cells;
* :mod:`gate.corruptions.evidence`: the runs ``robustness`` rules judge, and the verdict's
  ``metrics.robustness``.
"""

from __future__ import annotations

from gate.corruptions.catalogue import CORRUPTIONS, NOT_AVAILABLE, SEVERITIES, corrupt
from gate.corruptions.randomness import sample_rng

__all__ = ["CORRUPTIONS", "NOT_AVAILABLE", "SEVERITIES", "corrupt", "sample_rng"]
