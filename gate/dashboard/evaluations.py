"""The evaluations pages: the list with its filters, and each evaluation's HTML report
(:func:`gate.report.html.render_html` of its recorded verdict)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from gate.dashboard.layout import badge, e, page, path_part, query
from gate.dashboard.queries import DECISIONS, Filters, Page, label_value
from gate.store import EvaluationRecord

#: Reports kept rendered (a finished evaluation's verdict never changes; rendering draws charts).
REPORT_CACHE_SIZE = 32


def _labels(labels: Mapping[str, Any]) -> str:
    keys = [k for k in ("pipeline_id", "git_sha") if labels.get(k)]
    extra = labels.get("extra")
    if isinstance(extra, Mapping):
        keys += sorted(str(k) for k in extra)
    return "<br>".join(f"<code>{e(k)}={e(label_value(labels, k))}</code>" for k in keys)


def _row(record: EvaluationRecord) -> str:
    link = f"/evaluations/{path_part(record.evaluation_id)}"
    model = e(record.model_name) + "<br>" if record.model_name else ""
    return (
        f'<tr><td><a class="report-link" href="{link}">{e(record.evaluation_id)}</a></td>'
        f"<td>{e(record.created_at)}</td>"
        f"<td>{badge(record.decision, record.state)}</td>"
        f'<td>{model}<span class="sha">{e(record.model_sha256)}</span></td>'
        f'<td><a href="/datasets/{path_part(record.dataset)}">{e(record.dataset)}</a></td>'
        f"<td>{e(record.policy)}</td>"
        f"<td>{_labels(record.labels)}</td></tr>"
    )


def _filter_form(filters: Filters) -> str:
    def field(name: str, label: str, value: str | None, hint: str) -> str:
        return (
            f'<label>{label}<input name="{name}" value="{e(value or "")}" placeholder="{e(hint)}"'
            f' maxlength="512"></label>'
        )

    options = "".join(
        f'<option value="{d}"{" selected" if filters.verdict == d else ""}>{d}</option>' for d in DECISIONS
    )
    label = f"{filters.label[0]}={filters.label[1]}" if filters.label else None
    return (
        '<form class="filters" method="get" action="/evaluations">'
        + field("dataset", "dataset", filters.dataset, "pets")
        + field("policy", "policy", filters.policy, "default")
        + f'<label>verdict<select name="verdict"><option value="">any</option>{options}</select></label>'
        + field("model", "model SHA-256", filters.model, "")
        + field("label", "label", label, "git_sha=3f2a9c1")
        + '<button type="submit">Filter</button> <a href="/evaluations">clear</a></form>'
    )


def list_page(filters: Filters, found: Page, *, visitor: str | None) -> str:
    body = ["<h1>Evaluations</h1>", _filter_form(filters)]
    if found.records:
        body += [
            '<table class="evaluations"><thead><tr><th>evaluation</th><th>accepted</th><th>verdict</th>'
            "<th>model</th><th>dataset</th><th>policy</th><th>labels</th></tr></thead><tbody>",
            *(_row(r) for r in found.records),
            "</tbody></table>",
        ]
    else:
        body.append('<p class="empty">No evaluation matches these filters.</p>')
    if filters.label is not None and found.scanned:
        body.append(f'<p class="note">Looked through {found.scanned} evaluations for this label.</p>')
    if found.older:
        body.append(
            f'<p class="pager"><a class="older" href="/evaluations{e(query(filters.query(after=found.older)))}">'
            "older evaluations →</a></p>"
        )
    return page("Evaluations", body, here="/evaluations", visitor=visitor)


def running_page(record: EvaluationRecord, *, visitor: str | None) -> str:
    return page(
        f"Evaluation {record.evaluation_id}",
        [
            f"<h1>Evaluation {e(record.evaluation_id)}</h1>",
            f"<p>{badge(None, record.state)} accepted {e(record.created_at)}: its report is written when it ends.</p>",
        ],
        here="/evaluations",
        visitor=visitor,
    )


class ReportCache:
    """Rendered reports of finished evaluations, the most recently shown kept."""

    def __init__(self, size: int = REPORT_CACHE_SIZE) -> None:
        self._size = size
        self._pages: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def report(self, record: EvaluationRecord) -> str:
        """The report of a finished evaluation; ValueError when its verdict cannot be read."""
        from gate.report.html import render_html
        from gate.verdict import Verdict

        with self._lock:
            if record.evaluation_id in self._pages:
                self._pages.move_to_end(record.evaluation_id)
                return self._pages[record.evaluation_id]
        assert record.verdict is not None
        try:
            html = render_html(Verdict.from_dict(record.verdict))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"the recorded verdict of evaluation {record.evaluation_id} cannot be shown: {err}"
            ) from err
        nav = '<nav class="dashboard"><a href="/evaluations">← all evaluations</a></nav>'
        html = html.replace("<body>", f"<body>\n{nav}", 1)
        with self._lock:
            self._pages[record.evaluation_id] = html
            while len(self._pages) > self._size:
                self._pages.popitem(last=False)
        return html
