"""The waivers section of every report: which waivers let the verdict pass, and what the
waived rules really concluded. Each renderer calls the function for its format."""

from __future__ import annotations

from html import escape
from typing import Any

from gate.verdict import RuleResult, Status, Verdict

#: How each format marks a waived rule.
TEXT_MARK = "~ waived"
MARKDOWN_MARK = "🔶 waived"


def waived_rules(verdict: Verdict) -> list[RuleResult]:
    return [r for r in verdict.rules if r.status is Status.WAIVED]


def _line(rule: RuleResult) -> tuple[str, dict[str, Any]]:
    waiver = rule.waiver or {}
    outcome = rule.outcome.value if rule.outcome is not None else "?"
    return outcome, waiver


def passed_words(verdict: Verdict) -> str:
    """How a PASS headline says its block rules fared: ``passed``, or, when waivers let
    some through, ``passed or were waived (1 waived: recall-floor)``."""
    rules = waived_rules(verdict)
    if not rules:
        return "passed"
    return f"passed or were waived ({len(rules)} waived: {', '.join(r.id for r in rules)})"


def waiver_text(verdict: Verdict) -> list[str]:
    """The plain-text lines (none when nothing was waived)."""
    rules = waived_rules(verdict)
    if not rules:
        return []
    out = ["", "Waivers"]
    for rule in rules:
        outcome, w = _line(rule)
        out.append(
            f"  {rule.id}: really {outcome}; waived until {w.get('expires_at')} by {w.get('granted_by')}"
            f" (waiver {w.get('id')}): {w.get('reason')}"
        )
    return out


def waiver_markdown(verdict: Verdict) -> list[str]:
    """The Markdown lines (none when nothing was waived)."""
    rules = waived_rules(verdict)
    if not rules:
        return []
    out = [
        "",
        "### Waivers",
        "",
        "| rule | real outcome | until | granted by | reason | waiver |",
        "|---|---|---|---|---|---|",
    ]
    for rule in rules:
        outcome, w = _line(rule)
        cells = [rule.id, outcome, w.get("expires_at"), w.get("granted_by"), w.get("reason"), w.get("id")]
        out.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return out


def waiver_html(verdict: Verdict) -> list[str]:
    """The HTML elements (none when nothing was waived)."""
    rules = waived_rules(verdict)
    if not rules:
        return []
    rows = []
    for rule in rules:
        outcome, w = _line(rule)
        cells = [rule.id, outcome, w.get("expires_at"), w.get("granted_by"), w.get("reason"), w.get("id")]
        rows.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    head = "<tr><th>rule</th><th>real outcome</th><th>until</th><th>granted by</th><th>reason</th><th>waiver</th></tr>"
    return ['<h2 id="waivers">Waivers</h2>', f"<table>{head}{''.join(rows)}</table>"]


def junit_waived(rule: RuleResult) -> str:
    """The ``<skipped>`` message of a waived rule's test case."""
    outcome, w = _line(rule)
    return f"waived ({outcome}) until {w.get('expires_at')} by {w.get('granted_by')}: {w.get('reason')}"
