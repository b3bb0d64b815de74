"""The bad-input corpus, policies: policies that would let a bad model through (or block
a good one on a rounding error), each run end to end through ``gate eval`` with real
models, with its exact exit code and message; ``docs/bad-input-corpus.md`` lists every
case (see ``doc_expectations``).

Also the conventions ``docs/conventions.md`` states and that a policy author relies on:
how arg-max ties are broken, how sigmoid outputs are read, and which calls refused by
authentication reach the audit log.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from gate.cli import main
from gate.client import GateClient, GateClientError
from tests.conftest import PETS, Served
from tests.models import lookup_model, predictions_for, table_model
from tests.test_corpus import Inputs, baseline, constant_model

NFC_CAFE, NFD_CAFE = "caf\u00e9", "cafe\u0301"


def _policy(*rules: str, name: str = "attack") -> str:
    return f"version: 1\nname: {name}\nrules:\n" + "".join(f"  - {r}\n" for r in rules)


def _floor(value: str) -> str:
    """The constant model's pass, had the policy read ``value`` as a number."""
    return _policy(f"{{id: floor, type: metric, metric: balanced_accuracy, min: {value}}}")


def _constant(policy: str) -> Callable[[Inputs], Inputs]:
    """The model that answers cat for every sample, judged by ``policy``."""
    return lambda i: i.put_model(constant_model(3)).put_policy(policy)


def _counts(cm: list[list[int]], policy: str, classes: list[str] = PETS) -> Callable[[Inputs], Inputs]:
    """The lookup model on a set whose confusion matrix is ``cm``, judged by ``policy``."""

    def breaks(inputs: Inputs) -> Inputs:
        x, y = predictions_for(cm)
        inputs.dataset = inputs.root / "counts.npz"
        np.savez(inputs.dataset, x=x, y=y, classes=np.array(classes))
        return inputs.put_policy(policy)

    return breaks


VACUOUS_RULES = [
    "{id: any-accuracy, type: metric, metric: accuracy, min: 0}",
    "{id: zero-recall, type: per_class, metric: recall, min: 0}",
    "{id: zero-floors, type: per_class, metric: recall, classes: {cat: 0, dog: 0, rabbit: 0}}",
    "{id: one-sample, type: min_support, min: 1}",
    "{id: no-margin, type: majority_baseline, margin: 0}",
    "{id: huge-ratio, type: imbalance, max_ratio: 1e12, min_recall: 0.9}",
    "{id: any-confusion, type: confusion, actual: dog, predicted: cat, max_rate: 1}",
]
STRONG_WARN = "{id: watch, type: metric, metric: accuracy, min: 0.9, severity: warn}"


@dataclass(frozen=True)
class PolicyCase:
    """One policy attack through ``gate eval``: the outcome, and a fragment of the error
    message (ERROR) or of the rule messages (PASS, FAIL); formatted with ``policy``."""

    id: str
    breaks: Callable[[Inputs], Inputs]
    code: int
    verdict: str
    message: str
    error: str = ""


CASES = [
    PolicyCase(
        "policy-floor-written-no",
        _constant(_floor("no")),
        2,
        "ERROR",
        "rule 'floor' (line 4): min: Input should be a valid number, not a boolean (got 'no', which YAML reads as"
        " False)",
        "PolicyError",
    ),
    PolicyCase(
        "policy-floor-written-yes",
        _constant(_floor("yes")),
        2,
        "ERROR",
        "rule 'floor' (line 4): min: Input should be a valid number, not a boolean (got 'yes', which YAML reads as"
        " True)",
        "PolicyError",
    ),
    PolicyCase(
        "policy-floor-quoted",
        _constant(_floor("'0.9'")),
        2,
        "ERROR",
        "rule 'floor' (line 4): min: Input should be a valid number, not a string: a quoted number is text, write it"
        " without quotes (got '0.9')",
        "PolicyError",
    ),
    PolicyCase(
        "policy-version-true",
        _constant(_floor("0.9").replace("version: 1", "version: true")),
        2,
        "ERROR",
        "version: Input should be the integer 1, not a boolean (got 'true', which YAML reads as True)",
        "PolicyError",
    ),
    PolicyCase(
        "policy-version-float",
        _constant(_floor("0.9").replace("version: 1", "version: 1.0")),
        2,
        "ERROR",
        "version: Input should be the integer 1, not a number with a fraction part (got 1.0)",
        "PolicyError",
    ),
    PolicyCase(
        "policy-version-hex",
        _constant(_floor("0.9").replace("version: 1", "version: 0x1")),
        2,
        "ERROR",
        "version: Input should be the integer 1 written in decimal (got '0x1')",
        "PolicyError",
    ),
    PolicyCase(
        "policy-vacuous-block-rules",
        _constant(_policy(*VACUOUS_RULES)),
        2,
        "ERROR",
        "every block rule is vacuous (any-accuracy, zero-recall, zero-floors, one-sample, no-margin, huge-ratio,"
        " any-confusion): the policy could never FAIL a model",
        "PolicyError",
    ),
    PolicyCase(
        "policy-vacuous-beside-warn",
        _constant(_policy(VACUOUS_RULES[0], STRONG_WARN)),
        2,
        "ERROR",
        "rule 'any-accuracy' (line 4): accuracy always lies in [0, 1], so min 0 cannot be broken: no model can fail"
        " this rule",
        "PolicyError",
    ),
    PolicyCase(
        "policy-floor-equal-after-rounding",
        _counts(
            [[6, 4, 0], [2, 8, 0], [0, 0, 10]],
            _policy("{id: floor, type: metric, metric: balanced_accuracy, min: 0.8}"),
        ),
        0,
        "PASS",
        "balanced_accuracy 0.800 >= 0.800",
    ),
    PolicyCase(
        "policy-floor-just-below",
        _counts(
            [[79, 21, 0], [0, 100, 0], [0, 0, 100]],
            _policy("{id: floor, type: per_class, metric: recall, classes: {cat: 0.8}}"),
        ),
        1,
        "FAIL",
        "cat: recall 0.790 < 0.800 (79/100)",
    ),
    PolicyCase(
        "policy-class-name-nfd",
        _counts(
            [[50, 2, 3], [4, 45, 1], [2, 3, 40]],
            _policy(f"{{id: floor, type: per_class, metric: recall, classes: {{{NFD_CAFE}: 0.95}}}}"),
            ["cat", "dog", NFC_CAFE],
        ),
        1,
        "FAIL",
        f"{NFC_CAFE}: recall 0.889 < 0.950 (40/45)",
    ),
    PolicyCase(
        "policy-class-name-twice",
        _constant(
            _policy(f"{{id: floor, type: per_class, metric: recall, classes: {{{NFC_CAFE}: 0.9, {NFD_CAFE}: 0}}}}")
        ),
        2,
        "ERROR",
        f"rule 'floor' (line 4): classes: class names '{NFC_CAFE}' and '{NFD_CAFE}' differ only in Unicode"
        " normalisation (NFC vs NFD): they are one class",
        "PolicyError",
    ),
]


def _gate_eval(capsys: pytest.CaptureFixture[str], inputs: Inputs) -> tuple[int, dict[str, Any]]:
    argv = ["eval", "--format", "json", "--provider", "cpu", "--model", str(inputs.model)]
    code = main([*argv, "--dataset", str(inputs.dataset), "--policy", str(inputs.policy)])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_gate_eval_answers_each_policy_attack_exactly(
    case: PolicyCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = case.breaks(baseline(tmp_path))
    code, verdict = _gate_eval(capsys, inputs)
    assert (code, verdict["verdict"]) == (case.code, case.verdict)
    expected = case.message.format(policy=inputs.policy)
    if case.verdict == "ERROR":
        assert verdict["error"]["type"] == case.error
        assert str(inputs.policy) in verdict["error"]["message"]
        assert expected in verdict["error"]["message"]
    else:
        assert verdict["error"] is None
        assert expected in " ".join(r["message"] for r in verdict["rules"])


def test_the_vacuous_rules_pass_the_constant_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Why the vacuous policy is refused: beside a floor that the constant model meets,
    every one of its rules passes that model; a floor that can fail it stops it."""
    inputs = baseline(tmp_path).put_model(constant_model(3))
    low_floor = "{id: floor, type: metric, metric: accuracy, min: 0.01}"  # 55/150 = 0.367 meets it
    code, verdict = _gate_eval(capsys, inputs.put_policy(_policy(*VACUOUS_RULES, low_floor)))
    assert code == 0 and {r["status"] for r in verdict["rules"]} == {"pass"}
    assert _gate_eval(capsys, inputs.put_policy(_floor("0.9")))[0] == 1


def doc_expectations() -> dict[str, tuple[str, ...]]:
    """Each case of this module: the fragments its row in the doc must hold."""
    return {c.id: tuple(x for x in (f"{c.code} {c.verdict}", c.error) if x) for c in CASES}


# -- conventions (docs/conventions.md) ----------------------------------------------------------


def _scores_set(root: Path, rows: list[list[float]], labels: list[int]) -> Inputs:
    """A set whose sample i gets exactly the scores ``rows[i]`` from the model."""
    np.savez(
        root / "rows.npz",
        x=np.arange(len(rows), dtype=np.float32).reshape(-1, 1),
        y=np.array(labels),
        classes=np.array(PETS),
    )
    inputs = Inputs(root, root / "model.onnx", root / "rows.npz")
    inputs.put_policy(_policy("{id: floor, type: metric, metric: accuracy, min: 0.5}"))
    return inputs.put_model(table_model(rows))


def test_an_argmax_tie_goes_to_the_first_class_in_the_dataset_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # dog and rabbit tie on every sample; cat scores lower
    inputs = _scores_set(tmp_path, [[0.0, 5.0, 5.0]] * 6, [0, 0, 1, 1, 2, 2])
    _, verdict = _gate_eval(capsys, inputs)
    assert verdict["metrics"]["confusion_matrix"] == [[0, 2, 0], [0, 2, 0], [0, 2, 0]]


def test_scores_that_are_not_a_distribution_are_read_as_logits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # independent sigmoid outputs (a multi-label head): 0.9, 0.8, 0.7 do not add up to 1, so
    # gate takes them as logits: the confidence is softmax(0.9, 0.8, 0.7)[0] = 0.367, not 0.9
    inputs = _scores_set(tmp_path, [[0.9, 0.8, 0.7]] * 6, [0, 0, 1, 1, 2, 2])
    _, verdict = _gate_eval(capsys, inputs)
    [used] = [b for b in verdict["metrics"]["calibration"]["bins"] if b["count"]]
    expected = float(np.exp(0.9) / np.exp([0.9, 0.8, 0.7]).sum())
    assert used["count"] == 6 and used["confidence"] == pytest.approx(expected, abs=1e-6)
    # a row that is a distribution is taken as it is
    inputs = _scores_set(tmp_path, [[0.6, 0.3, 0.1]] * 6, [0, 0, 1, 1, 2, 2])
    _, verdict = _gate_eval(capsys, inputs)
    [used] = [b for b in verdict["metrics"]["calibration"]["bins"] if b["count"]]
    assert used["confidence"] == pytest.approx(0.6, abs=1e-6)


TOKEN = "convention-token-5e1f"
TOKENS = [{"name": "ci", "sha256": hashlib.sha256(TOKEN.encode()).hexdigest(), "roles": ["submit"]}]


def test_only_evaluations_past_authentication_reach_the_audit_log(serve: Callable[..., Served]) -> None:
    served = serve(tokens=TOKENS)
    with GateClient(served.address, timeout=30, token=TOKEN) as client:
        sha = client.upload_model(lookup_model(3), filename="good.onnx").sha256
        for token in (None, "not-a-token"):
            with GateClient(served.address, timeout=30, token=token) as stranger:
                with pytest.raises(GateClientError) as refused:
                    stranger.evaluate(sha, "pets", policy_name="default")
                assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED.name
        assert client.list_verdicts() == []  # refused before the method ran: not recorded
        with pytest.raises(GateClientError) as refused:
            client.evaluate(sha, "no-such-set", policy_name="default")
        assert refused.value.code == "NOT_FOUND"
        [record] = client.list_verdicts()  # an authenticated caller's refused request is recorded
        assert json.loads(record.verdict.verdict_json)["error"]["type"] == "NotFoundError"


def test_policy_validate_warns_about_every_vacuous_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(_policy(VACUOUS_RULES[0], _floor("0.9").split("  - ")[1].strip(), VACUOUS_RULES[4]))
    code = main(["policy", "validate", str(path)])
    out, err = capsys.readouterr()
    assert code == 0 and f"policy 'attack' ({path}) is valid" in out
    assert err.splitlines() == [
        "warning: rule 'any-accuracy' (line 4): accuracy always lies in [0, 1], so min 0 cannot be broken: no model"
        " can fail this rule",
        "warning: rule 'no-margin' (line 6): margin 0: a model that always answers the largest class passes it: no"
        " model can fail this rule",
    ]
    path.write_text(_policy(*VACUOUS_RULES))
    assert main(["policy", "validate", str(path)]) == 2
    assert "every block rule is vacuous" in capsys.readouterr().err
