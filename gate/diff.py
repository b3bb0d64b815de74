"""Verdict diffs: what changed between two evaluations (``gate diff A B``).

From the two verdict documents: the global and per-class metric deltas, the deltas of
every number under ``metrics.slices`` (whatever its shape: numbers are matched by their
path in it), and the rules whose status changed. From the two predictions tables, when
both are at hand and hold the same samples: the samples that became wrong (right in A,
wrong in B) and those that became right. Everything is data (:class:`VerdictDiff`);
:func:`render_text`, :func:`render_markdown` and :func:`render_html` show it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from html import escape
from typing import Any

from gate.metrics import GLOBAL_METRICS, PER_CLASS_METRICS
from gate.predictions import PredictionTable

#: Sample outcomes by sample id: (true class, predicted class).
Outcomes = dict[str, tuple[str, str]]
#: How many changed samples a rendered diff lists (the JSON form holds them all).
SHOWN_SAMPLES = 50


@dataclass(frozen=True)
class Delta:
    name: str  # a metric, "class/metric", or a path under metrics.slices
    a: float | None
    b: float | None

    @property
    def change(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "a": self.a, "b": self.b, "change": self.change}


@dataclass(frozen=True)
class RuleChange:
    id: str
    a: str | None  # the status in A; None when A has no such rule
    b: str | None


@dataclass(frozen=True)
class SampleChange:
    sample_id: str
    label: str
    a: str  # predicted in A
    b: str  # predicted in B


@dataclass
class VerdictDiff:
    a: dict[str, Any]  # what identifies each side: evaluation id, verdict, model, dataset, policy
    b: dict[str, Any]
    metrics: list[Delta] = field(default_factory=list)
    per_class: list[Delta] = field(default_factory=list)
    slices: list[Delta] = field(default_factory=list)
    rules: list[RuleChange] = field(default_factory=list)
    newly_wrong: list[SampleChange] = field(default_factory=list)
    newly_right: list[SampleChange] = field(default_factory=list)
    samples_note: str | None = None  # why samples were not compared

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "gate.diff/v1",
            "a": self.a,
            "b": self.b,
            "metrics": [d.to_dict() for d in self.metrics],
            "per_class": [d.to_dict() for d in self.per_class],
            "slices": [d.to_dict() for d in self.slices],
            "rules": [asdict(r) for r in self.rules],
            "newly_wrong": [asdict(s) for s in self.newly_wrong],
            "newly_right": [asdict(s) for s in self.newly_right],
            "samples_note": self.samples_note,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


# -- computing -----------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _identity(doc: Mapping[str, Any]) -> dict[str, Any]:
    model, ds, pol = doc.get("model") or {}, doc.get("dataset") or {}, doc.get("policy") or {}
    return {
        "evaluation_id": doc.get("evaluation_id"),
        "verdict": doc.get("verdict"),
        "model": model.get("path") or model.get("sha256"),
        "model_sha256": model.get("sha256"),
        "dataset": ds.get("name"),
        "dataset_sha256": ds.get("sha256"),
        "policy": pol.get("name"),
        "started_at": doc.get("started_at"),
    }


def _leaves(value: Any, path: str) -> Iterator[tuple[str, float | None]]:
    """Every number (or null) in a nested section, by its path. A list is followed only
    when it holds numbers (a vector): a list of objects is a ranking (the weakest slices,
    say), whose places hold different things on the two sides."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{path}/{key}" if path else str(key))
    elif isinstance(value, list):
        if all(item is None or _number(item) is not None for item in value):
            for i, item in enumerate(value):
                yield path + f"[{i}]", _number(item)
    elif value is None or _number(value) is not None:
        yield path, _number(value)


def _deltas(a: Any, b: Any) -> list[Delta]:
    """Deltas of the numbers both sections hold at the same path, in A's order."""
    theirs = dict(_leaves(b, ""))
    return [Delta(path, mine, theirs[path]) for path, mine in _leaves(a, "") if path in theirs]


def _per_class(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Delta]:
    pa, pb = a.get("per_class") or {}, b.get("per_class") or {}
    return [
        Delta(f"{name}/{metric}", _number(pa[name].get(metric)), _number(pb[name].get(metric)))
        for name in pa
        if name in pb
        for metric in PER_CLASS_METRICS
    ]


def _rule_changes(a: list[Any], b: list[Any]) -> list[RuleChange]:
    sa = {r["id"]: r.get("status") for r in a if isinstance(r, Mapping)}
    sb = {r["id"]: r.get("status") for r in b if isinstance(r, Mapping)}
    ids = list(sa) + [i for i in sb if i not in sa]
    return [RuleChange(i, sa.get(i), sb.get(i)) for i in ids if sa.get(i) != sb.get(i)]


def outcomes_of_table(table: PredictionTable) -> Outcomes:
    names = table.classes
    return {
        str(s): (names[int(y)], names[int(p)])
        for s, y, p in zip(table.sample_id, table.label, table.predicted, strict=True)
    }


def outcomes_of_csv(data: bytes) -> Outcomes:
    """The outcomes in a predictions CSV file (``--predictions-out``, ``GetPredictions``)."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    missing = {"sample_id", "label", "predicted"} - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"the predictions file lacks the columns {', '.join(sorted(missing))}")
    return {row["sample_id"]: (row["label"], row["predicted"]) for row in reader}


def _sample_changes(a: Outcomes, b: Outcomes) -> tuple[list[SampleChange], list[SampleChange], str | None]:
    if set(a) != set(b) or any(a[s][0] != b[s][0] for s in a):
        return [], [], "the two evaluations did not judge the same samples with the same labels"
    wrong, right = [], []
    for sample, (label, predicted_a) in a.items():
        predicted_b = b[sample][1]
        if (predicted_a == label) and predicted_b != label:
            wrong.append(SampleChange(sample, label, predicted_a, predicted_b))
        elif predicted_a != label and predicted_b == label:
            right.append(SampleChange(sample, label, predicted_a, predicted_b))
    return wrong, right, None


def diff_verdicts(
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    *,
    a_outcomes: Outcomes | None = None,
    b_outcomes: Outcomes | None = None,
) -> VerdictDiff:
    """What changed from verdict document ``a`` to ``b`` (and, given both, their samples)."""
    ma, mb = a.get("metrics") or {}, b.get("metrics") or {}
    out = VerdictDiff(_identity(a), _identity(b))
    out.metrics = [Delta(n, _number(ma.get(n)), _number(mb.get(n))) for n in GLOBAL_METRICS if n in ma or n in mb]
    out.per_class = _per_class(ma, mb)
    out.slices = _deltas(ma.get("slices"), mb.get("slices")) if ma.get("slices") and mb.get("slices") else []
    out.rules = _rule_changes(a.get("rules") or [], b.get("rules") or [])
    if a_outcomes is None or b_outcomes is None:
        out.samples_note = "the predictions tables of both evaluations are needed to compare samples"
    else:
        out.newly_wrong, out.newly_right, out.samples_note = _sample_changes(a_outcomes, b_outcomes)
    return out


# -- rendering ------------------------------------------------------------------------------


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _delta_rows(deltas: list[Delta], *, changed_only: bool) -> list[list[str]]:
    return [
        [d.name, _num(d.a), _num(d.b), _num(d.change, signed=True)] for d in deltas if not changed_only or d.change != 0
    ]


def _sections(d: VerdictDiff) -> list[tuple[str, list[str], list[list[str]]]]:
    """The diff as titled tables, the same for every format."""
    delta_head = ["name", "A", "B", "change"]
    sample_head = ["sample", "label", "A predicted", "B predicted"]
    return [
        ("Metrics", delta_head, _delta_rows(d.metrics, changed_only=False)),
        ("Per class", delta_head, _delta_rows(d.per_class, changed_only=True)),
        ("Slices", delta_head, _delta_rows(d.slices, changed_only=True)),
        ("Rules that changed status", ["rule", "A", "B"], [[r.id, r.a or "-", r.b or "-"] for r in d.rules]),
        (
            f"Newly wrong ({len(d.newly_wrong)})",
            sample_head,
            [[s.sample_id, s.label, s.a, s.b] for s in d.newly_wrong[:SHOWN_SAMPLES]],
        ),
        (
            f"Newly right ({len(d.newly_right)})",
            sample_head,
            [[s.sample_id, s.label, s.a, s.b] for s in d.newly_right[:SHOWN_SAMPLES]],
        ),
    ]


def _side(label: str, side: Mapping[str, Any]) -> str:
    return (
        f"{label}: {side.get('verdict')}  evaluation {side.get('evaluation_id') or '-'}  model {side.get('model')}"
        f"  dataset {side.get('dataset')}  policy {side.get('policy')}"
    )


def render_text(d: VerdictDiff) -> str:
    out = [_side("A", d.a), _side("B", d.b)]
    for title, head, rows in _sections(d):
        out += ["", title]
        if not rows:
            out.append("  (none)")
            continue
        table = [head, *rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(head))]
        out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    if d.samples_note:
        out += ["", f"samples not compared: {d.samples_note}"]
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(d: VerdictDiff) -> str:
    out = ["## gate diff", "", f"- {_md(_side('A', d.a))}", f"- {_md(_side('B', d.b))}"]
    for title, head, rows in _sections(d):
        out += ["", f"### {title}", ""]
        if not rows:
            out.append("_none_")
            continue
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(_md(c) for c in r) + " |" for r in rows]
    if d.samples_note:
        out += ["", f"_samples not compared: {_md(d.samples_note)}_"]
    return "\n".join(out) + "\n"


def render_html(d: VerdictDiff) -> str:
    body = ["<h1>gate diff</h1>", f"<p>{escape(_side('A', d.a))}<br>{escape(_side('B', d.b))}</p>"]
    for title, head, rows in _sections(d):
        body.append(f"<h2>{escape(title)}</h2>")
        if not rows:
            body.append("<p>none</p>")
            continue
        cells = "".join(f"<th>{escape(h)}</th>" for h in head)
        lines = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        body.append(f"<table><tr>{cells}</tr>{lines}</table>")
    if d.samples_note:
        body.append(f"<p>samples not compared: {escape(d.samples_note)}</p>")
    style = (
        "body{font-family:sans-serif;margin:2rem}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2rem .5rem}"
    )
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>gate diff</title><style>{style}</style></head><body>",
    ]
    return "\n".join([*head, *body, "</body></html>"]) + "\n"
