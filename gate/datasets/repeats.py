"""The same image counted more than once: file-based samples compared by content.

A class folder of one image and 49 links to it would otherwise have a support of 50 and
pass a ``min_support: 50`` rule on one real image. Files are compared by the SHA-256 of
their bytes (the digests the dataset hash is built from), so links, hard links and
byte-identical copies are all found. The same bytes under two labels is a label
conflict, always an error; the same bytes under one label is an error too unless the
spec says ``duplicates: count_once``, which keeps the first in sample order.

``.npz`` rows are tensors, not files: identical rows there are legitimate and are not
compared.
"""

from __future__ import annotations

from collections.abc import Sequence

from gate.errors import DatasetError

#: Repeats named in an error message; the count says how many there are in all.
_LISTED = 10


def repeated_samples(
    sample_ids: Sequence[str],
    labels: Sequence[int],
    classes: Sequence[str],
    digests: Sequence[str],
    *,
    count_once: bool,
) -> dict[int, int]:
    """The repeats to leave out: index of each later copy -> index of its first one.

    Raises :class:`DatasetError` for the same bytes under two labels (naming both paths
    and labels), and for any repeat when ``count_once`` is false (listing them).
    """
    first_of: dict[str, int] = {}
    again: dict[int, int] = {}
    for i, digest in enumerate(digests):
        first = first_of.setdefault(digest, i)
        if first == i:
            continue
        if labels[first] != labels[i]:
            raise DatasetError(
                f"label conflict: {sample_ids[first]} (label {classes[labels[first]]!r}) and {sample_ids[i]}"
                f" (label {classes[labels[i]]!r}) hold the same bytes (sha256 {digest[:12]}…);"
                " one image cannot be both, so fix the label of one of them"
            )
        again[i] = first
    if again and not count_once:
        pairs = [f"{sample_ids[i]} = {sample_ids[first]}" for i, first in list(again.items())[:_LISTED]]
        more = f", and {len(again) - _LISTED} more" if len(again) > _LISTED else ""
        raise DatasetError(
            f"{len(again)} image file(s) repeat the bytes of another sample (links or copies), so one image"
            f" would count as several samples: {', '.join(pairs)}{more}; remove the repeats, or set"
            " `duplicates: count_once` in the dataset spec to count each image once"
        )
    return again


def describe(sample_ids: Sequence[str], again: dict[int, int]) -> list[str]:
    """Each left-out repeat as ``copy (same bytes as first)``, in sample order."""
    return [f"{sample_ids[i]} (same bytes as {sample_ids[first]})" for i, first in again.items()]
