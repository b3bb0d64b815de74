"""The verdict for people reading a CI log: identities, metrics, a per-class table, the
confusion matrix, the champion-vs-challenger comparison and the training sample when the
evaluation had them, each rule with a mark (a leakage rule with the near-duplicates it
found), and the verdict on the last line."""

from __future__ import annotations

import textwrap
from typing import Any

from gate.report import waivers
from gate.report.deployment import deployment_text
from gate.report.evidence import (
    MAX_LEAK_EXAMPLES,
    Comparison,
    MetricRow,
    TrainingSample,
    comparison,
    leak_line,
    leakage,
    leakage_more,
    leakage_summary,
    signed,
    training_sample,
)
from gate.report.heldout import heldout_text
from gate.report.robustness import robustness_text
from gate.report.slices import render_text_slices
from gate.verdict import Decision, RuleResult, Severity, Status, Verdict

_MARKS = {
    Status.PASS: "✓ pass",
    Status.FAIL: "✗ FAIL",
    Status.INCONCLUSIVE: "? INCONCLUSIVE",
    Status.ERROR: "! ERROR",
    Status.WAIVED: waivers.TEXT_MARK,
}
_WRAP = 100  # long explanations are wrapped to this width
_HEADLINE = (
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "weighted_f1",
    "mcc",
    "cohen_kappa",
    "majority_baseline_accuracy",
    "imbalance_ratio",
)


def _num(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _count(n: int | None) -> str:
    return "?" if n is None else str(n)


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "-"


def _mark(r: RuleResult) -> str:
    if r.severity is Severity.WARN and r.status is not Status.PASS:
        return f"! warn ({r.status.value})"
    return _MARKS[r.status]


def _table(rows: list[list[str]], right_from: int = 1) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  "
        + "  ".join(
            c.rjust(w) if i >= right_from else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _flag(failed: Severity | None) -> str:
    if failed is None:
        return ""
    return "✗" if failed is Severity.BLOCK else "! warn"


def _rows(head: list[str], rows: list[MetricRow], change: list[str]) -> list[str]:
    table = [head]
    for row, diff in zip(rows, change, strict=True):
        table.append([row.label, _num(row.before), _num(row.after), diff, _flag(row.failed)])
    return _table(table)


def _comparison(c: Comparison) -> list[str]:
    out = ["", "Champion vs challenger"]
    size = f", {c.size} bytes" if c.size is not None else ""
    out.append(f"  champion  {c.path or '<bytes>'}  (sha256 {_short(c.sha256)}{size})")
    out.append("")
    out += _rows(["metric", "champion", "challenger", "difference", ""], c.rows, [signed(r.change) for r in c.rows])
    if c.classes:
        out.append("")
        table = [["class", f"champion {c.class_metric}", f"challenger {c.class_metric}", "change", ""]]
        table += [[k.name, _num(k.before), _num(k.after), signed(k.change), _flag(k.failed)] for k in c.classes]
        out += _table(table)
    if c.interval:
        out += ["", f"  challenger minus champion: {c.interval}"]
        if c.interval_reading:
            out.append(f"  {c.interval_reading}")
    p = c.paired
    if p is not None:
        out += ["", "  McNemar (paired right/wrong on the same samples)"]
        out += [
            "  " + line
            for line in _table(
                [
                    ["", "challenger right", "challenger wrong"],
                    ["champion right", _count(p.both_right), str(p.challenger_worse)],
                    ["champion wrong", str(p.challenger_better), _count(p.both_wrong)],
                ]
            )
        ]
    if c.mcnemar_reading:
        out += textwrap.wrap(
            c.mcnemar_reading, _WRAP, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False
        )
    return out


def _training(t: TrainingSample) -> list[str]:
    what = f"{t.name}: " if t.name else ""
    samples = f"{t.samples} samples, " if t.samples is not None else ""
    out = ["", "Training sample", f"  {what}{samples}sha256 {_short(t.sha256)}", ""]
    gaps = [signed(t.gap(r)) for r in t.rows]
    return out + _rows(["metric", "training sample", "held-out", "gap", ""], t.rows, gaps)


def _leaks(r: RuleResult, indent: int) -> list[str]:
    found = leakage(r)
    if found is None or (not found.examples and not found.matches):
        return []
    pad = " " * indent
    shown = found.examples[:MAX_LEAK_EXAMPLES]
    out = [f"{pad}{leakage_summary(found, len(shown))}"]
    out += [f"{pad}  {leak_line(e)}" for e in shown]
    more = leakage_more(found, len(shown))
    if more:
        out.append(f"{pad}  {more}")
    return out


def render_text(verdict: Verdict) -> str:
    v = verdict
    out: list[str] = []
    model, ds, pol, rt = v.model, v.dataset, v.policy, v.runtime
    out.append(f"model    {model.get('path') or '<bytes>'}  (sha256 {_short(model.get('sha256'))})")
    if ds:
        out.append(
            f"dataset  {ds.get('name')}: {ds.get('samples')} samples, {len(ds.get('classes') or [])} classes"
            f"  (sha256 {_short(ds.get('sha256'))})"
        )
    if pol:
        out.append(f"policy   {pol.get('name')}  ({pol.get('source')}, sha256 {_short(pol.get('sha256'))})")
    if rt.get("provider"):
        device = f" on {rt['device']}" if rt.get("device") else ""
        out.append(f"runtime  onnxruntime {rt.get('onnxruntime')}, {rt.get('provider')}{device}")

    m = v.metrics
    if m:
        out += ["", "Metrics"]
        keys = [*_HEADLINE, "ece"] if m.get("ece") is not None else list(_HEADLINE)
        out += _table([[k, _num(m.get(k))] for k in keys], right_from=1)
        classes = list(m["per_class"])
        out += ["", "Per class"]
        rows = [["class", "support", "predicted", "precision", "recall", "f1"]]
        for name in classes:
            pc = m["per_class"][name]
            rows.append(
                [
                    name,
                    str(pc["support"]),
                    str(pc["predicted"]),
                    _num(pc["precision"]),
                    _num(pc["recall"]),
                    _num(pc["f1"]),
                ]
            )
        out += _table(rows)
        out += ["", "Confusion matrix (rows: actual, columns: predicted)"]
        rows = [["", *classes]] + [
            [name, *map(str, row)] for name, row in zip(classes, m["confusion_matrix"], strict=True)
        ]
        out += _table(rows)
    out += render_text_slices(v)

    compared = comparison(v)
    if compared is not None:
        out += _comparison(compared)
    train = training_sample(v)
    if train is not None:
        out += _training(train)
    out += deployment_text(v)
    out += robustness_text(v) + heldout_text(v)

    if v.rules:
        out += ["", "Rules"]
        width = max(len(r.id) for r in v.rules)
        marks = max(len(_mark(r)) for r in v.rules)
        for r in v.rules:
            out.append(f"  {_mark(r).ljust(marks)}  {r.id.ljust(width)}  {r.message}")
            out += _leaks(r, 2 + marks + 2 + width + 2)

    out += waivers.waiver_text(v)
    if v.error:
        out += ["", f"error: {v.error['type']}: {v.error['message']}"]

    out.append("")
    if v.decision is Decision.PASS:
        warned = v.summary()["warnings"]
        tail = f" ({warned} warning{'s' if warned != 1 else ''})" if warned else ""
        out.append(
            f"VERDICT: PASS: all {sum(r.severity is Severity.BLOCK for r in v.rules)} blocking rules"
            f" {waivers.passed_words(v)}{tail}"
        )
    elif v.decision is Decision.FAIL:
        blocking = [r.id for r in v.rules if r.blocks]
        plural = "s" if len(blocking) != 1 else ""
        out.append(f"VERDICT: FAIL: {len(blocking)} blocking rule{plural} failed: {', '.join(blocking)}")
    else:
        out.append(f"VERDICT: ERROR: {v.error['type'] if v.error else 'evaluation incomplete'}")
    return "\n".join(out) + "\n"
