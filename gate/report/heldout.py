"""The held-out audit in the reports: suspected label errors (with the images, in HTML,
where the set has image files), near-duplicate groups and conflicts, the risk-coverage
curve of abstention, and top-k accuracy. Each renderer calls one function of this module;
a verdict without these sections gives nothing, so earlier reports read as they did."""

from __future__ import annotations

import re
from collections.abc import Callable
from html import escape
from typing import TYPE_CHECKING, Any

from gate.verdict import Verdict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Suspects and duplicate groups a report lists (the verdict may hold more).
LISTED = 10
_THUMBNAIL = re.compile(r"data:image/jpeg;base64,[A-Za-z0-9+/=]+")


def _sections(v: Verdict) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    audit = v.dataset_audit or {}
    metrics = v.metrics or {}

    def part(source: dict[str, Any], key: str) -> dict[str, Any]:
        found = source.get(key)
        return found if isinstance(found, dict) else {}

    return (
        part(audit, "label_issues"),
        part(audit, "duplicates"),
        part(metrics, "risk_coverage"),
        part(metrics, "top_k"),
    )


def _label_line(labels: dict[str, Any]) -> str:
    models = " and ".join(labels.get("models", ["candidate"]))
    return (
        f"{labels.get('count', 0)} of {labels.get('samples', 0)} labels suspected wrong"
        f" ({float(labels.get('rate', 0.0)):.2%}; confident learning on the {models}'s probabilities)"
    )


def _duplicate_line(dups: dict[str, Any]) -> str:
    return (
        f"{dups.get('group_count', 0)} near-duplicate group(s) (Hamming distance <= {dups.get('max_hamming')}),"
        f" {dups.get('redundant', 0)} redundant sample(s) ({float(dups.get('rate', 0.0)):.2%}),"
        f" {dups.get('conflict_count', 0)} with different labels"
    )


def _issue_text(issue: dict[str, Any]) -> str:
    return (
        f"{issue.get('sample_id')}: labelled {issue.get('given_label')}, looks like {issue.get('suggested_label')}"
        f" ({float(issue.get('confidence', 0.0)):.2f})"
    )


def _group_text(group: dict[str, Any]) -> str:
    members = ", ".join(
        f"{s} ({y})" for s, y in zip(group.get("sample_ids", []), group.get("labels", []), strict=False)
    )
    return ("CONFLICT " if group.get("conflict") else "") + members


def _top_k_line(top: dict[str, Any]) -> str:
    acc = top.get("accuracy", {})
    return "top-k accuracy: " + ", ".join(
        f"{k.replace('_', '-')} {float(x):.3f}" for k, x in acc.items() if x is not None
    )


def heldout_text(v: Verdict) -> list[str]:
    """Lines for the text report (empty when the verdict has no held-out audit)."""
    labels, dups, curve, top = _sections(v)
    if not (labels or dups or curve or top):
        return []
    out = ["", "Held-out set"]
    if labels:
        out.append(f"  {_label_line(labels)}")
        out += [f"    {_issue_text(i)}" for i in labels.get("issues", [])[:LISTED]]
    if dups:
        out.append(f"  {_duplicate_line(dups)}")
        out += [f"    {_group_text(g)}" for g in dups.get("groups", [])[:LISTED]]
    if curve.get("aurc") is not None:
        out.append(f"  risk-coverage: area under the curve {float(curve['aurc']):.4f}")
    if top:
        out.append(f"  {_top_k_line(top)}")
    return out


def heldout_markdown(v: Verdict, md: Callable[[Any], str]) -> list[str]:
    """Lines for the Markdown report (empty when the verdict has no held-out audit);
    ``md(text)`` escapes text for Markdown."""
    labels, dups, curve, top = _sections(v)
    if not (labels or dups or curve or top):
        return []
    out = ["", "### Held-out set"]
    if labels:
        out += ["", md(_label_line(labels))]
        rows = labels.get("issues", [])[:LISTED]
        if rows:
            out += ["", "| sample | given | suggested | confidence |", "|---|---|---|---:|"]
            out += [
                f"| {md(i.get('sample_id'))} | {md(i.get('given_label'))} | {md(i.get('suggested_label'))}"
                f" | {float(i.get('confidence', 0.0)):.2f} |"
                for i in rows
            ]
    if dups:
        out += ["", md(_duplicate_line(dups))]
        out += [f"- {md(_group_text(g))}" for g in dups.get("groups", [])[:LISTED]]
    if curve.get("aurc") is not None:
        out += ["", f"Risk-coverage: area under the curve {float(curve['aurc']):.4f}"]
    if top:
        out += ["", md(_top_k_line(top))]
    return out


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _img(uri: Any) -> str:
    """An <img> of a thumbnail the verdict carries (only a JPEG data URI is shown)."""
    if not isinstance(uri, str) or not _THUMBNAIL.fullmatch(uri):
        return ""
    return f'<img class="thumb" src="{_e(uri)}" alt="" width="48">'


def _draw_curve(fig: Figure, points: list[dict[str, Any]]) -> None:
    ax = fig.add_subplot()
    ax.plot([p["coverage"] for p in points], [p["risk"] for p in points], color="#4c78a8", drawstyle="steps-post")
    ax.set_xlabel("coverage (share of samples answered)")
    ax.set_ylabel("risk (error rate on the answered)")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    fig.set_size_inches(6, 3)


def heldout_html(v: Verdict, draw: Callable[..., str]) -> list[str]:
    """The HTML section; ``draw(function, *args)`` renders a chart to a data URI."""
    labels, dups, curve, top = _sections(v)
    if not (labels or dups or curve or top):
        return []
    out = ["<h2>Held-out set</h2>"]
    if labels:
        out.append(f'<p class="reading">{_e(_label_line(labels))}</p>')
        rows = "".join(
            f"<tr><td>{_img(i.get('thumbnail'))}</td><td><code>{_e(i.get('sample_id'))}</code></td>"
            f"<td>{_e(i.get('given_label'))}</td><td>{_e(i.get('suggested_label'))}</td>"
            f"<td>{float(i.get('confidence', 0.0)):.2f}</td></tr>"
            for i in labels.get("issues", [])[:LISTED]
        )
        head = "<tr><th></th><th>sample</th><th>given</th><th>suggested</th><th>confidence</th></tr>"
        out.append(f"<table>{head}{rows}</table>" if rows else "")
    if dups:
        out.append(f'<p class="reading">{_e(_duplicate_line(dups))}</p>')
        for g in dups.get("groups", [])[:LISTED]:
            images = "".join(_img(t) for t in g.get("thumbnails", []))
            out.append(f'<div class="more">{images} {_e(_group_text(g))}</div>')
    points = curve.get("points") or []
    if points:
        chart = draw(_draw_curve, points)
        out.append(
            f'<figure><img src="{chart}" alt="risk-coverage curve"><figcaption>Risk-coverage: answering only'
            " the samples whose confidence reaches a threshold, the share answered (coverage) and the error rate"
            f" on them (risk); area under the curve {float(curve.get('aurc') or 0.0):.4f}.</figcaption></figure>"
        )
    if top:
        out.append(f'<p class="reading">{_e(_top_k_line(top))}</p>')
    return [part for part in out if part]
