"""The deployment part of every report: the diagnostics (e.g. predictions that look
permuted), the latency, memory and provider-parity measurements, and each contract check
that failed. One function per report format; each renderer calls its own once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gate.verdict import Verdict


def _latency_line(rid: str, run: dict[str, Any]) -> str:
    mine = run["candidate_ms"]
    line = f"{rid}: batch {run['batch']}: p50 {mine['p50']} ms, p90 {mine['p90']} ms, p99 {mine['p99']} ms"
    theirs = run.get("champion_ms")
    if theirs:
        line += f"; champion p50 {theirs['p50']} ms, p90 {theirs['p90']} ms, p99 {theirs['p99']} ms"
    return (
        f"{line} ({run['runs']} timed runs after {run['warmup']} warm-up, {run['threads']} thread(s),"
        f" {run['provider']} on {run['device']})"
    )


def _memory_line(rid: str, use: dict[str, Any]) -> str:
    gpu = f"{use['gpu_mb']} MB" if use.get("gpu_mb") is not None else f"not measured ({use.get('gpu_note')})"
    return (
        f"{rid}: peak RSS {use['peak_rss_mb']} MB, GPU {gpu}, model file {use['model_size_mb']} MB"
        f" (batch {use['batch']}, {use['provider']})"
    )


def _parity_line(rid: str, run: dict[str, Any]) -> str:
    if run.get("unavailable"):
        return f"{rid}: {run['left']} vs {run['right']}: {run['unavailable']}"
    return (
        f"{rid}: {run['left']} vs {run['right']}: {run['disagreements']} of {run['samples']} samples change"
        f" class, largest probability difference {run['max_prob_diff']:.3g}"
    )


def _contract_lines(v: Verdict) -> list[str]:
    out = []
    for r in v.rules:
        for check in r.details.get("checks", []) if r.type == "model_contract" else []:
            if check.get("status") == "fail":
                out.append(f"{r.id}: {check['message']}")
    return out


def deployment_lines(v: Verdict) -> list[tuple[str, list[str]]]:
    """(section title, its lines) of each deployment section the verdict has."""
    m = v.metrics or {}
    sections = [
        ("Diagnostics", [d.get("message", str(d)) for d in v.diagnostics or []]),
        ("Contract checks failed", _contract_lines(v)),
        ("Latency", [_latency_line(rid, run) for rid, run in (m.get("latency") or {}).items()]),
        ("Memory", [_memory_line(rid, use) for rid, use in (m.get("memory") or {}).items()]),
        ("Provider parity", [_parity_line(rid, run) for rid, run in (m.get("parity") or {}).items()]),
    ]
    return [(title, lines) for title, lines in sections if lines]


def deployment_text(v: Verdict) -> list[str]:
    """The plain-text report's deployment sections."""
    out: list[str] = []
    for title, lines in deployment_lines(v):
        out += ["", title, *(f"  {line}" for line in lines)]
    return out


def deployment_markdown(v: Verdict, md: Callable[[Any], str]) -> list[str]:
    """The Markdown report's deployment sections; ``md`` escapes text for Markdown."""
    out: list[str] = []
    for title, lines in deployment_lines(v):
        out += ["", f"### {title}", "", *(f"- {md(line)}" for line in lines)]
    return out


def deployment_html(v: Verdict, escape: Callable[[Any], str]) -> list[str]:
    """The HTML report's deployment sections; ``escape`` escapes text for HTML."""
    out: list[str] = []
    for title, lines in deployment_lines(v):
        items = "".join(f"<li>{escape(line)}</li>" for line in lines)
        out += [f"<h2>{escape(title)}</h2>", f"<ul>{items}</ul>"]
    return out


def deployment_properties(v: Verdict) -> list[tuple[str, Any]]:
    """JUnit properties: each diagnostic and each deployment measurement, one line each."""
    out: list[tuple[str, Any]] = []
    for title, lines in deployment_lines(v):
        key = title.lower().replace(" ", "_")
        out += [(f"{key}.{i}", line) for i, line in enumerate(lines)]
    return out
