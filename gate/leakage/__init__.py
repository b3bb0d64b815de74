"""Perceptual fingerprints of training images, and the search for held-out near-duplicates.

A held-out image that is a resized or re-encoded copy of a training image measures
memory, not generalisation. This package gives every image a 64-bit perceptual hash,
stores a training set's hashes in a fingerprint file, and finds the held-out images
whose hash lies within a Hamming radius of some training image's hash.

Public API::

    phash(pixels) -> int                                   one image's 64-bit hash
    phash_many(images) -> NDArray[uint64]                  several at once
    hash_file(path, name=None) -> int                      an image file, decoded as gate decodes it
    fingerprint_directory(root, *, workers=None, skip_unreadable=False) -> Fingerprints
    fingerprint_command(train_dir, output, workers) -> Fingerprints   `gate fingerprint`
    save_fingerprints(fingerprints, path) / load_fingerprints(path_or_bytes, *, name=None)
    hash_dataset(dataset, *, workers=None) -> NDArray[uint64]   a held-out Dataset's samples
    NearDuplicateIndex(train_hashes).query(held_out, max_hamming) -> NearMatches
    find_leaks(held_out, train, max_hamming, *, held_out_ids=None, max_examples=20) -> LeakageReport

Modules, one concern each:

* :mod:`gate.leakage.phash`: the perceptual hash (``gate.phash`` version 1);
* :mod:`gate.leakage.fileformat`: the fingerprint file (``gate.fingerprint/v1``);
* :mod:`gate.leakage.collect`: the images of a training directory and the samples of a
  held-out dataset, hashed in parallel;
* :mod:`gate.leakage.index`: the near-duplicate (Hamming radius) search;
* :mod:`gate.leakage.report`: the leakage report a policy rule judges.

Errors: unreadable images and bad fingerprint files are
:class:`~gate.errors.DatasetError`; a fingerprint file that cannot be written is a
:class:`~gate.errors.UserError`; wrong arguments (a radius outside 0..64, hashes that
are not uint64) are ``ValueError``. Only numpy, Pillow, :mod:`gate.datasets` and
:mod:`gate.atomic` are used; a policy rule can take a :class:`LeakageReport` without
importing any of them at run time.
"""

from __future__ import annotations

from gate.leakage.collect import fingerprint_command, fingerprint_directory, hash_dataset
from gate.leakage.fileformat import SCHEMA, Fingerprints, load_fingerprints, save_fingerprints
from gate.leakage.index import NearDuplicateIndex, NearMatches
from gate.leakage.phash import HASH_ALGORITHM, HASH_ALGORITHM_VERSION, Hashes, hash_file, phash, phash_many
from gate.leakage.report import LeakageReport, LeakExample, find_leaks

__all__ = [
    "HASH_ALGORITHM",
    "HASH_ALGORITHM_VERSION",
    "SCHEMA",
    "Fingerprints",
    "Hashes",
    "LeakExample",
    "LeakageReport",
    "NearDuplicateIndex",
    "NearMatches",
    "find_leaks",
    "fingerprint_command",
    "fingerprint_directory",
    "hash_dataset",
    "hash_file",
    "load_fingerprints",
    "phash",
    "phash_many",
    "save_fingerprints",
]
