"""The label-order diagnosis: predictions that look like a permutation of the classes are
named in ``verdict.diagnostics`` (and every report), whatever the policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gate.deployment.diagnosis import label_order
from gate.evaluation import evaluate
from gate.metrics import ClassificationMetrics
from gate.report import RENDERERS
from tests.conftest import PETS, write_pets
from tests.models import lookup_model, one_hot_rows, table_model

POLICY = "version: 1\nname: p\nrules:\n  - {id: accuracy, type: metric, metric: accuracy, min: 0.5}\n"


def _metrics(cm: list[list[int]]) -> ClassificationMetrics:
    return ClassificationMetrics.from_confusion(cm, PETS)


def test_a_model_with_its_first_two_outputs_swapped_is_diagnosed(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    # the lookup model's scores remapped: what it would call cat is dog and the other way round
    (tmp_path / "swapped.onnx").write_bytes(table_model(one_hot_rows([1, 0, 2], 3)))
    verdict = evaluate(tmp_path / "swapped.onnx", write_pets(tmp_path), tmp_path / "policy.yaml")
    assert verdict.decision.value == "FAIL"
    [found] = verdict.diagnostics or []
    assert found["kind"] == "label_order"
    assert found["message"] == "predictions look permuted: cat→dog 91 %, dog→cat 90 %; check the model's class order"
    assert [(m["actual"], m["predicted"]) for m in found["mapping"]] == [("cat", "dog"), ("dog", "cat")]
    for fmt, render in RENDERERS.items():
        text = json.loads(render(verdict))["diagnostics"][0]["message"] if fmt == "json" else render(verdict)
        assert "cat→dog" in text and "dog→cat" in text, fmt


def test_a_sound_model_gets_no_diagnostics_section(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    (tmp_path / "m.onnx").write_bytes(lookup_model(3))
    verdict = evaluate(tmp_path / "m.onnx", write_pets(tmp_path), tmp_path / "policy.yaml")
    assert verdict.diagnostics is None and "diagnostics" not in verdict.to_dict()


@pytest.mark.parametrize(
    "cm",
    [
        [[50, 2, 3], [4, 45, 1], [2, 3, 40]],  # a good model
        [[5, 45, 0], [0, 50, 0], [0, 0, 50]],  # one bad class sent to dog: a weak model, not a permutation
        [[0, 50, 0], [0, 0, 50], [0, 50, 0]],  # two classes onto one: not one to one
        [[20, 20, 10], [20, 20, 10], [10, 10, 30]],  # under half on any one other class
    ],
)
def test_what_is_not_a_permutation_is_not_diagnosed(cm: list[list[int]]) -> None:
    assert label_order(_metrics(cm)) is None


def test_a_rotation_of_three_classes_is_named() -> None:
    found = label_order(_metrics([[2, 48, 0], [0, 1, 49], [47, 0, 3]]))
    assert found is not None
    assert "cat→dog 96 %, dog→rabbit 98 %, rabbit→cat 94 %" in found["message"]


def test_a_class_without_samples_may_close_the_mapping() -> None:
    # rabbit has no samples in this set: cat and dog swapped is still a swap
    assert label_order(_metrics([[1, 49, 0], [48, 2, 0], [0, 0, 0]])) is not None
