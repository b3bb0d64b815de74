"""Held-out datasets: loading, validation, preprocessing, hashing and batching.

:func:`load_dataset` accepts any of:

* a dataset spec YAML (``.yaml``/``.yml``; see ``docs/datasets.md``),
  whose ``source`` is relative to the spec file's directory or absolute;
* an ``.npz`` file with arrays ``x`` (N, ...) and ``y`` (N,) and optionally
  ``classes``;
* an ImageFolder directory, ``root/<class>/<image>``;
* a manifest, ``.csv`` with ``path`` and ``label`` columns or ``.jsonl`` with ``path``
  and ``label`` keys; other columns/keys are kept as per-sample metadata.

Given a source directly (no spec file), the dataset gets a default spec:

* ``name``: the file's stem (``pets.npz`` -> ``pets``) or the directory's name;
* ``source``: the path as given;
* ``classes``: none, so the order is the sorted class folder names, the sorted unique
  manifest labels, or for ``.npz`` the file's ``classes`` (else ``"0"`` .. ``"K-1"``
  for integer labels, sorted unique names for string labels);
* ``preprocess``: for images, ``Preprocess()`` defaults: RGB, NCHW, float32 pixel
  values divided by 255, no resize or crop (so every image must have the same size),
  mean 0, std 1; for ``.npz``, none: tensors go to the model as they are (float64 is
  converted to float32, other dtypes are kept).

A spec for images that omits ``preprocess`` gets the same defaults, and
:attr:`Dataset.spec` shows them. Every problem is a :class:`gate.errors.DatasetError`
that names the file, line, label or sample at fault.
"""

from __future__ import annotations

from gate.datasets.cache import TensorCache, TensorCacheUse
from gate.datasets.dataset import Dataset, load_dataset, load_train_sample
from gate.datasets.spec import DatasetSpec, Preprocess

__all__ = ["Dataset", "DatasetSpec", "Preprocess", "TensorCache", "TensorCacheUse", "load_dataset", "load_train_sample"]
