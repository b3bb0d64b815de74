"""The markdown, junit and html reports, on verdicts built by the real policy engine.

No model runs: each verdict comes from a confusion matrix through
``ClassificationMetrics.from_confusion``, ``parse_policy``, ``apply_policy`` and
``decide``, with fixed identities, so the reports are byte-for-byte reproducible.

Markdown and JUnit output is compared exactly with the golden files in
``tests/golden/``. After an intended change of a report, rewrite them with::

    GATE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_reports.py

and review the diff of ``tests/golden/`` before committing it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gate.metrics import ClassificationMetrics
from gate.policy import apply_policy, parse_policy
from gate.report import RENDERERS, render_html, render_json, render_junit, render_markdown
from gate.report.markdown import md
from gate.verdict import Decision, RuleResult, Severity, Status, Verdict, decide

GOLDEN = Path(__file__).parent / "golden"
PETS = ["cat", "dog", "rabbit"]
TUTORIAL = [[50, 2, 3], [4, 45, 1], [2, 3, 40]]
# 98% accuracy, and the rare class found 12 times out of 100
RARE_MISSED = [[2444, 6, 0], [6, 2444, 0], [44, 44, 12]]

PASS_POLICY = """\
version: 1
name: pets-production
rules:
  - {id: accuracy-floor, type: metric, metric: accuracy, min: 0.85}
  - {id: recall-floor, type: per_class, metric: recall, min: 0.80, classes: {rabbit: 0.85}}
  - {id: precision-floor, type: per_class, metric: precision, min: 0.70}
  - {id: enough-evidence, type: min_support, min: 30}
  - {id: macro-f1-watch, type: metric, metric: macro_f1, min: 0.95, severity: warn}
"""

FAIL_POLICY = """\
version: 1
name: pets-production
rules:
  - {id: accuracy-floor, type: metric, metric: accuracy, min: 0.95}
  - {id: recall-floor, type: per_class, metric: recall, min: 0.80}
  - {id: enough-evidence, type: min_support, min: 150}
  - {id: imbalance-guard, type: imbalance, max_ratio: 5, min_recall: 0.5}
  - {id: macro-f1-watch, type: metric, metric: macro_f1, min: 0.90, severity: warn}
"""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def build(matrix: list[list[int]], policy_yaml: str, classes: list[str] = PETS, **changes: object) -> Verdict:
    """A verdict as an evaluation would produce it, from a confusion matrix and a policy."""
    metrics = ClassificationMetrics.from_confusion(matrix, classes)
    policy = parse_policy(policy_yaml, source="policies/pets-production.yaml")
    rules = apply_policy(policy, metrics)
    verdict = Verdict(
        decision=decide(rules),
        model={"sha256": _sha("candidate model"), "path": "models/candidate.onnx", "bytes": 4_194_304},
        dataset={
            "name": "pets-heldout",
            "sha256": _sha("pets held-out set"),
            "samples": metrics.samples,
            "classes": list(classes),
        },
        policy={"name": policy.name, "sha256": _sha("pets-production policy"), "source": policy.source},
        runtime={"onnxruntime": "1.20.1", "provider": "CPUExecutionProvider", "requested_provider": "auto"},
        metrics=metrics.to_dict(),
        rules=rules,
        started_at="2024-05-01T12:00:00+00:00",
        duration_s=3.5,
    )
    return dataclasses.replace(verdict, **changes)  # type: ignore[arg-type]


def passing() -> Verdict:
    return build(TUTORIAL, PASS_POLICY, evaluation_id="ev-0001", labels={"pipeline_id": "4711"})


def failing() -> Verdict:
    return build(RARE_MISSED, FAIL_POLICY)


def erroring() -> Verdict:
    return Verdict(
        decision=Decision.ERROR,
        model={"sha256": None, "path": "models/broken.onnx"},
        dataset={"name": "pets-heldout", "sha256": _sha("pets held-out set"), "samples": 150, "classes": PETS},
        policy={"name": "pets-production", "sha256": _sha("pets-production policy"), "source": "<inline>"},
        runtime={"onnxruntime": "1.20.1", "provider": None, "requested_provider": "auto"},
        error={
            "type": "ModelError",
            "message": "model output has 4 classes but the dataset has 3 | expected (N, 3)\nsee the model contract",
        },
        started_at="2024-05-01T12:00:00+00:00",
        duration_s=0.25,
    )


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("GATE_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        return
    assert path.exists(), f"{path} is missing; create it with GATE_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs; if intended, rewrite with GATE_UPDATE_GOLDEN=1"


def test_the_fixtures_are_what_they_claim() -> None:
    assert passing().decision is Decision.PASS
    assert failing().decision is Decision.FAIL
    assert failing().metrics is not None and failing().metrics["accuracy"] == pytest.approx(0.98)  # type: ignore[index]
    statuses = {r.id: (r.status, r.severity) for r in failing().rules}
    assert statuses == {
        "accuracy-floor": (Status.PASS, Severity.BLOCK),
        "recall-floor": (Status.FAIL, Severity.BLOCK),
        "enough-evidence": (Status.INCONCLUSIVE, Severity.BLOCK),
        "imbalance-guard": (Status.FAIL, Severity.BLOCK),
        "macro-f1-watch": (Status.FAIL, Severity.WARN),
    }
    assert {r.id: r.status for r in passing().rules}["macro-f1-watch"] is Status.FAIL


def test_every_format_is_registered() -> None:
    assert set(RENDERERS) == {"json", "text", "markdown", "junit", "html"}


def _reread(verdict: Verdict) -> Verdict:
    return Verdict.from_dict(json.loads(render_json(verdict)))


# the failing verdict's HTML is checked against a page shared with other tests, below
@pytest.mark.parametrize(
    ("fmt", "make"),
    [("markdown", failing), ("markdown", erroring), ("junit", failing), ("junit", erroring), ("html", erroring)],
)
def test_reports_render_the_same_from_the_verdict_json(fmt: str, make: object) -> None:
    """A verdict read back from its JSON (from the service or the audit log) renders alike."""
    verdict = make()  # type: ignore[operator]
    assert RENDERERS[fmt](_reread(verdict)) == RENDERERS[fmt](verdict)


# --- markdown -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "make"), [("fail", failing), ("pass", passing), ("error", erroring)])
def test_markdown_golden(name: str, make: object) -> None:
    check_golden(f"verdict-{name}.md", render_markdown(make()))  # type: ignore[operator]


def test_markdown_heads_with_the_verdict() -> None:
    assert render_markdown(failing()).startswith("## ❌ gate: FAIL — 3 blocking rules failed\n")
    assert render_markdown(passing()).startswith("## ✅ gate: PASS — all 4 blocking rules passed (1 warning)\n")
    assert render_markdown(erroring()).startswith(
        "## ⚠️ gate: ERROR — ModelError: model output has 4 classes but the dataset has 3 \\| expected (N, 3)\n"
    )


def test_markdown_lists_failing_rules_first() -> None:
    section = render_markdown(failing()).split("### Rules\n", 1)[1].split("###", 1)[0]
    order = re.findall(r"^\| [^|]+ \| `([a-z0-9-]+)` \|", section, flags=re.MULTILINE)
    assert order == ["recall-floor", "imbalance-guard", "enough-evidence", "macro-f1-watch", "accuracy-floor"]


def test_markdown_shows_floors_and_undefined_values() -> None:
    # rabbit is never predicted: its precision is undefined, and the precision floor fails on it
    verdict = build([[50, 0, 0], [0, 50, 0], [20, 10, 0]], PASS_POLICY)
    text = render_markdown(verdict)
    rabbit = next(line for line in text.splitlines() if line.startswith("| `rabbit` | 30 |"))
    assert rabbit == "| `rabbit` | 30 | 0 | n/a | 0.000 | 0.000 | recall ≥ 0.850 ❌; precision ≥ 0.700 ❌ |"


def test_markdown_of_a_rule_error_shows_the_rules_and_the_error() -> None:
    verdict = passing()
    verdict.rules.insert(
        0, RuleResult("broken", "metric", Status.ERROR, Severity.BLOCK, "rule could not be computed: KeyError")
    )
    verdict.decision = decide(verdict.rules)
    verdict.error = {"type": "InternalError", "message": "rule 'broken': rule could not be computed: KeyError"}
    text = render_markdown(verdict)
    assert text.startswith("## ⚠️ gate: ERROR — InternalError: rule 'broken': rule could not be computed: KeyError\n")
    section = text.split("### Rules\n", 1)[1]
    assert section.split("\n")[3].startswith("| 💥 error | `broken` |")
    assert "### Per class" in text


def test_markdown_escapes_table_breakers() -> None:
    verdict = failing()
    verdict.rules[0] = dataclasses.replace(verdict.rules[0], message="a | b\nc <img src=x> *d* [e](f)")
    text = render_markdown(verdict)
    assert "a \\| b<br>c \\<img src=x> \\*d\\* \\[e\\](f)" in text
    assert md("balanced_accuracy 0.7 < 0.8 & more") == "balanced_accuracy 0.7 < 0.8 & more"


def test_markdown_summarises_the_largest_confusions_for_many_classes() -> None:
    names = [f"c{i:02d}" for i in range(25)]
    matrix = [[40 if i == j else (3 if j == (i + 1) % 25 else 0) for j in range(25)] for i in range(25)]
    text = render_markdown(build(matrix, PASS_POLICY.replace("rabbit: 0.85", "c00: 0.85"), classes=names))
    assert "### Largest confusions (25 classes" in text
    assert "| `c00` | `c01` | 3 | 0.070 |" in text
    assert "### Confusion matrix" not in text


# --- junit --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "make"), [("fail", failing), ("error", erroring)])
def test_junit_golden(name: str, make: object) -> None:
    check_golden(f"verdict-{name}.junit.xml", render_junit(make()))  # type: ignore[operator]


def _suite(xml: str) -> tuple[ET.Element, ET.Element]:
    root = ET.fromstring(xml.encode("utf-8"))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    return root, suites[0]


@pytest.mark.parametrize("make", [passing, failing, erroring])
def test_junit_counts_match_the_cases(make: object) -> None:
    verdict: Verdict = make()  # type: ignore[operator]
    xml = render_junit(verdict)
    assert xml.startswith("<?xml version='1.0' encoding='utf-8'?>\n")
    root, suite = _suite(xml)
    cases = suite.findall("testcase")
    for el in (root, suite):
        assert int(el.get("tests", "-1")) == len(cases)
        for kind, attr in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
            assert int(el.get(attr, "-1")) == sum(len(c.findall(kind)) for c in cases)
        assert float(el.get("time", "-1")) == pytest.approx(verdict.duration_s)
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["verdict"] == verdict.decision.value
    assert props["dataset.sha256"] == verdict.dataset["sha256"]
    assert props["policy.sha256"] == verdict.policy["sha256"]
    assert props.get("model.sha256") == verdict.model["sha256"]


def test_junit_fails_each_failing_block_class_and_skips_warn_rules() -> None:
    verdict = failing()
    _, suite = _suite(render_junit(verdict))
    assert suite.get("name") == "gate: pets-production"
    assert suite.get("timestamp") == "2024-05-01T12:00:00"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    expected_failures = set()
    for r in verdict.rules:
        if r.severity is Severity.BLOCK:
            outcomes = [(f"{r.id}[{c.name}]", c.status) for c in r.classes] or [(r.id, r.status)]
            expected_failures |= {name for name, status in outcomes if status in (Status.FAIL, Status.INCONCLUSIVE)}
    assert expected_failures == {"recall-floor[rabbit]", "enough-evidence[rabbit]", "imbalance-guard[rabbit]"}
    failed = {name for name, c in cases.items() if c.find("failure") is not None}
    assert failed == expected_failures
    for name in failed:
        assert len(cases[name].findall("failure")) == 1
    assert cases["enough-evidence[rabbit]"].find("failure").get("type") == "inconclusive"  # type: ignore[union-attr]
    recall = cases["recall-floor[rabbit]"].find("failure")
    assert recall is not None and recall.get("type") == "fail"
    assert recall.get("message") == "rabbit: recall 0.120 < 0.800 (12/100)"
    assert cases["recall-floor[rabbit]"].get("classname") == "gate.pets-production.per_class"
    # the warn rule is skipped, never failed
    skipped = cases["macro-f1-watch"].find("skipped")
    assert skipped is not None and skipped.get("message", "").startswith("warn: macro_f1 ")
    assert cases["accuracy-floor"].find("*") is None  # a pass has no outcome element


def test_junit_skips_a_passing_warn_rule_too_and_errors_an_errored_rule() -> None:
    verdict = passing()
    verdict.rules.append(RuleResult("broken", "metric", Status.ERROR, Severity.BLOCK, "rule could not be computed"))
    verdict.rules.append(RuleResult("watch", "metric", Status.PASS, Severity.WARN, "accuracy 0.900 >= 0.850"))
    verdict.decision = decide(verdict.rules)
    _, suite = _suite(render_junit(verdict))
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["watch"].find("skipped") is not None
    error = cases["broken"].find("error")
    assert error is not None and error.get("message") == "rule could not be computed"
    assert suite.get("errors") == "1"


def test_junit_error_verdict_is_one_errored_case() -> None:
    _, suite = _suite(render_junit(erroring()))
    (case,) = suite.findall("testcase")
    assert (case.get("classname"), case.get("name")) == ("gate", "evaluation")
    error = case.find("error")
    assert error is not None and error.get("type") == "ModelError"
    assert error.get("message", "").startswith("model output has 4 classes")
    assert "model.sha256" not in {p.get("name") for p in suite.iter("property")}


def test_junit_survives_characters_xml_cannot_hold() -> None:
    verdict = failing()
    verdict.rules[0] = dataclasses.replace(verdict.rules[0], message='bad \x00\x1b "quoted" <tag> & done')
    _, suite = _suite(render_junit(verdict))
    assert all(c.get("name") for c in suite.findall("testcase"))


# --- html ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def failing_html() -> str:
    return render_html(failing())


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_html_is_one_self_contained_document(failing_html: str) -> None:
    page = failing_html
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<html") == 1 and page.rstrip().endswith("</html>")
    for ref in ("http://", "https://", 'src="/', "<script", "<link", "@import", "url("):
        assert ref not in page
    images = _images(page)
    assert len(images) >= 2
    assert all(img.startswith(b"\x89PNG\r\n\x1a\n") for img in images)
    assert all(b"Software" not in img for img in images)  # no version stamped into the bytes
    assert '<div class="word">FAIL</div>' in page
    assert "recall-floor" in page and "rabbit: recall 0.120 &lt; 0.800 (12/100)" in page


def test_html_is_deterministic_and_renders_the_same_from_the_verdict_json(failing_html: str) -> None:
    assert render_html(_reread(failing())) == failing_html


def test_html_pass_banner() -> None:
    page = render_html(passing())
    assert '<header class="banner pass">' in page and '<div class="word">PASS</div>' in page
    assert len(_images(page)) >= 2


def test_html_escapes_everything() -> None:
    policy = PASS_POLICY.replace("rabbit: 0.85", "'<b>rabbit</b>': 0.85")
    verdict = build(TUTORIAL, policy, classes=["cat", "$dog$", "<b>rabbit</b>"])
    verdict.rules[0] = dataclasses.replace(verdict.rules[0], message="<script>alert('x')</script> & more")
    page = render_html(verdict)
    assert "<script>" not in page and "<b>rabbit" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    assert "&lt;b&gt;rabbit&lt;/b&gt;" in page
    assert len(_images(page)) >= 2  # "$dog$" is drawn as text, not parsed as a formula


def test_html_error_verdict_shows_the_error_and_no_charts() -> None:
    page = render_html(erroring())
    assert '<header class="banner error">' in page
    assert "ModelError" in page and "see the model contract" in page
    assert "data:image" not in page and "<svg" not in page
    assert "models/broken.onnx" in page and "sha256 unknown" in page


def test_html_handles_an_unpredicted_class_and_an_empty_one() -> None:
    never_predicted = render_html(build([[50, 0, 0], [0, 50, 0], [20, 10, 0]], PASS_POLICY))
    assert "n/a" in never_predicted and len(_images(never_predicted)) >= 2
    empty_class = build([[50, 0, 0], [0, 50, 0], [0, 0, 0]], PASS_POLICY)
    assert empty_class.decision is Decision.FAIL
    page = render_html(empty_class)
    assert len(_images(page)) >= 2


def test_html_stays_small_for_a_hundred_classes() -> None:
    names = [f"class_{i:03d}" for i in range(100)]
    matrix = [[300 if i == j else (i * 7 + j * 3) % 6 for j in range(100)] for i in range(100)]
    verdict = build(
        matrix, "version: 1\nname: big\nrules:\n  - {id: r, type: per_class, metric: recall, min: 0.9}\n", names
    )
    page = render_html(verdict)
    assert len(page.encode("utf-8")) < 1_000_000
    assert len(_images(page)) >= 2
