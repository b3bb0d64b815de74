"""Slices in the reports: the weakest slices and the slice × class heatmap in text,
markdown and HTML, and one JUnit failure per failing cell, rendered from a real
evaluation of the camera set (camera b misses half its otters)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gate.evaluation import evaluate
from gate.report import render_html, render_junit, render_markdown, render_text
from gate.verdict import Verdict
from tests.test_slices import CAMERA_RECALL, DEFAULT_POLICY, _policy, camera_set


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> Verdict:
    root = tmp_path_factory.mktemp("reports")
    spec = camera_set(root)
    verdict = evaluate(root / "model.onnx", spec, _policy(root, CAMERA_RECALL), provider="cpu")
    assert verdict.decision.value == "FAIL"
    return verdict


def test_markdown_shows_the_weakest_slices_and_a_heatmap_marking_the_failed_cell(judged: Verdict) -> None:
    text = render_markdown(judged)
    assert "### Slices" in text
    assert "- camera=b: recall 0.500 (90 samples; a rule checks this column)" in text
    row_b = next(line for line in text.splitlines() if line.startswith("| b |"))
    assert row_b == "| b | 90 | 0.833 | 🟩 1.000 (20/20) | 🟩 1.000 (20/20) | 🟧 0.500 (15/30) ❌ | 🟩 1.000 (20/20) |"
    row_a = next(line for line in text.splitlines() if line.startswith("| a |"))
    assert "❌" not in row_a


def test_html_shades_each_cell_and_outlines_the_failed_one(judged: Verdict) -> None:
    page = render_html(judged)
    assert "<h2>Slices</h2>" in page and "<h3>Recall by camera</h3>" in page
    failed = [cell for cell in page.split("<td ") if "failed a slice rule" in cell]
    assert len(failed) == 1 and "hsl(60, 70%, 85%)" in failed[0] and "0.500 ✗" in failed[0]
    assert page.count("hsl(120, 70%, 85%)") == 11  # every other cell found every sample


def test_text_lists_the_weakest_slices(judged: Verdict) -> None:
    text = render_text(judged)
    assert "Weakest slices (by recall, slices of >= 30 samples)" in text
    assert "  camera=b: recall 0.500 (90 samples; a rule checks this column)" in text


def test_junit_gives_one_failure_per_failing_cell(tmp_path: Path) -> None:
    spec = camera_set(tmp_path)
    # every cell judged (20 samples or more): only camera b's otters fail
    cells = CAMERA_RECALL.replace("camera-recall", "cells").replace("min_support: 30", "min_support: 20")
    policy = _policy(tmp_path, cells, "{id: floor, type: metric, metric: accuracy, min: 0.5}")
    verdict = evaluate(tmp_path / "model.onnx", spec, policy, provider="cpu")
    root = ET.fromstring(render_junit(verdict))
    cases = {str(c.get("name")): c for c in root.iter("testcase")}
    failed = sorted(name for name, c in cases.items() if c.find("failure") is not None)
    assert failed == ["cells[camera=b, otter]"]
    assert len([n for n in cases if n.startswith("cells[")]) == 12  # 3 cameras x 4 classes
    assert cases["cells[camera=b, otter]"].find("failure").get("message") == (  # type: ignore[union-attr]
        "camera=b, otter: recall 0.500 (15/30) < 0.800"
    )


def test_a_verdict_without_metadata_has_no_slices_section(tmp_path: Path) -> None:
    from tests.test_corpus import baseline

    inputs = baseline(tmp_path)
    verdict = evaluate(inputs.model, inputs.dataset, DEFAULT_POLICY, provider="cpu")
    assert verdict.metrics is not None and "slices" not in verdict.metrics
    assert "Slices" not in render_markdown(verdict) and "Slices" not in render_html(verdict)


def test_a_failed_cell_is_marked_when_its_value_and_class_hold_commas() -> None:
    from gate.report.slices import failed_cells
    from gate.verdict import ClassCheck, Decision, RuleResult, Severity, Status

    entry = {"support": 2, "accuracy": 0.5, "balanced_accuracy": 0.5, "per_class": {}}
    metrics = {
        "per_class": {"cat, big": {}, "dog": {}},
        "slices": {"columns": {"camera": {"Canon, EOS=5": entry, "x": entry}}, "weakest": []},
    }
    failed = ClassCheck("camera=Canon, EOS=5, cat, big", Status.FAIL, 0.0, 0.5, 0, 1, "short")
    passed = ClassCheck("camera=x, dog", Status.PASS, 1.0, 0.5, 1, 1, "fine")
    rule = RuleResult(
        "r", "per_slice", Status.FAIL, Severity.BLOCK, "short", classes=(failed, passed), details={"slice": "camera"}
    )
    verdict = Verdict(decision=Decision.FAIL, metrics=metrics, rules=[rule])
    assert failed_cells(verdict) == {("camera", "Canon, EOS=5", "cat, big")}
