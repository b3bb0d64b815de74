"""The datasets pages: the datasets evaluated, and for each the per-class recall of
every model evaluated on it, over time (an inline SVG line chart), with the evaluations
it was drawn from."""

from __future__ import annotations

from collections.abc import Sequence

from gate.dashboard.chart import PALETTE, Mark, Point, Series, line_chart
from gate.dashboard.layout import badge, e, page, path_part, query
from gate.dashboard.queries import RecallPoint

#: The classes charted at once: as many as the palette tells apart.
MAX_CHARTED_CLASSES = len(PALETTE)


def index_page(datasets: Sequence[tuple[str, int, str]], *, visitor: str | None) -> str:
    rows = [
        f'<tr><td><a href="/datasets/{path_part(name)}">{e(name)}</a></td><td class="num">{count}</td>'
        f"<td>{e(last)}</td></tr>"
        for name, count, last in datasets
    ]
    body = ["<h1>Datasets</h1>"]
    if rows:
        body += [
            "<table><thead><tr><th>dataset</th><th>evaluations</th><th>last accepted</th></tr></thead><tbody>",
            *rows,
            "</tbody></table>",
        ]
    else:
        body.append('<p class="empty">No evaluation is recorded yet.</p>')
    return page("Datasets", body, here="/datasets", visitor=visitor)


def charted_classes(points: Sequence[RecallPoint], wanted: Sequence[str]) -> list[str]:
    """The classes to chart: those asked for (known ones, in order), else every class
    when they fit, else the :data:`MAX_CHARTED_CLASSES` with the lowest recall in the
    latest evaluation (the ones to worry about)."""
    known: dict[str, None] = {}
    for p in points:
        known.update(dict.fromkeys(p.recall))
    if wanted:
        return [c for c in dict.fromkeys(wanted) if c in known][:MAX_CHARTED_CLASSES]
    if len(known) <= MAX_CHARTED_CLASSES:
        return list(known)
    latest = points[-1].recall
    return sorted(known, key=lambda c: (latest.get(c, 2.0), c))[:MAX_CHARTED_CLASSES]


def _chart(points: Sequence[RecallPoint], classes: Sequence[str], dataset: str) -> str:
    series = [
        Series(
            name,
            tuple(
                Point(at, p.recall[name], f"{p.model} · {p.record.created_at} · {p.record.evaluation_id}")
                for at, p in enumerate(points)
                if name in p.recall
            ),
        )
        for name in classes
    ]
    marks = [
        Mark(at, p.model)
        for at, p in enumerate(points)
        if at == 0 or points[at - 1].record.model_sha256 != p.record.model_sha256
    ]
    moments = [p.when for p in points]
    return line_chart(series, moments, marks=marks, y_label="recall", title=f"Per-class recall on {dataset} over time")


def _table(points: Sequence[RecallPoint], classes: Sequence[str]) -> list[str]:
    head = "".join(f"<th>{e(c)}</th>" for c in classes)
    rows = []
    for p in reversed(points):
        cells = "".join(f'<td class="num">{p.recall[c]:.3f}</td>' if c in p.recall else "<td>—</td>" for c in classes)
        rows.append(
            f'<tr><td><a href="/evaluations/{path_part(p.record.evaluation_id)}">{e(p.record.created_at)}</a></td>'
            f"<td>{e(p.model)}</td><td>{badge(p.record.decision, p.record.state)}</td>{cells}</tr>"
        )
    return [
        f'<table class="recalls"><thead><tr><th>accepted</th><th>model</th><th>verdict</th>{head}</tr></thead>',
        "<tbody>",
        *rows,
        "</tbody></table>",
    ]


def _class_picker(dataset: str, points: Sequence[RecallPoint], classes: Sequence[str]) -> str:
    known: dict[str, None] = {}
    for p in points:
        known.update(dict.fromkeys(p.recall))
    boxes = "".join(
        f'<label><input type="checkbox" name="class" value="{e(c)}"{" checked" if c in classes else ""}>'
        f" {e(c)}</label> "
        for c in known
    )
    return (
        f'<form class="filters" method="get" action="/datasets/{path_part(dataset)}">{boxes}'
        f'<button type="submit">Chart these (at most {MAX_CHARTED_CLASSES})</button></form>'
    )


def dataset_page(dataset: str, points: Sequence[RecallPoint], wanted: Sequence[str], *, visitor: str | None) -> str:
    body = [f"<h1>Dataset {e(dataset)}</h1>"]
    if not points:
        body.append('<p class="empty">No finished evaluation of this dataset has per-class recall yet.</p>')
        return page(f"Dataset {dataset}", body, here="/datasets", visitor=visitor)
    classes = charted_classes(points, wanted)
    models = len({p.record.model_sha256 for p in points})
    body += [
        f'<p class="note">{len(points)} evaluations of {models} models; per-class recall of'
        f" {len(classes)} classes. A dashed line marks where the model changes; a point's tooltip names the"
        f' model and the evaluation. <a href="/evaluations{e(query({"dataset": dataset}))}">'
        "All evaluations of this dataset</a>.</p>",
        f'<figure class="recall-chart">{_chart(points, classes, dataset)}</figure>',
        _class_picker(dataset, points, classes),
        "<h2>Evaluations charted</h2>",
        *_table(points, classes),
    ]
    return page(f"Dataset {dataset}", body, here="/datasets", visitor=visitor)
