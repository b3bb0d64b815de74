"""The bad-input corpus, slices: careless or hostile metadata tables and slice rules, each
run end to end through ``gate eval`` with the tutorial's set and model, with its exact
exit code, error type and message; ``docs/bad-input-corpus.md`` lists every case under
"Attacks: slices" (see ``doc_expectations``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.test_corpus import Inputs, baseline
from tests.test_corpus import _gate_eval as gate_eval
from tests.test_corpus_policy import PolicyCase

GOOD_META = "index,camera\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(150))
RECALL = "{id: cams, type: per_slice, slice: camera, metric: recall, min: 0.5}"


def _policy(*rules: str) -> str:
    return "version: 1\nname: slices\nrules:\n" + "".join(f"  - {r}\n" for r in rules)


def _set(
    meta: str | None, *, spec_extra: str = "metadata: meta.csv\n", rules: tuple[str, ...] = (RECALL,)
) -> Callable[[Inputs], Inputs]:
    """The tutorial set with the metadata table ``meta`` (none: no file), judged by ``rules``."""

    def breaks(inputs: Inputs) -> Inputs:
        if meta is not None:
            (inputs.root / "meta.csv").write_text(meta)
        spec = inputs.root / "pets.yaml"
        spec.write_text(f"name: pets\nsource: pets.npz\n{spec_extra}")
        inputs.dataset = spec
        return inputs.put_policy(_policy(*rules))

    return breaks


def _linked_outside(inputs: Inputs) -> Inputs:
    """A metadata table that is a link to a file outside the set's directory: read like any
    path the spec names (the spec's author chose it), its rows still checked."""
    outside = inputs.root.parent / f"{inputs.root.name}-elsewhere.csv"
    outside.write_text("index,camera\n0,a\n0,b\n")
    os.symlink(outside, inputs.root / "meta.csv")
    return _set(None)(inputs)


CASES = [
    PolicyCase(
        "slices-unknown-column",
        _set(GOOD_META, rules=(RECALL.replace("slice: camera", "slice: camra"),)),
        2,
        "ERROR",
        "rule 'cams' (per_slice): metadata column 'camra' does not exist; the set's columns: camera",
        "RequestError",
    ),
    PolicyCase(
        "slices-no-metadata-at-all",
        _set(None, spec_extra=""),
        2,
        "ERROR",
        "metadata column 'camera' does not exist; the set's columns: none (the set has no metadata)",
        "RequestError",
    ),
    PolicyCase(
        "slices-floor-written-no",
        _set(GOOD_META, rules=(RECALL.replace("min: 0.5", "min: no"),)),
        2,
        "ERROR",
        "min: Input should be a valid number, not a boolean",
        "PolicyError",
    ),
    PolicyCase(
        "slices-floor-quoted",
        _set(GOOD_META, rules=(RECALL.replace("min: 0.5", "min: '0.5'"),)),
        2,
        "ERROR",
        "a quoted number is text, write it without quotes",
        "PolicyError",
    ),
    PolicyCase(
        "slices-huge-min-support",
        _set(GOOD_META, rules=(RECALL.replace("min: 0.5", "min: 0.5, min_support: 100000000000000000000"),)),
        2,
        "ERROR",
        "min_support: Input should be less than or equal to 9007199254740992",
        "PolicyError",
    ),
    PolicyCase(
        "slices-correction-without-confidence",
        _set(GOOD_META, rules=(RECALL.replace("min: 0.5", "min: 0.5, correction: holm"),)),
        2,
        "ERROR",
        "correction holm adjusts confidence intervals: give `confidence` too",
        "PolicyError",
    ),
    PolicyCase(
        "slices-bins-on-text",
        _set(GOOD_META, rules=(RECALL.replace("min: 0.5", "min: 0.5, bins: {camera: [1, 2]}"),)),
        2,
        "ERROR",
        "rule 'cams' (per_slice): metadata column 'camera' holds 'a', which is not a number to put in a bin",
        "RequestError",
    ),
    PolicyCase(
        "slices-table-missing",
        _set(None),
        2,
        "ERROR",
        "metadata table not found: ",
        "DatasetError",
    ),
    PolicyCase(
        "slices-table-unknown-sample",
        _set(GOOD_META + "150,a\n"),
        2,
        "ERROR",
        "meta.csv, line 152: index '150' is not a sample of the set",
        "DatasetError",
    ),
    PolicyCase(
        "slices-table-key-twice",
        _set("index,camera\n3,a\n3,b\n"),
        2,
        "ERROR",
        "meta.csv, line 3: index '3' is also on line 2",
        "DatasetError",
    ),
    PolicyCase(
        "slices-table-link-outside",
        _linked_outside,
        2,
        "ERROR",
        "meta.csv, line 3: index '0' is also on line 2",
        "DatasetError",
    ),
    PolicyCase(
        "slices-table-wrong-key",
        _set("path,camera\ncat/1.png,a\n"),
        2,
        "ERROR",
        "meta.csv, line 2: no 'index' column to say which sample it is about",
        "DatasetError",
    ),
    PolicyCase(
        "slices-table-not-a-table",
        _set(None, spec_extra="metadata: pets.npz\n"),
        2,
        "ERROR",
        "unknown format '.npz'; use .csv or .jsonl",
        "DatasetError",
    ),
    PolicyCase(
        "slices-values-missing-kept",
        _set("index,camera\n" + "".join(f"{i},a\n" for i in range(75)), rules=(RECALL.replace("0.5", "0.95"),)),
        1,
        "FAIL",
        "camera=<missing>, dog: recall 0.871 (27/31) < 0.950",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_gate_eval_answers_each_slice_attack_exactly(
    case: PolicyCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = case.breaks(baseline(tmp_path))
    code, verdict = gate_eval(capsys, inputs)
    assert (code, verdict["verdict"]) == (case.code, case.verdict), verdict["error"]
    if case.verdict == "ERROR":
        assert verdict["error"]["type"] == case.error
        assert case.message in verdict["error"]["message"]
    else:
        assert verdict["error"] is None
        assert case.message in " ".join(r["message"] for r in verdict["rules"])


def test_the_unbroken_slices_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every case above breaks one thing in inputs that PASS."""
    code, verdict = gate_eval(capsys, _set(GOOD_META)(baseline(tmp_path)))
    assert (code, verdict["verdict"]) == (0, "PASS")
    assert set(verdict["metrics"]["slices"]["columns"]["camera"]) == {"a", "b"}


def doc_expectations() -> dict[str, tuple[str, ...]]:
    """Each case of this module: the fragments its row in the doc must hold."""
    return {c.id: tuple(x for x in (f"{c.code} {c.verdict}", c.error) if x) for c in CASES}
