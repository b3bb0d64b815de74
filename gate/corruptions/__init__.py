"""Common corruptions of images (ImageNet-C), seeded per sample, and the robustness suite
that runs a model on them.

* :mod:`gate.corruptions.names`: what may be asked for (light: no numpy);
* :mod:`gate.corruptions.catalogue`: the corruptions by name and :func:`corrupt`;
* :mod:`gate.corruptions.randomness`: one generator per (sample id, corruption, severity, seed);
* :mod:`gate.corruptions.suite`: a dataset's corrupted view, decoded once for all cells;
* :mod:`gate.corruptions.evidence`: the runs ``robustness`` rules judge, and the verdict's
  ``metrics.robustness``.

Nothing is imported here, so that reading the names does not load the image code.
"""
