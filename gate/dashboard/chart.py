"""A line chart as inline SVG: values from 0 to 1 (recall) against the evaluations in the
order they were accepted, a line per series, a point per evaluation with its details as
a tooltip, and a dashed mark where the model changes. Inline markup and nothing else: the page needs no script, no font
and no request of its own to draw it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

#: Colours of the lines, in order (Tableau 10: told apart by most readers).
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
WIDTH, HEIGHT = 960, 380
LEFT, RIGHT, TOP, BOTTOM = 56, 190, 28, 44
#: Model marks are labelled while there are at most this many (beyond, they only get a tooltip).
MAX_LABELLED_MARKS = 8
_LABEL_CHARS = 18


@dataclass(frozen=True)
class Point:
    at: int  # the evaluation's place on the time axis: 0 for the oldest charted
    value: float  # 0..1
    tooltip: str


@dataclass(frozen=True)
class Series:
    name: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Mark:
    """A vertical mark: from the evaluation at ``at`` on, they are of the model ``label``."""

    at: int
    label: str


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _short(text: str) -> str:
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


class _Scale:
    """Where an evaluation and a value land in the plot area. Evaluations stand at even
    steps in the order they were accepted (two in the same second stay apart; a month
    without any leaves no gap), and the axis names when some of them were."""

    def __init__(self, moments: Sequence[dt.datetime]) -> None:
        self.moments = moments
        self.plot_w = WIDTH - LEFT - RIGHT
        self.plot_h = HEIGHT - TOP - BOTTOM
        self.step = self.plot_w / max(len(moments), 1)

    def x(self, at: float) -> float:
        return round(LEFT + (at + 0.5) * self.step, 1)

    def y(self, value: float) -> float:
        return round(TOP + (1 - min(max(value, 0.0), 1.0)) * self.plot_h, 1)

    def ticks(self) -> list[tuple[int, str]]:
        n = len(self.moments)
        span = (self.moments[-1] - self.moments[0]).total_seconds() if n else 0
        form = "%Y-%m-%d" if span > 3 * 86400 else "%m-%d %H:%M"
        chosen = sorted({round(i * (n - 1) / 4) for i in range(5)}) if n > 1 else [0]
        return [(i, self.moments[i].strftime(form)) for i in chosen]


def _axes(scale: _Scale, y_label: str) -> list[str]:
    out = []
    for i in range(6):
        value = i / 5
        y = scale.y(value)
        out.append(f'<line class="grid" x1="{LEFT}" y1="{y}" x2="{LEFT + scale.plot_w}" y2="{y}"/>')
        out.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4}" text-anchor="end">{value:.1f}</text>')
    bottom = TOP + scale.plot_h
    for at, label in scale.ticks():
        x = scale.x(at)
        out.append(f'<line class="axis" x1="{x}" y1="{bottom}" x2="{x}" y2="{bottom + 4}"/>')
        out.append(f'<text class="tick" x="{x}" y="{bottom + 18}" text-anchor="middle">{_e(label)}</text>')
    out.append(f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{scale.plot_w}" height="{scale.plot_h}"/>')
    out.append(
        f'<text class="axis-label" transform="translate(14 {TOP + scale.plot_h / 2}) rotate(-90)"'
        f' text-anchor="middle">{_e(y_label)}</text>'
    )
    return out


def _marks(scale: _Scale, marks: Sequence[Mark]) -> list[str]:
    out = []
    labelled = len(marks) <= MAX_LABELLED_MARKS
    for mark in marks:
        x = scale.x(mark.at - 0.5)
        out.append(
            f'<line class="mark" x1="{x}" y1="{TOP}" x2="{x}" y2="{TOP + scale.plot_h}">'
            f"<title>from here: model {_e(mark.label)}</title></line>"
        )
        if labelled:
            out.append(f'<text class="mark-label" x="{x + 3}" y="{TOP - 8}">{_e(_short(mark.label))}</text>')
    return out


def _lines(scale: _Scale, series: Sequence[Series]) -> list[str]:
    out = []
    for i, line in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{scale.x(p.at)},{scale.y(p.value)}" for p in line.points)
        out.append(f'<g class="series" data-name="{_e(line.name)}">')
        out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for p in line.points:
            out.append(
                f'<circle cx="{scale.x(p.at)}" cy="{scale.y(p.value)}" r="3.5" fill="{colour}">'
                f"<title>{_e(line.name)}: {p.value:.3f} · {_e(p.tooltip)}</title></circle>"
            )
        out.append("</g>")
        y = TOP + 8 + i * 20
        legend_x = WIDTH - RIGHT + 16
        out.append(f'<line x1="{legend_x}" y1="{y}" x2="{legend_x + 18}" y2="{y}" stroke="{colour}" stroke-width="3"/>')
        out.append(f'<text class="legend" x="{legend_x + 24}" y="{y + 4}">{_e(_short(line.name))}</text>')
    return out


def line_chart(
    series: Sequence[Series], moments: Sequence[dt.datetime], *, marks: Sequence[Mark] = (), y_label: str, title: str
) -> str:
    """The chart as an ``<svg>`` element: ``moments`` are when the charted evaluations
    were accepted, oldest first (a point's ``at`` indexes them). At most ``len(PALETTE)``
    series are told apart by colour, so the caller picks which ones to draw."""
    if not moments or not any(s.points for s in series):
        return '<p class="empty">No evaluation of this dataset has per-class recall to draw yet.</p>'
    scale = _Scale(moments)
    body = [*_axes(scale, y_label), *_marks(scale, marks), *_lines(scale, series)]
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>'
        + "".join(body)
        + "</svg>"
    )
