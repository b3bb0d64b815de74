"""The verdict as JUnit XML, the test-report format GitLab, Jenkins and GitHub test-report
actions load, so a gate run shows up next to the pipeline's other tests.

One test case per rule result, or one per class for a rule with per-class checks
(``recall-floor[rabbit]``), so a report names the class that failed. A failing or
inconclusive block rule is a ``<failure>``; a warn rule is ``<skipped>`` whatever its
outcome, because it never gates; a rule that could not be computed is an ``<error>``.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from gate.report import waivers
from gate.report.deployment import deployment_properties
from gate.report.evidence import leak_line, leakage, leakage_more, leakage_summary
from gate.verdict import RuleResult, Severity, Status, Verdict

# XML 1.0 cannot carry most control characters, not even escaped; a message holding one
# would make the whole report unreadable to the CI server.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml(text: Any) -> str:
    return _NOT_XML.sub("\ufffd", str(text))


@dataclass(frozen=True)
class _Case:
    classname: str
    name: str
    outcome: str | None  # "failure", "skipped", "error" or None for a pass
    kind: str  # the element's type attribute
    message: str
    details: str


def _outcome(status: Status, severity: Severity) -> tuple[str | None, str]:
    if status is Status.ERROR:
        return "error", "error"
    if severity is Severity.WARN or status is Status.WAIVED:
        return "skipped", status.value
    if status is Status.PASS:
        return None, "pass"
    return "failure", status.value


def _cases(verdict: Verdict) -> list[_Case]:
    policy = verdict.policy.get("name") or "policy"
    out = []
    for rule in verdict.rules:
        classname = f"gate.{policy}.{rule.type}"
        checks: list[tuple[str, Status, str]] = [(rule.id, rule.status, rule.message)]
        # one case per class, unless that would hide the rule's own outcome: a rule that
        # errored, or one that blocks although none of its classes failed
        per_class = rule.status not in (Status.ERROR, Status.WAIVED) and (
            not rule.blocks or any(c.status is not Status.PASS for c in rule.classes)
        )
        if rule.classes and per_class:
            checks = [(f"{rule.id}[{c.name}]", c.status, c.message or rule.message) for c in rule.classes]
        for name, status, message in checks:
            outcome, kind = _outcome(status, rule.severity)
            text = f"warn: {message}" if outcome == "skipped" else message
            if status is Status.WAIVED:
                text = waivers.junit_waived(rule)
            out.append(_Case(classname, name, outcome, kind, text, _details(rule, status)))
    if not verdict.rules:
        error = verdict.error or {}
        out.append(
            _Case(
                "gate",
                "evaluation",
                "error",
                str(error.get("type") or "GateError"),
                str(error.get("message") or "evaluation incomplete"),
                str(error.get("message") or "evaluation incomplete"),
            )
        )
    return out


def _details(rule: RuleResult, status: Status) -> str:
    # the element's text: the whole rule message, which for a per-class case holds the
    # context its class message lacks (the other classes, the accuracy paradox), and the
    # near-duplicates a leakage rule found, one a line
    text = f"{rule.id} ({rule.type}, {rule.severity.value}): {status.value}\n{rule.message}"
    found = leakage(rule)
    if found is not None and found.examples:
        lines = [leakage_summary(found, len(found.examples)), *(f"  {leak_line(x)}" for x in found.examples)]
        more = leakage_more(found, len(found.examples))
        text += "\n" + "\n".join([*lines, *([f"  {more}"] if more else [])])
    return text


def _get(section: Any, *keys: str) -> Any:
    """A value inside an optional section of the verdict; None when any part is missing."""
    for key in keys:
        if not isinstance(section, dict):
            return None
        section = section.get(key)
    return section


def _properties(verdict: Verdict) -> list[tuple[str, str]]:
    pairs: list[tuple[str, Any]] = [
        ("verdict", verdict.decision.value),
        ("model.sha256", verdict.model.get("sha256")),
        ("model.path", verdict.model.get("path")),
        ("dataset.name", verdict.dataset.get("name")),
        ("dataset.sha256", verdict.dataset.get("sha256")),
        ("policy.name", verdict.policy.get("name")),
        ("policy.sha256", verdict.policy.get("sha256")),
        ("baseline.model.sha256", _get(verdict.baseline, "model", "sha256")),
        ("baseline.model.path", _get(verdict.baseline, "model", "path")),
        ("train_sample.name", _get(verdict.train_sample, "name")),
        ("train_sample.sha256", _get(verdict.train_sample, "sha256")),
        ("runtime.provider", verdict.runtime.get("provider")),
        ("runtime.onnxruntime", verdict.runtime.get("onnxruntime")),
        ("started_at", verdict.started_at),
        ("evaluation_id", verdict.evaluation_id),
    ]
    if verdict.error:
        pairs.append(("error.type", verdict.error.get("type")))
    pairs += deployment_properties(verdict)
    pairs += [(f"label.{k}", v) for k, v in sorted(verdict.labels.items())]
    return [(k, str(v)) for k, v in pairs if v is not None and v != ""]


def _timestamp(started_at: str | None) -> str | None:
    # JUnit's schema wants a local date-time without a zone: write it in UTC
    if not started_at:
        return None
    try:
        when = dt.datetime.fromisoformat(started_at)
    except ValueError:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when.isoformat(timespec="seconds")


def render_junit(verdict: Verdict) -> str:
    cases = _cases(verdict)
    counts = {
        "tests": str(len(cases)),
        "failures": str(sum(c.outcome == "failure" for c in cases)),
        "errors": str(sum(c.outcome == "error" for c in cases)),
        "skipped": str(sum(c.outcome == "skipped" for c in cases)),
    }
    time = f"{verdict.duration_s or 0:.3f}"
    policy = verdict.policy.get("name")
    root = ET.Element("testsuites", {"name": "gate", **counts, "time": time})
    suite = ET.SubElement(
        root, "testsuite", {"name": _xml(f"gate: {policy}" if policy else "gate"), **counts, "time": time}
    )
    stamp = _timestamp(verdict.started_at)
    if stamp:
        suite.set("timestamp", stamp)
    props = ET.SubElement(suite, "properties")
    for name, value in _properties(verdict):
        ET.SubElement(props, "property", {"name": name, "value": _xml(value)})
    for case in cases:
        el = ET.SubElement(suite, "testcase", {"classname": _xml(case.classname), "name": _xml(case.name), "time": "0"})
        if case.outcome is not None:
            attrs = {"message": _xml(case.message)}
            if case.outcome != "skipped":  # the schema gives <skipped> a message only
                attrs["type"] = _xml(case.kind)
            child = ET.SubElement(el, case.outcome, attrs)
            child.text = _xml(case.details)
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data.decode("utf-8") + "\n"
