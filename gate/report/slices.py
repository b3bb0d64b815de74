"""The slices section of the reports: the weakest slices, and per metadata column a
slice × class table of recall shaded as a heatmap, with the cells a slice rule failed
marked. Read from the verdict's ``metrics.slices`` and its ``per_slice`` results, so a
stored verdict renders the same. The text, markdown and HTML renderers each call one
function here; JUnit needs none (each cell of a slice rule is its own test case).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gate.verdict import Status, Verdict

#: Most columns and values per column a report tables (the JSON has them all).
MAX_COLUMNS = 6
MAX_VALUES = 30
#: Markdown's heatmap: a square per recall band, worst first.
_SQUARES = ((0.5, "🟥"), (0.7, "🟧"), (0.9, "🟨"), (1.01, "🟩"))


def _section(v: Verdict) -> dict[str, Any]:
    section = (v.metrics or {}).get("slices")
    return section if isinstance(section, dict) else {}


def failed_cells(v: Verdict) -> set[tuple[str, str, str]]:
    """(column, value, class or "") of every cell a single-column ``per_slice`` rule failed.

    A cell's name is looked up among the names the rule gives (``camera=b`` or
    ``camera=b, otter``), not split apart: a value or class may itself hold ", " or "="."""
    columns = _section(v).get("columns") or {}
    classes = _classes(v)
    out = set()
    for rule in v.rules:
        column = rule.details.get("slice")
        if rule.type != "per_slice" or not isinstance(column, str) or " x " in column:
            continue
        names = {}
        for value in columns.get(column) or {}:
            names[f"{column}={value}"] = (column, value, "")
            names |= {f"{column}={value}, {c}": (column, value, c) for c in classes}
        out |= {names[cell.name] for cell in rule.classes if cell.status is Status.FAIL and cell.name in names}
    return out


def _num(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}"


def weakest_lines(v: Verdict) -> list[str]:
    """One line per weakest slice: its metric, support, and whether a rule guards its column."""
    section = _section(v)
    by = section.get("weakest_by") or {}
    lines = []
    for w in section.get("weakest") or []:
        guard = "a rule checks this column" if w.get("guarded") else "no rule checks this column"
        lines.append(f"{w['slice']}: {w['metric']} {_num(w.get('observed'))} ({w['support']} samples; {guard})")
    if lines:
        head = f"Weakest slices (by {by.get('metric')}, slices of >= {by.get('min_support')} samples)"
        return [head, *lines]
    return []


def _columns(v: Verdict) -> list[tuple[str, dict[str, Any]]]:
    columns = _section(v).get("columns") or {}
    return [(name, values) for name, values in list(columns.items())[:MAX_COLUMNS] if "listed" not in values]


def _classes(v: Verdict) -> list[str]:
    return list((v.metrics or {}).get("per_class") or {})


def render_text_slices(v: Verdict) -> list[str]:
    lines = weakest_lines(v)
    return ["", lines[0], *(f"  {line}" for line in lines[1:])] if lines else []


def render_markdown_slices(v: Verdict, md: Callable[[Any], str]) -> list[str]:
    """The markdown section: the weakest slices and a recall heatmap per column."""
    columns = _columns(v)
    if not columns:
        return []
    lines = weakest_lines(v)
    out = ["", "### Slices", ""]
    if lines:
        out += [f"{md(lines[0])}:", "", *(f"- {md(line)}" for line in lines[1:])]
    failed = failed_cells(v)
    classes = _classes(v)
    for name, values in columns:
        header = [md(name), "support", "accuracy", *(md(c) for c in classes)]
        rows = []
        for value, entry in list(values.items())[:MAX_VALUES]:
            cells = [_md_cell(entry["per_class"].get(c), (name, value, c) in failed) for c in classes]
            whole = (name, value, "") in failed
            accuracy = _num(entry["accuracy"]) + (" ❌" if whole else "")
            rows.append([md(value), str(entry["support"]), accuracy, *cells])
        align = ["---", "---:", "---:", *("---:" for _ in classes)]
        out += ["", f"Recall by {md(name)} (❌ a cell a rule failed):", ""]
        out += [f"| {' | '.join(r)} |" for r in (header, align, *rows)]
    return out


def _md_cell(entry: dict[str, Any] | None, failed: bool) -> str:
    if not entry or entry.get("recall") is None:
        return "—"
    recall = float(entry["recall"])
    square = next(sq for limit, sq in _SQUARES if recall < limit)
    return f"{square} {recall:.3f} ({entry['tp']}/{entry['support']})" + (" ❌" if failed else "")


def _shade(recall: float) -> str:
    """Red (0) through yellow to green (1), as an HSL background."""
    return f"hsl({round(120 * max(0.0, min(1.0, recall)))}, 70%, 85%)"


def render_html_slices(v: Verdict, e: Callable[[Any], str]) -> list[str]:
    """The HTML section: the weakest slices and a shaded slice × class recall table per column."""
    columns = _columns(v)
    if not columns:
        return []
    lines = weakest_lines(v)
    out = ["<section>", "<h2>Slices</h2>"]
    if lines:
        out += [f"<p>{e(lines[0])}</p>", "<ul>", *(f"<li>{e(line)}</li>" for line in lines[1:]), "</ul>"]
    failed = failed_cells(v)
    classes = _classes(v)
    for name, values in columns:
        head = "".join(f"<th>{e(c)}</th>" for c in classes)
        out += [f"<h3>Recall by {e(name)}</h3>", "<table class='slices'>"]
        out.append(f"<tr><th>{e(name)}</th><th>support</th><th>accuracy</th>{head}</tr>")
        for value, entry in list(values.items())[:MAX_VALUES]:
            cells = "".join(_html_cell(entry["per_class"].get(c), (name, value, c) in failed, e) for c in classes)
            mark = " ✗" if (name, value, "") in failed else ""
            out.append(
                f"<tr><td>{e(value)}</td><td>{entry['support']}</td><td>{e(_num(entry['accuracy']))}{mark}</td>"
                f"{cells}</tr>"
            )
        out.append("</table>")
    return [*out, "</section>"]


def _html_cell(entry: dict[str, Any] | None, failed: bool, e: Callable[[Any], str]) -> str:
    if not entry or entry.get("recall") is None:
        return "<td>—</td>"
    recall = float(entry["recall"])
    border = "outline: 2px solid #cf222e;" if failed else ""
    title = f"recall {recall:.3f} ({entry['tp']}/{entry['support']})" + (": failed a slice rule" if failed else "")
    text = f"{recall:.3f}" + (" ✗" if failed else "")
    return f'<td style="background: {_shade(recall)}; {border}" title="{e(title)}">{e(text)}</td>'
