"""The verdict as GitHub-flavoured Markdown, for a pull-request comment or a CI job summary.

The first line is the verdict; then who was judged (model, dataset, policy, provider),
the rules with the failing ones first (a leakage rule followed by the near-duplicates it
found), the headline metrics, a per-class table with the floors the policy sets, the
confusion matrix, and, when the evaluation had them, the champion-vs-challenger
comparison and the training sample.

The helpers that order rules, word the verdict and find per-class floors are shared with
the HTML report, so both say the same thing in the same order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gate.metrics import PER_CLASS_METRICS
from gate.report import waivers
from gate.report.deployment import deployment_markdown
from gate.report.evidence import (
    MAX_LEAK_EXAMPLES,
    Comparison,
    MetricRow,
    TrainingSample,
    comparison,
    leakage,
    leakage_more,
    leakage_summary,
    signed,
    training_sample,
)
from gate.report.robustness import robustness_markdown
from gate.report.slices import render_markdown_slices
from gate.verdict import Decision, RuleResult, Severity, Status, Verdict

# isort: split
from gate.report.heldout import heldout_markdown

#: The metrics worth a glance, in the order people read them, with their display names.
HEADLINE: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced accuracy"),
    ("macro_f1", "macro F1"),
    ("mcc", "MCC"),
)

# Above this many classes a K×K Markdown table is unreadable and can exceed the size
# limit of a pull-request comment (65,536 characters); the largest confusions say more.
MAX_MATRIX_CLASSES = 20
TOP_CONFUSIONS = 15
_MAX_HEADING = 200

_ICONS = {Decision.PASS: "✅", Decision.FAIL: "❌", Decision.ERROR: "⚠️"}
_STATUS = {
    Status.PASS: "✅ pass",
    Status.FAIL: "❌ fail",
    Status.INCONCLUSIVE: "❔ inconclusive",
    Status.ERROR: "💥 error",
    Status.WAIVED: waivers.MARKDOWN_MARK,
}


# --- shared with the HTML report ---------------------------------------------------------


def urgency(rule: RuleResult) -> int:
    """Sort key: errors, then block failures, block inconclusives, warn failures, passes."""
    if rule.status is Status.ERROR:
        return 0
    if rule.severity is Severity.BLOCK and rule.status is Status.FAIL:
        return 1
    if rule.severity is Severity.BLOCK and rule.status is Status.INCONCLUSIVE:
        return 2
    if rule.status is not Status.PASS:
        return 3
    return 4


def by_urgency(rules: Iterable[RuleResult]) -> list[RuleResult]:
    """The rules, most urgent first; policy order within each group (``sorted`` is stable)."""
    return sorted(rules, key=urgency)


def reason(verdict: Verdict) -> str:
    """Why the verdict is what it is, in one line (without the names of failed rules)."""
    if verdict.decision is Decision.PASS:
        blocking = sum(r.severity is Severity.BLOCK for r in verdict.rules)
        warned = verdict.summary()["warnings"]
        tail = f" ({warned} warning{'s' if warned != 1 else ''})" if warned else ""
        return f"all {blocking} blocking rule{'s' if blocking != 1 else ''} {waivers.passed_words(verdict)}{tail}"
    if verdict.decision is Decision.FAIL:
        n = sum(r.blocks for r in verdict.rules)
        return f"{n} blocking rule{'s' if n != 1 else ''} failed"
    if verdict.error:
        return f"{verdict.error.get('type', 'GateError')}: {verdict.error.get('message', '')}"
    return "evaluation incomplete"


@dataclass(frozen=True)
class Floor:
    """A per-class floor a ``per_class`` rule put on one class."""

    rule: str
    metric: str | None  # None when the check's message does not name it
    threshold: float
    status: Status
    severity: Severity

    @property
    def label(self) -> str:
        # three decimals, unless that would misstate the floor (0.8125 is not 0.812)
        text = f"{self.threshold:.3f}"
        if float(text) != self.threshold:
            text = f"{self.threshold:g}"
        return f"{self.metric or 'floor'} ≥ {text}"


def _check_metric(name: str, message: str) -> str | None:
    # The verdict JSON does not carry a per_class rule's metric as a field; every check
    # message the rule writes starts with "<class>: <metric> ", so read it from there.
    prefix = f"{name}: "
    if not message.startswith(prefix):
        return None
    word = message[len(prefix) :].split(" ", 1)[0]
    return word if word in PER_CLASS_METRICS else None


def class_floors(rules: Iterable[RuleResult]) -> dict[str, list[Floor]]:
    """Class name -> the floors every ``per_class`` rule result sets on it, in rule order."""
    out: dict[str, list[Floor]] = {}
    for rule in rules:
        if rule.type != "per_class":
            continue
        for check in rule.classes:
            floor = Floor(
                rule.id, _check_metric(check.name, check.message), check.threshold, check.status, rule.severity
            )
            out.setdefault(check.name, []).append(floor)
    return out


def number(value: Any, digits: int = 3) -> str:
    """``digits`` decimals; ``n/a`` for an undefined (None or non-finite) value."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def short_sha(sha: Any) -> str | None:
    return sha[:12] if isinstance(sha, str) and sha else None


def class_names(metrics: dict[str, Any]) -> list[str]:
    """The classes in confusion-matrix order (``per_class`` keeps the dataset's order)."""
    return list(metrics.get("per_class") or {})


# --- Markdown --------------------------------------------------------------------------------

# Characters that start Markdown constructs inline; `_` only matters at a word boundary,
# `<` only where it could open an HTML tag, `&` only where it could spell an entity.
_SPECIAL = re.compile(r"[\\`*\[\]~|]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])|<(?=[A-Za-z/!?])|&(?=#?[A-Za-z0-9]+;)")


def md(text: Any) -> str:
    """Text safe inside a Markdown paragraph or table cell: what could be markup is
    escaped, and line breaks become ``<br>`` so a message never breaks a table row."""
    escaped = _SPECIAL.sub(lambda m: "&amp;" if m.group() == "&" else "\\" + m.group(), str(text))
    return "<br>".join(escaped.splitlines()) if "\n" in escaped or "\r" in escaped else escaped


def code(text: Any, *, table: bool = True) -> str:
    """An inline code span that survives any backticks in ``text``. In a table ``|`` is
    escaped even here, because GFM splits table cells before it reads code spans."""
    s = " ".join(str(text).splitlines())
    if table:
        s = s.replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _table(header: list[str], rows: list[list[str]], right: range) -> list[str]:
    """A GFM table; the columns in ``right`` (the numbers) are right-aligned."""
    align = ["---:" if i in right else "---" for i in range(len(header))]
    return [f"| {' | '.join(r)} |" for r in (header, align, *rows)]


def _identity(v: Verdict) -> str | None:
    parts = []
    if v.model:
        sha = short_sha(v.model.get("sha256"))
        path = v.model.get("path")
        parts.append(
            "model "
            + (code(path, table=False) if path else "(bytes)")
            + (f" (sha256 {code(sha, table=False)})" if sha else " (sha256 unknown)")
        )
    if v.dataset.get("name"):
        samples = v.dataset.get("samples")
        parts.append(f"dataset **{md(v.dataset['name'])}**" + (f" ({samples} samples)" if samples is not None else ""))
    if v.policy.get("name"):
        parts.append(f"policy **{md(v.policy['name'])}**")
    provider = v.runtime.get("provider")
    if provider:
        device = f" on {md(v.runtime['device'])}" if v.runtime.get("device") else ""
        parts.append(f"provider {code(provider, table=False)}{device}")
    return " · ".join(parts) or None


def _error_block(v: Verdict) -> list[str]:
    if not v.error:
        return []
    message = str(v.error.get("message", ""))
    out = [f"**Error** {code(v.error.get('type', 'GateError'), table=False)}", ""]
    # a fence longer than any backtick run inside keeps the message verbatim
    fence = "`" * max(3, max((len(run) for run in re.findall(r"`+", message)), default=0) + 1)
    return [*out, fence, message, fence]


def _rules(v: Verdict) -> list[str]:
    rows = []
    for r in by_urgency(v.rules):
        status = _STATUS[r.status]
        if r.severity is Severity.WARN:
            status = "✅ pass (warn)" if r.status is Status.PASS else f"⚠️ warn ({r.status.value})"
        rows.append([status, code(r.id), code(r.type), md(r.message)])
    return ["### Rules", "", *_table(["status", "rule", "type", "message"], rows, right=range(0))]


def _headline(metrics: dict[str, Any]) -> list[str]:
    items = [f"{label} **{number(metrics.get(key))}**" for key, label in HEADLINE]
    if number(metrics.get("ece")) != "n/a":
        items.append(f"ECE **{number(metrics['ece'])}** (expected calibration error; lower is better)")
    samples = metrics.get("samples")
    if samples is not None:
        items.append(f"samples **{samples}**")
    return ["### Metrics", "", *(f"- {item}" for item in items)]


def _per_class(v: Verdict, metrics: dict[str, Any]) -> list[str]:
    floors = class_floors(v.rules)
    rows = []
    for name in class_names(metrics):
        pc = metrics["per_class"][name] or {}
        marks = []
        for f in floors.get(name, []):
            failed = f.status is not Status.PASS
            flag = (" ❌" if f.severity is Severity.BLOCK else " ⚠️") if failed else ""
            marks.append(f"{f.label}{flag}")
        rows.append(
            [
                code(name),
                str(pc.get("support", "n/a")),
                str(pc.get("predicted", "n/a")),
                number(pc.get("precision")),
                number(pc.get("recall")),
                number(pc.get("f1")),
                "; ".join(dict.fromkeys(marks)) or "",
            ]
        )
    header = ["class", "support", "predicted", "precision", "recall", "F1", "floor"]
    return ["### Per class", "", *_table(header, rows, right=range(1, 6))]


def _confusion(metrics: dict[str, Any]) -> list[str]:
    names = class_names(metrics)
    matrix: list[list[int]] = metrics.get("confusion_matrix") or []
    if not names or len(matrix) != len(names):
        return []
    if len(names) <= MAX_MATRIX_CLASSES:
        rows = [
            [code(name), *(f"**{n}**" if i == j else str(n) for j, n in enumerate(row))]
            for i, (name, row) in enumerate(zip(names, matrix, strict=True))
        ]
        header = ["actual ↓ predicted →", *(code(n) for n in names)]
        return [
            "### Confusion matrix (rows: actual, columns: predicted)",
            "",
            *_table(header, rows, right=range(1, len(header))),
        ]
    # Too many classes for a grid: list the largest mistakes instead.
    cells = [(-count, i, j) for i, row in enumerate(matrix) for j, count in enumerate(row) if i != j and count > 0]
    rows = []
    for neg, i, j in sorted(cells)[:TOP_CONFUSIONS]:
        support = sum(matrix[i])
        rows.append([code(names[i]), code(names[j]), str(-neg), number(-neg / support if support else None)])
    title = f"### Largest confusions ({len(names)} classes: the full matrix is in the JSON and HTML reports)"
    if not rows:
        return [title, "", "No sample was misclassified."]
    return [title, "", *_table(["actual", "predicted as", "count", "share of actual"], rows, right=range(2, 4))]


def _flag(failed: Severity | None) -> str:
    if failed is None:
        return ""
    return " ❌" if failed is Severity.BLOCK else " ⚠️"


def _metric_rows(head: list[str], rows: list[MetricRow], change: list[str]) -> list[str]:
    body = [
        [md(r.label), number(r.before), number(r.after), f"{diff}{_flag(r.failed)}"]
        for r, diff in zip(rows, change, strict=True)
    ]
    return _table(head, body, right=range(1, 4))


def _count(n: int | None) -> str:
    return "?" if n is None else str(n)


def _comparison(c: Comparison) -> list[str]:
    who = code(c.path, table=False) if c.path else "(bytes)"
    sha = short_sha(c.sha256)
    who += f" (sha256 {code(sha, table=False)})" if sha else " (sha256 unknown)"
    out = [
        "### Champion vs challenger",
        "",
        f"The champion, {who}, ran on the same samples as this model, the challenger.",
    ]
    out += [
        "",
        *_metric_rows(["metric", "champion", "challenger", "difference"], c.rows, [signed(r.change) for r in c.rows]),
    ]
    if c.classes:
        m = c.class_metric
        rows = [
            [code(k.name), number(k.before), number(k.after), f"{signed(k.change)}{_flag(k.failed)}"] for k in c.classes
        ]
        out += ["", *_table(["class", f"champion {m}", f"challenger {m}", "change"], rows, right=range(1, 4))]
    if c.interval:
        reading = f" {c.interval_reading}" if c.interval_reading else ""
        out += ["", f"Challenger minus champion: {c.interval}.{reading}"]
    p = c.paired
    if p is not None:
        rows = [
            ["champion right", _count(p.both_right), f"**{p.challenger_worse}**"],
            ["champion wrong", f"**{p.challenger_better}**", _count(p.both_wrong)],
        ]
        out += ["", *_table(["McNemar", "challenger right", "challenger wrong"], rows, right=range(1, 3))]
    if c.mcnemar_reading:
        out += ["", c.mcnemar_reading]
    return out


def _training(t: TrainingSample) -> list[str]:
    parts = [f"**{md(t.name)}**" if t.name else "the training sample"]
    if t.samples is not None:
        parts.append(f"{t.samples} samples")
    sha = short_sha(t.sha256)
    if sha:
        parts.append(f"sha256 {code(sha, table=False)}")
    intro = (
        f"This model on its training sample, {', '.join(parts)}, against the held-out set: a large gap means"
        " it does much better on data it was trained on (overfitting)."
    )
    head = ["metric", "training sample", "held-out", "gap"]
    return ["### Training sample", "", intro, "", *_metric_rows(head, t.rows, [signed(t.gap(r)) for r in t.rows])]


def _leaks(v: Verdict) -> list[str]:
    out: list[str] = []
    for r in by_urgency(v.rules):
        found = leakage(r)
        if found is None or (not found.examples and not found.matches):
            continue
        shown = found.examples[:MAX_LEAK_EXAMPLES]
        out += [
            "",
            f"#### Near-duplicates found by {code(r.id, table=False)}",
            "",
            md(leakage_summary(found, len(shown))),
        ]
        if shown:
            rows = [[code(e.sample), code(e.train), "?" if e.distance is None else str(e.distance)] for e in shown]
            out += ["", *_table(["held-out sample", "training image", "Hamming distance"], rows, right=range(2, 3))]
        more = leakage_more(found, len(shown))
        if more:
            out += ["", md(more)]
    return out


def run_facts(v: Verdict, *, text: Callable[[str], str], ident: Callable[[str], str]) -> list[str]:
    """When the evaluation started, how long it took and its id, in the report's own
    quoting (``text`` for plain values, ``ident`` for the id)."""
    parts = []
    if v.started_at:
        parts.append(f"started {text(v.started_at)}")
    if v.duration_s is not None:
        parts.append(f"took {v.duration_s:.2f} s")
    if v.evaluation_id:
        parts.append(ident(v.evaluation_id))
    return parts


def _footer(v: Verdict) -> str | None:
    parts = run_facts(v, text=md, ident=lambda i: f"evaluation {code(i, table=False)}")
    return " · ".join(parts) or None


def render_markdown(verdict: Verdict) -> str:
    v = verdict
    head = reason(v)
    if v.decision is Decision.ERROR:
        # the heading keeps the error's first line, shortened; the block below has all of it
        head = (head.splitlines() or [""])[0]
        if len(head) > _MAX_HEADING:
            head = head[: _MAX_HEADING - 1].rstrip() + "…"
    out = [f"## {_ICONS[v.decision]} gate: {v.decision.value} — {md(head)}"]
    identity = _identity(v)
    if identity:
        out += ["", identity]
    if v.error:
        out += ["", *_error_block(v)]
    if v.rules:
        out += ["", *_rules(v), *_leaks(v), *waivers.waiver_markdown(v)]
    m = v.metrics
    if m:
        out += ["", *_headline(m)]
        if m.get("per_class"):
            out += ["", *_per_class(v, m)]
            confusion = _confusion(m)
            if confusion:
                out += ["", *confusion]
        out += render_markdown_slices(v, md)
    compared = comparison(v)
    if compared is not None:
        out += ["", *_comparison(compared)]
    train = training_sample(v)
    if train is not None:
        out += ["", *_training(train)]
    out += deployment_markdown(v, md)
    out += robustness_markdown(v, md)
    out += heldout_markdown(v, md)
    footer = _footer(v)
    if footer:
        out += ["", footer]
    return "\n".join(out) + "\n"
