"""The robustness part of every report: the candidate's accuracy under each corruption and
severity (``metrics.robustness``), the mean corruption error, and for the HTML report a
corruption × severity heatmap of each ``robustness`` rule's metric and, for each failing
cell, a few clean and corrupted images side by side.

The pictures are made again from the verdict: the corrupted pixels are a function of the
image, the preprocessing, the corruption, the severity and the seed
(:mod:`gate.corruptions.randomness`), so nothing but sample ids is stored in the verdict.
When the images cannot be read where the report is rendered, the report says so instead.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gate.verdict import Verdict

#: A picture's longer side in the report, in pixels (small images are enlarged to it).
_PICTURE_SIDE = 112


def _summary_line(summary: dict[str, Any]) -> str:
    line = f"seed {summary['seed']}: clean error {summary['clean_error']:.3f}"
    if "mean_corruption_error" in summary:
        line += f", mean corruption error {summary['mean_corruption_error']:.3f}"
    if "mce" in summary:
        line += f", mCE vs the champion {summary['mce']:.3f}, relative mCE {summary['relative_mce']:.3f}"
    return line


def robustness_table(v: Verdict) -> tuple[list[str], list[list[str]]] | None:
    """(header, rows) of the candidate's accuracy per corruption (rows) and severity."""
    section = (v.metrics or {}).get("robustness")
    if not section:
        return None
    severities = sorted({int(s) for cells in section.values() for s in cells})
    header = ["corruption", *(f"severity {s}" for s in severities)]
    rows = []
    for corruption, cells in section.items():
        values = [cells.get(str(s), {}).get("accuracy") for s in severities]
        rows.append([corruption, *("—" if a is None else f"{a:.3f}" for a in values)])
    return header, rows


def robustness_text(v: Verdict) -> list[str]:
    """The plain-text report's robustness section."""
    table = robustness_table(v)
    if table is None:
        return []
    header, rows = table
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = ["", "Robustness (accuracy on corrupted images)"]
    out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    out.append("  " + _summary_line((v.metrics or {})["robustness_summary"]))
    return out


def robustness_markdown(v: Verdict, md: Callable[[Any], str]) -> list[str]:
    """The Markdown report's robustness section; ``md`` escapes text for Markdown."""
    table = robustness_table(v)
    if table is None:
        return []
    header, rows = table
    out = ["", "## Robustness", "", "Accuracy on corrupted images:", ""]
    out += ["| " + " | ".join(md(c) for c in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    out += ["", md(_summary_line((v.metrics or {})["robustness_summary"]))]
    return out


def robustness_html(v: Verdict, escape: Callable[[Any], str], draw: Callable[..., str]) -> list[str]:
    """The HTML report's robustness section: ``escape`` escapes text, ``draw`` renders a
    matplotlib drawing function to a data URI."""
    table = robustness_table(v)
    if table is None:
        return []
    summary = (v.metrics or {})["robustness_summary"]
    out = ["<section>", "<h2>Robustness</h2>", f"<p>{escape(_summary_line(summary))}</p>"]
    for rule in v.rules:
        if rule.type != "robustness" or "cells" not in rule.details:
            continue
        cells, metric = rule.details["cells"], rule.details["metric"]
        uri = draw(_heatmap, cells, metric)
        out += [
            f"<h3>{escape(rule.id)}: {escape(metric)} under each corruption and severity</h3>",
            f'<img alt="{escape(metric)} by corruption and severity" src="{uri}">',
        ]
        out += _failing_cells(cells, summary, rule.threshold.get("seed", 0), escape)
    out.append("</section>")
    return out


def _heatmap(fig: Any, cells: dict[str, dict[str, Any]], metric: str) -> None:
    import numpy as np
    from matplotlib import colormaps

    corruptions = list(cells)
    severities = sorted({int(s) for row in cells.values() for s in row})
    values = np.full((len(corruptions), len(severities)), np.nan)
    for i, name in enumerate(corruptions):
        for j, s in enumerate(severities):
            value = cells[name].get(str(s), {}).get("value")
            values[i, j] = np.nan if value is None else value
    fig.set_size_inches(1.2 * len(severities) + 3.0, 0.45 * len(corruptions) + 1.6)
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(values), cmap=colormaps["RdYlGn"], vmin=0.0, vmax=1.0, aspect="auto")
    for i, name in enumerate(corruptions):
        for j, s in enumerate(severities):
            failed = cells[name].get(str(s), {}).get("failed")
            text = "—" if np.isnan(values[i, j]) else f"{values[i, j]:.2f}" + (" ✗" if failed else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(severities)), labels=[str(s) for s in severities])
    ax.set_yticks(range(len(corruptions)), labels=corruptions)
    ax.set_xlabel("severity")
    fig.colorbar(image, ax=ax, label=metric, shrink=0.8)


def _failing_cells(
    cells: dict[str, dict[str, Any]], summary: dict[str, Any], seed: int, escape: Callable[[Any], str]
) -> list[str]:
    out = []
    for corruption, row in cells.items():
        for severity, cell in row.items():
            if not cell.get("failed") or not cell.get("examples"):
                continue
            out.append(f"<h4>{escape(corruption)}@{escape(severity)}: clean | corrupted</h4><p>")
            for sample_id in cell["examples"]:
                out.append(_pair(sample_id, corruption, int(severity), seed, summary.get("images"), escape))
            out.append("</p>")
    return out


def _pair(
    sample_id: str,
    corruption: str,
    severity: int,
    seed: int,
    images: dict[str, Any] | None,
    escape: Callable[[Any], str],
) -> str:
    try:
        clean, corrupted = _pictures(sample_id, corruption, severity, seed, images)
    except Exception as e:  # the images are not where the verdict says: show why, not a broken page
        return (
            f"<span>{escape(sample_id)}: pictures unavailable here ({escape(type(e).__name__)}: {escape(e)})</span><br>"
        )
    return (
        f'<span title="{escape(sample_id)}"><img alt="clean {escape(sample_id)}" src="{clean}">'
        f'<img alt="{escape(corruption)} {escape(sample_id)}" src="{corrupted}"> {escape(sample_id)}</span><br>'
    )


def _pictures(
    sample_id: str, corruption: str, severity: int, seed: int, images: dict[str, Any] | None
) -> tuple[str, str]:
    """Data URIs of a sample's clean and corrupted pixels, made as the evaluation made them."""
    from gate.corruptions.catalogue import corrupt
    from gate.corruptions.randomness import sample_rng
    from gate.datasets import images as decoding
    from gate.datasets.spec import Preprocess

    if not images:
        raise FileNotFoundError("the verdict does not say where its images are")
    source = Path(images["source"])
    path = (source if source.is_dir() else source.parent) / sample_id
    preprocess = Preprocess.model_validate(images["preprocess"] or {})
    clean = decoding.load_pixels(path.read_bytes(), preprocess, sample_id)
    corrupted = corrupt(clean, corruption, severity, sample_rng(sample_id, corruption, severity, seed))
    return _png_uri(clean), _png_uri(corrupted)


def _png_uri(pixels: Any) -> str:
    from PIL import Image

    image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    scale = _PICTURE_SIDE / max(image.size)
    image = image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.NEAREST
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
