"""The verdict for people reading a CI log: identities, metrics, a per-class table, the
confusion matrix, each rule with a mark, and the verdict on the last line."""

from __future__ import annotations

from typing import Any

from gate.verdict import Decision, RuleResult, Severity, Status, Verdict

_MARKS = {
    Status.PASS: "✓ pass",
    Status.FAIL: "✗ FAIL",
    Status.INCONCLUSIVE: "? INCONCLUSIVE",
    Status.ERROR: "! ERROR",
}
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
        out += _table([[k, _num(m.get(k))] for k in _HEADLINE], right_from=1)
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

    if v.rules:
        out += ["", "Rules"]
        width = max(len(r.id) for r in v.rules)
        marks = max(len(_mark(r)) for r in v.rules)
        for r in v.rules:
            out.append(f"  {_mark(r).ljust(marks)}  {r.id.ljust(width)}  {r.message}")

    if v.error:
        out += ["", f"error: {v.error['type']}: {v.error['message']}"]

    out.append("")
    if v.decision is Decision.PASS:
        warned = v.summary()["warnings"]
        tail = f" ({warned} warning{'s' if warned != 1 else ''})" if warned else ""
        out.append(
            f"VERDICT: PASS: all {sum(r.severity is Severity.BLOCK for r in v.rules)} blocking rules passed{tail}"
        )
    elif v.decision is Decision.FAIL:
        blocking = [r.id for r in v.rules if r.blocks]
        plural = "s" if len(blocking) != 1 else ""
        out.append(f"VERDICT: FAIL: {len(blocking)} blocking rule{plural} failed: {', '.join(blocking)}")
    else:
        out.append(f"VERDICT: ERROR: {v.error['type'] if v.error else 'evaluation incomplete'}")
    return "\n".join(out) + "\n"
