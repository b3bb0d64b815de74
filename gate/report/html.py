"""The verdict as one self-contained HTML page, to archive as a CI artefact or mail around.

Everything is inline: the style sheet, and the charts as base64 PNG ``data:`` URIs drawn
with matplotlib, so the page reads offline and a Content-Security-Policy forbids it to
load anything else. The page shows a verdict banner with its reason, the identities
(model, dataset, policy with their SHA-256s, the runtime), the headline metrics, the
rules with the failing ones first and the near-duplicates a leakage rule found, the
champion-vs-challenger comparison and the training sample when the evaluation had them,
per-class recall and precision bars against the floors the policy sets, a row-normalised
confusion-matrix heatmap, and a reliability diagram when the model's confidences are
known (with the champion's curve over it).

The output is deterministic: the same verdict gives the same bytes (the PNGs carry no
software version or date, and matplotlib runs on its default style, not the user's).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from html import escape
from typing import TYPE_CHECKING, Any

from gate.report import evidence, waivers
from gate.report.deployment import deployment_html
from gate.report.heldout import heldout_html
from gate.report.markdown import (
    HEADLINE,
    Floor,
    by_urgency,
    class_floors,
    class_names,
    number,
    reason,
    run_facts,
)
from gate.report.robustness import robustness_html
from gate.report.slices import render_html_slices
from gate.verdict import Decision, RuleResult, Severity, Status, Verdict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Above this many classes, numbers written in chart cells and next to bars are too small
# to read and only make the page heavier.
MAX_ANNOTATED_CLASSES = 30
_DPI = 100
_RED = "#cf222e"
_BLUE = "#4c78a8"
_GREY = "#8c959f"
_ORANGE = "#f58518"
# The near-duplicates a leakage rule lists are few (the closest ones); a hand-made verdict
# could list thousands, which would only bloat the page.
MAX_HTML_LEAK_EXAMPLES = 100

_STYLE = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1f2328;
       background: #f6f8fa; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 0 1.5rem 3rem; }
.banner { padding: 1.6rem 1.5rem; color: #fff; }
.banner .inner { max-width: 1100px; margin: 0 auto; }
.banner .word { font-size: 3rem; font-weight: 800; letter-spacing: .04em; line-height: 1; }
.banner .why { font-size: 1.2rem; margin-top: .5rem; }
.banner.pass { background: #1a7f37; }
.banner.fail { background: #cf222e; }
.banner.error { background: #d4a72c; color: #1f2328; }
h2 { font-size: 1.2rem; margin: 2rem 0 .6rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
table { border-collapse: collapse; background: #fff; width: 100%; font-size: .92rem; }
th, td { border: 1px solid #d0d7de; padding: .35rem .6rem; text-align: left; vertical-align: top; }
th { background: #f0f3f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.ids th { width: 8rem; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .88em; }
pre { white-space: pre-wrap; word-break: break-word; margin: 0; }
.sha { word-break: break-all; }
.badge { display: inline-block; border-radius: 1rem; padding: .05rem .6rem; font-size: .8rem; font-weight: 700;
         white-space: nowrap; color: #fff; }
.badge.pass { background: #1a7f37; }
.badge.fail { background: #cf222e; }
.badge.inconclusive { background: #8250df; }
.badge.error { background: #d4a72c; color: #1f2328; }
.badge.warn { background: #9a6700; }
.badge.waived { background: #bc4c00; }
tr.blocking td { background: #fff5f5; }
td.below, td.worse { color: #cf222e; font-weight: 700; }
td.better { color: #1a7f37; }
table.paired { width: auto; }
p.reading { margin: .6rem 0; }
.cards { display: flex; flex-wrap: wrap; gap: .8rem; }
.card { background: #fff; border: 1px solid #d0d7de; border-radius: .4rem; padding: .6rem 1rem; min-width: 9rem; }
.card .value { font-size: 1.6rem; font-weight: 700; font-variant-numeric: tabular-nums; }
.card .label { color: #59636e; font-size: .85rem; }
.more { color: #59636e; font-size: .9rem; margin-top: .6rem; }
.error-box { background: #fff8e1; border: 1px solid #d4a72c; border-radius: .4rem; padding: .8rem 1rem; }
figure { margin: 0; background: #fff; border: 1px solid #d0d7de; padding: .5rem; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { color: #59636e; font-size: .85rem; margin-top: .3rem; }
footer { color: #59636e; font-size: .8rem; margin-top: 2rem; }
"""

_EXTRA_METRICS = (  # key, label, decimals
    ("weighted_f1", "weighted F1", 3),
    ("cohen_kappa", "Cohen's κ", 3),
    ("majority_baseline_accuracy", "majority-class accuracy", 3),
    ("imbalance_ratio", "imbalance ratio", 1),
)


def e(value: Any) -> str:
    return escape(str(value), quote=True)


# --- charts ------------------------------------------------------------------------------------


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    # no "Software" chunk: the bytes must not depend on the matplotlib version
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _draw(draw: Callable[..., None], *args: Any) -> str:
    """Run ``draw`` with matplotlib's default style, outside pyplot, and return a data URI.

    pyplot is avoided on purpose: it keeps global figure state, is not thread-safe, and
    choosing its backend (``matplotlib.use``) would change the backend of whatever
    program imports gate. A bare ``Figure`` renders through Agg on its own.
    """
    import matplotlib.style
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    # the default style, not the user's matplotlibrc, and no mathtext: a class named
    # "$x$" is text, not a formula (a malformed one would even raise)
    with matplotlib.style.context("default"), rc_context({"text.parse_math": False}):
        fig = Figure(layout="constrained")
        draw(fig, *args)
        uri = _png(fig)
        fig.clear()  # break the figure's reference cycles now rather than at the next GC
    return uri


def _floors_for(floors: dict[str, list[Floor]], name: str, metric: str) -> list[Floor]:
    return [f for f in floors.get(name, []) if f.metric == metric]


def _bars(fig: Figure, names: list[str], per_class: dict[str, Any], floors: dict[str, list[Floor]]) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    k = len(names)
    annotate = k <= MAX_ANNOTATED_CLASSES
    font = 9 if k <= 15 else 7
    fig.set_size_inches(10, max(2.0, 0.24 * k + 1.3))
    axes = fig.subplots(1, 2, sharey=True)
    ys = list(range(k))
    for ax, metric in zip(axes, ("recall", "precision"), strict=True):
        values = [(per_class.get(n) or {}).get(metric) for n in names]
        below = [any(f.status is not Status.PASS for f in _floors_for(floors, n, metric)) for n in names]
        widths = [v if isinstance(v, int | float) else 0.0 for v in values]
        ax.barh(ys, widths, height=0.7, color=[_RED if b else _BLUE for b in below])
        for y, name, value, bad in zip(ys, names, values, below, strict=True):
            for f in _floors_for(floors, name, metric):
                ax.plot([f.threshold, f.threshold], [y - 0.45, y + 0.45], color="black", linewidth=1.8)
            if value is None:
                ax.text(0.01, y, "n/a", va="center", fontsize=font, color=_RED if bad else _GREY)
            elif annotate:
                ax.text(value + 0.01, y, number(value), va="center", fontsize=font)
        ax.set_xlim(0, 1.14 if annotate else 1.0)
        ax.set_title(metric, fontsize=11)
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
        ax.tick_params(labelsize=font)
    axes[0].set_yticks(ys, labels=names)
    axes[0].set_ylim(k - 0.5, -0.5)  # first class on top, as in the tables; no margins
    fig.legend(
        handles=[
            Patch(color=_BLUE, label="meets its floor, or has none"),
            Patch(color=_RED, label="below its floor"),
            Line2D([], [], color="black", linewidth=1.8, label="floor (per_class rule)"),
        ],
        loc="outside lower center",
        ncols=3,
        fontsize=8,
        frameon=False,
    )


def _heatmap(fig: Figure, names: list[str], matrix: list[list[int]]) -> None:
    import numpy as np
    from matplotlib import colormaps

    k = len(names)
    counts = np.asarray(matrix, dtype=float)
    support = counts.sum(axis=1, keepdims=True)
    # a class with no samples has no row to normalise: leave its row blank (grey)
    rates = np.divide(counts, support, out=np.full_like(counts, np.nan), where=support > 0)
    side = min(16.0, max(4.0, 0.42 * k + 2.5))
    fig.set_size_inches(side + 1.5, side)
    ax = fig.subplots()
    cmap = colormaps["Blues"].with_extremes(bad="#eaeef2")
    image = ax.imshow(np.ma.masked_invalid(rates), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    # about 60% of a cell's height, in points, and never more than 10
    font = max(4, min(10, int(side * 72 / k * 0.6)))
    if k <= MAX_ANNOTATED_CLASSES:
        for i in range(k):
            for j in range(k):
                light = bool(np.isfinite(rates[i, j]) and rates[i, j] > 0.55)
                ax.text(
                    j,
                    i,
                    str(int(counts[i, j])),
                    ha="center",
                    va="center",
                    fontsize=font,
                    color="white" if light else "black",
                )
    if k <= 6 and max(map(len, names)) <= 10:
        ax.set_xticks(range(k), labels=names, fontsize=font)
    else:
        ax.set_xticks(
            range(k),
            labels=names,
            rotation=90 if k > MAX_ANNOTATED_CLASSES else 45,
            ha="right",
            rotation_mode="anchor",
            fontsize=font,
        )
    ax.set_yticks(range(k), labels=names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    fig.colorbar(image, ax=ax, label="share of the actual class", shrink=0.8)


def _reliability(
    fig: Figure, bins: list[evidence.Bin], ece: Any, champion: list[evidence.Bin] | None, champion_ece: float | None
) -> None:
    """Per-bin accuracy against the diagonal of perfect calibration, the gap to each bin's
    mean confidence shaded, and the samples per bin below; the champion's curve on top."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig.set_size_inches(7.5, 6.2)
    ax, hist = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    filled = [b for b in bins if b.count > 0 and b.accuracy is not None]
    lowers = [b.lower for b in filled]
    widths = [b.upper - b.lower for b in filled]
    accuracy = [b.accuracy or 0.0 for b in filled]
    ax.bar(lowers, accuracy, width=widths, align="edge", color=_BLUE, edgecolor="white", linewidth=0.8)
    # the gap between what the model claims (mean confidence) and what it achieves (accuracy)
    gaps = [(b, b.confidence - (b.accuracy or 0.0)) for b in filled if b.confidence is not None]
    ax.bar(
        [b.lower for b, _ in gaps],
        [g for _, g in gaps],
        bottom=[b.accuracy or 0.0 for b, _ in gaps],
        width=[b.upper - b.lower for b, _ in gaps],
        align="edge",
        facecolor=(0.81, 0.13, 0.18, 0.22),  # _RED, translucent: an underconfident gap lies over its bar
        edgecolor=_RED,
        hatch="///",
        linewidth=0.8,
    )
    ax.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="black", linewidth=1.2)
    handles = [
        Patch(color=_BLUE, label="accuracy in the bin"),
        Patch(facecolor=(0.81, 0.13, 0.18, 0.22), edgecolor=_RED, hatch="///", label="gap to the mean confidence"),
        Line2D([], [], linestyle="--", color="black", label="perfect calibration"),
    ]
    title = f"Reliability diagram: ECE {number(ece)}"
    if champion is not None:
        points = [(b.confidence, b.accuracy) for b in champion if b.count > 0 and b.confidence is not None]
        ax.plot(
            [x for x, _ in points],
            [y for _, y in points],
            color=_ORANGE,
            marker="o",
            markersize=4,
            linewidth=1.6,
        )
        handles.append(Line2D([], [], color=_ORANGE, marker="o", markersize=4, label="champion"))
        title += f" (champion {number(champion_ece)})"
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.04)  # room for a marker at 1
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(handles=handles, loc="upper left", fontsize=8, frameon=False)

    counts = [b.count for b in bins]
    hist.bar(
        [b.lower for b in bins],
        counts,
        width=[b.upper - b.lower for b in bins],
        align="edge",
        color=_GREY,
        alpha=0.45,
        edgecolor="white",
    )
    top = max(counts)
    for b in bins:
        if b.count:
            hist.text((b.lower + b.upper) / 2, b.count + top * 0.04, str(b.count), ha="center", va="bottom", fontsize=7)
    if champion is not None:
        edges = [b.lower for b in champion] + [champion[-1].upper]
        steps = [b.count for b in champion]
        hist.stairs(steps, edges, color=_ORANGE, linewidth=1.2)
        top = max(top, *steps)
    hist.set_ylim(0, top * 1.3)
    hist.set_ylabel("samples")
    hist.set_xlabel("confidence (probability given to the predicted class)")
    hist.grid(axis="y", alpha=0.3)
    hist.set_axisbelow(True)


# --- page ----------------------------------------------------------------------------------------


def _badge(rule: RuleResult) -> str:
    if rule.severity is Severity.WARN:
        word = "pass · warn" if rule.status is Status.PASS else f"warn · {rule.status.value}"
        css = "pass" if rule.status is Status.PASS else "warn"
        return f'<span class="badge {css}">{e(word)}</span>'
    return f'<span class="badge {rule.status.value}">{e(rule.status.value)}</span>'


def _banner(v: Verdict) -> str:
    why = e(reason(v))
    if v.decision is Decision.FAIL:
        blocking = ", ".join(f"<code>{e(r.id)}</code>" for r in v.rules if r.blocks)
        why += f": {blocking}"
    elif v.decision is Decision.ERROR and v.error:
        first = (str(v.error.get("message", "")).splitlines() or [""])[0]
        why = f"{e(v.error.get('type', 'GateError'))}: {e(first)}"
    css = v.decision.value.lower()
    return (
        f'<header class="banner {css}"><div class="inner"><div class="word">{e(v.decision.value)}</div>'
        f'<div class="why">{why}</div></div></header>'
    )


def _sha(value: Any) -> str:
    return f'sha256 <code class="sha">{e(value)}</code>' if value else "sha256 unknown"


def _identities(v: Verdict) -> list[str]:
    rows: list[tuple[str, list[str]]] = []
    if v.model:
        parts = [f"<code>{e(v.model.get('path') or '(bytes)')}</code>", _sha(v.model.get("sha256"))]
        if v.model.get("bytes") is not None:
            parts.append(f"{e(v.model['bytes'])} bytes")
        rows.append(("model", parts))
    if v.dataset:
        parts = [f"<strong>{e(v.dataset.get('name', '?'))}</strong>"]
        if v.dataset.get("samples") is not None:
            parts.append(f"{e(v.dataset['samples'])} samples")
        if v.dataset.get("classes"):
            parts.append(f"{len(v.dataset['classes'])} classes")
        parts.append(_sha(v.dataset.get("sha256")))
        rows.append(("dataset", parts))
    if v.policy:
        parts = [f"<strong>{e(v.policy.get('name', '?'))}</strong>"]
        if v.policy.get("source"):
            parts.append(f"<code>{e(v.policy['source'])}</code>")
        parts.append(_sha(v.policy.get("sha256")))
        rows.append(("policy", parts))
    champion = v.baseline.get("model") if isinstance(v.baseline, dict) else None
    if isinstance(champion, dict):
        parts = [f"<code>{e(champion.get('path') or '(bytes)')}</code>", _sha(champion.get("sha256"))]
        if champion.get("bytes") is not None:
            parts.append(f"{e(champion['bytes'])} bytes")
        rows.append(("champion", parts))
    if isinstance(v.train_sample, dict):
        ts = v.train_sample
        parts = [f"<strong>{e(ts.get('name', '?'))}</strong>"]
        if ts.get("samples") is not None:
            parts.append(f"{e(ts['samples'])} samples")
        parts.append(_sha(ts.get("sha256")))
        rows.append(("training sample", parts))
    rt = v.runtime
    if rt:
        parts = []
        if rt.get("provider"):
            parts.append(f"<code>{e(rt['provider'])}</code>")
        if rt.get("requested_provider"):
            parts.append(f"requested {e(rt['requested_provider'])}")
        if rt.get("device"):
            parts.append(f"device {e(rt['device'])}")
        if rt.get("onnxruntime"):
            parts.append(f"onnxruntime {e(rt['onnxruntime'])}")
        if parts:
            rows.append(("runtime", parts))
    run = run_facts(v, text=e, ident=lambda i: f"id <code>{e(i)}</code>")
    if run:
        rows.append(("evaluation", run))
    if v.labels:
        rows.append(("labels", [f"<code>{e(k)}={e(val)}</code>" for k, val in sorted(v.labels.items())]))
    if not rows:
        return []
    body = "".join(f"<tr><th>{e(label)}</th><td>{' · '.join(parts)}</td></tr>" for label, parts in rows)
    return ["<h2>Identities</h2>", f'<table class="ids">{body}</table>']


def _error(v: Verdict) -> list[str]:
    if not v.error:
        return []
    return [
        "<h2>Error</h2>",
        f'<div class="error-box"><strong>{e(v.error.get("type", "GateError"))}</strong>'
        f"<pre>{e(v.error.get('message', ''))}</pre></div>",
    ]


def _metrics(m: dict[str, Any]) -> list[str]:
    headline = list(HEADLINE)
    if number(m.get("ece")) != "n/a":
        headline.append(("ece", "ECE (calibration error)"))
    cards = "".join(
        f'<div class="card"><div class="value">{e(number(m.get(key)))}</div><div class="label">{e(label)}</div></div>'
        for key, label in headline
    )
    more = [f"{e(label)} {e(number(m.get(key), digits))}" for key, label, digits in _EXTRA_METRICS]
    if m.get("samples") is not None:
        more.append(f"{e(m['samples'])} samples")
    return ["<h2>Metrics</h2>", f'<div class="cards">{cards}</div>', f'<div class="more">{" · ".join(more)}</div>']


def _rules(v: Verdict) -> list[str]:
    rows = []
    for r in by_urgency(v.rules):
        css = ' class="blocking"' if r.blocks or r.status is Status.ERROR else ""
        rows.append(
            f"<tr{css}><td>{_badge(r)}</td><td><code>{e(r.id)}</code></td><td>{e(r.type)}</td>"
            f"<td>{e(r.severity.value)}</td><td>{e(r.message)}</td></tr>"
        )
    head = "<tr><th>status</th><th>rule</th><th>type</th><th>severity</th><th>message</th></tr>"
    return ["<h2>Rules</h2>", f"<table>{head}{''.join(rows)}</table>"]


def _per_class_table(v: Verdict, names: list[str], per_class: dict[str, Any]) -> str:
    floors = class_floors(v.rules)
    rows = []
    for name in names:
        pc = per_class.get(name) or {}
        cells = [f"<td><code>{e(name)}</code></td>"]
        cells += [f'<td class="num">{e(pc.get(key, "n/a"))}</td>' for key in ("support", "predicted")]
        for metric in ("precision", "recall", "f1"):
            bad = any(f.status is not Status.PASS for f in _floors_for(floors, name, metric))
            css = "num below" if bad else "num"
            cells.append(f'<td class="{css}">{e(number(pc.get(metric)))}</td>')
        labels = dict.fromkeys(f.label for f in floors.get(name, []))
        cells.append(f"<td>{e('; '.join(labels))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("class", "support", "predicted", "precision", "recall", "F1", "floor"))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _per_class(v: Verdict, m: dict[str, Any]) -> list[str]:
    names = class_names(m)
    per_class: dict[str, Any] = m.get("per_class") or {}
    if not names:
        return []
    bars = _draw(_bars, names, per_class, class_floors(v.rules))
    out = [
        "<h2>Per class</h2>",
        f'<figure><img src="{bars}" alt="per-class recall and precision against their floors">'
        "<figcaption>Recall and precision per class; a black line marks the floor a per_class rule sets, "
        "a red bar is below it.</figcaption></figure>",
        _per_class_table(v, names, per_class),
    ]
    matrix = m.get("confusion_matrix") or []
    if len(matrix) == len(names):
        heat = _draw(_heatmap, names, matrix)
        counts = "counts in each cell; " if len(names) <= MAX_ANNOTATED_CLASSES else ""
        out += [
            "<h2>Confusion matrix</h2>",
            f'<figure><img src="{heat}" alt="row-normalised confusion matrix">'
            f"<figcaption>Rows: actual class, columns: predicted; colour: share of the actual class; "
            f"{counts}a grey row is a class with no samples.</figcaption></figure>",
        ]
    return out


def _count(n: int | None) -> str:
    return "?" if n is None else str(n)


def _change_css(change: float | None, worse: bool | None) -> str:
    """``num worse`` (red) or ``num better`` (green); plain when unchanged or neither."""
    if change is None or change == 0 or worse is None:
        return "num"
    return "num worse" if worse else "num better"


def _failed(failed: Severity | None) -> str:
    if failed is None:
        return ""
    word = "fails a block rule" if failed is Severity.BLOCK else "fails a warn rule"
    css = "fail" if failed is Severity.BLOCK else "warn"
    return f' <span class="badge {css}">{e(word)}</span>'


def _metric_table(
    head: tuple[str, str, str, str],
    rows: list[evidence.MetricRow],
    changes: list[float | None],
    worse: list[bool | None],
) -> str:
    body = []
    for row, change, bad in zip(rows, changes, worse, strict=True):
        body.append(
            f'<tr><td>{e(row.label)}</td><td class="num">{e(number(row.before))}</td>'
            f'<td class="num">{e(number(row.after))}</td>'
            f'<td class="{_change_css(change, bad)}">{e(evidence.signed(change))}{_failed(row.failed)}</td></tr>'
        )
    cells = "".join(f"<th>{e(h)}</th>" for h in head)
    return f"<table><tr>{cells}</tr>{''.join(body)}</table>"


def _comparison(c: evidence.Comparison) -> list[str]:
    sha = f" (sha256 <code>{e(c.sha256[:12])}</code>)" if c.sha256 else ""
    out = [
        "<h2>Champion vs challenger</h2>",
        f'<p class="reading">The champion, <code>{e(c.path or "(bytes)")}</code>{sha}, ran on the same samples as'
        " this model, the challenger.</p>",
        _metric_table(
            ("metric", "champion", "challenger", "difference"),
            c.rows,
            [r.change for r in c.rows],
            [r.worse for r in c.rows],
        ),
    ]
    if c.classes:
        rows = []
        for k in c.classes:
            css = _change_css(k.change, None if k.change is None else k.change < 0)
            rows.append(
                f'<tr><td><code>{e(k.name)}</code></td><td class="num">{e(number(k.before))}</td>'
                f'<td class="num">{e(number(k.after))}</td>'
                f'<td class="{css}">{e(evidence.signed(k.change))}{_failed(k.failed)}</td></tr>'
            )
        m = c.class_metric
        head = "".join(f"<th>{e(h)}</th>" for h in ("class", f"champion {m}", f"challenger {m}", "change"))
        out.append(f"<h3>Per-class {e(m)}</h3><table><tr>{head}</tr>{''.join(rows)}</table>")
    if c.interval:
        reading = f" {e(c.interval_reading)}" if c.interval_reading else ""
        out.append(f'<p class="reading">Challenger minus champion: <strong>{e(c.interval)}</strong>.{reading}</p>')
    p = c.paired
    if p is not None:
        out.append(
            '<h3>McNemar</h3><table class="paired"><tr><th></th><th>challenger right</th><th>challenger wrong</th></tr>'
            f'<tr><th>champion right</th><td class="num">{e(_count(p.both_right))}</td>'
            f'<td class="num worse">{e(p.challenger_worse)}</td></tr>'
            f'<tr><th>champion wrong</th><td class="num better">{e(p.challenger_better)}</td>'
            f'<td class="num">{e(_count(p.both_wrong))}</td></tr></table>'
        )
    if c.mcnemar_reading:
        out.append(f'<p class="reading">{e(c.mcnemar_reading)}</p>')
    return out


def _training(t: evidence.TrainingSample) -> list[str]:
    parts = [f"<strong>{e(t.name)}</strong>" if t.name else "the training sample"]
    if t.samples is not None:
        parts.append(f"{e(t.samples)} samples")
    gaps = [t.gap(r) for r in t.rows]
    # every model does a little better on its training data: only a gap a rule refused is flagged
    flagged: list[bool | None] = [True if r.failed is not None else None for r in t.rows]
    table = _metric_table(("metric", "training sample", "held-out", "gap"), t.rows, gaps, flagged)
    return [
        "<h2>Training sample</h2>",
        f'<p class="reading">This model on its training sample, {", ".join(parts)}, against the held-out set:'
        " a large gap means it does much better on data it was trained on (overfitting).</p>",
        table,
    ]


def _leaks(v: Verdict) -> list[str]:
    out = []
    for r in by_urgency(v.rules):
        found = evidence.leakage(r)
        if found is None or (not found.examples and not found.matches):
            continue
        shown = min(len(found.examples), MAX_HTML_LEAK_EXAMPLES)
        rows = "".join(
            f"<tr><td><code>{e(x.sample)}</code></td><td><code>{e(x.train)}</code></td>"
            f'<td class="num">{e("?" if x.distance is None else x.distance)}</td></tr>'
            for x in found.examples[:MAX_HTML_LEAK_EXAMPLES]
        )
        out += [
            f"<h2>Near-duplicates found by <code>{e(r.id)}</code></h2>",
            f'<p class="reading">{e(evidence.leakage_summary(found, shown))}</p>',
        ]
        if rows:
            head = "<tr><th>held-out sample</th><th>training image</th><th>Hamming distance</th></tr>"
            out.append(f"<table>{head}{rows}</table>")
        more = evidence.leakage_more(found, shown)
        if more:
            out.append(f'<div class="more">{e(more)}</div>')
        if found.fingerprint_sha256:
            out.append(f'<div class="more">training fingerprints {_sha(found.fingerprint_sha256)}</div>')
    return out


def _calibration(m: dict[str, Any], compared: evidence.Comparison | None) -> list[str]:
    bins = evidence.calibration_bins(m)
    if bins is None:
        return []
    champion_bins = compared.champion_bins if compared is not None else None
    champion_ece = compared.champion_ece if compared is not None else None
    chart = _draw(_reliability, bins, m.get("ece"), champion_bins, champion_ece)
    overlay = " The orange line is the champion's accuracy per bin." if champion_bins is not None else ""
    return [
        "<h2>Calibration</h2>",
        f'<figure><img src="{chart}" alt="reliability diagram">'
        "<figcaption>Samples grouped by the confidence the model gave its prediction (15 equal bins): a bar is"
        " the share of them it got right; a bar on the dashed diagonal is perfectly calibrated, a red box is the"
        " gap to the mean confidence (above the bar: overconfident). Below: samples per bin."
        f"{overlay}</figcaption></figure>",
    ]


def render_html(verdict: Verdict) -> str:
    v = verdict
    title = f"gate: {v.decision.value}"
    if v.policy.get("name"):
        title += f" — {v.policy['name']}"
    if v.model.get("path"):
        title += f" — {v.model['path']}"
    body = [_banner(v), "<main>", *_identities(v), *_error(v)]
    if v.metrics:
        body += _metrics(v.metrics)
    if v.rules:
        body += _rules(v) + _leaks(v) + waivers.waiver_html(v)
    compared = evidence.comparison(v)
    if compared is not None:
        body += _comparison(compared)
    train = evidence.training_sample(v)
    if train is not None:
        body += _training(train)
    body += deployment_html(v, e)
    body += robustness_html(v, e, _draw)
    if v.metrics and v.metrics.get("per_class"):
        body += _per_class(v, v.metrics)
    body += render_html_slices(v, e)
    if v.metrics:
        body += _calibration(v.metrics, compared)
    body += heldout_html(v, _draw)
    body += ["<footer>gate verdict, schema gate.verdict/v1</footer>", "</main>"]
    head = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        # the page is self-contained: it may show its own inline images and style, nothing else
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
    ]
    return "\n".join([*head, *body, "</body>", "</html>"]) + "\n"
