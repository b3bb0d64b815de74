"""Small thumbnails of the held-out images a report shows next to suspected label errors
and duplicate groups, so that the set's owner sees the image, not only its path.

Only image sets have them (``.npz`` tensors have no file), and only the first few
entries: each is a JPEG of at most 48 pixels a side, about 1-2 KiB as a ``data:`` URI,
so the verdict stays small. A file that cannot be read again is shown without one.
"""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Longest side of a thumbnail, in pixels.
SIZE = 48
#: Label suspects, and duplicate groups, given thumbnails.
SHOWN_ISSUES = 12
SHOWN_GROUPS = 6
#: Members of one duplicate group given thumbnails.
SHOWN_MEMBERS = 4


def thumbnail(path: Path) -> str | None:
    """A ``data:image/jpeg`` URI of the image at ``path``, or None when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.thumbnail((SIZE, SIZE))
            small = img.convert("RGB")
        buffer = io.BytesIO()
        small.save(buffer, format="JPEG", quality=70)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        log.warning("no thumbnail for %s: %s", path, e)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def add_thumbnails(audit: dict[str, Any], files: dict[str, Path]) -> None:
    """Give the first entries of a ``dataset_audit`` section their thumbnails (``files``:
    sample id -> image file)."""
    for issue in audit.get("label_issues", {}).get("issues", [])[:SHOWN_ISSUES]:
        _attach(issue, files)
    for group in audit.get("duplicates", {}).get("groups", [])[:SHOWN_GROUPS]:
        shown = [thumbnail(files[s]) if s in files else None for s in group["sample_ids"][:SHOWN_MEMBERS]]
        if any(shown):
            group["thumbnails"] = shown


def _attach(entry: dict[str, Any], files: dict[str, Path]) -> None:
    path = files.get(entry.get("sample_id", ""))
    uri = thumbnail(path) if path is not None else None
    if uri is not None:
        entry["thumbnail"] = uri
