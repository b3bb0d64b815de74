"""The bad-input corpus: every way a model, dataset, policy or request can be wrong, each
with its exact outcome through the real entry points (``gate eval`` and a real server).

Each case starts from inputs that PASS (the tutorial's cat/dog/rabbit set, the lookup
model that reproduces its confusion matrix, the default policy; or an image set with a
linear model that gets every image right) and breaks one thing. The outcome is never
PASS: exit code 2 with the error type and a message naming the culprit, or the gRPC
status with its message, and the server keeps serving. ``docs/bad-input-corpus.md``
lists every case; a test below keeps it in step with this file.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from gate._proto.gate.v1 import gate_pb2 as pb
from gate._proto.gate.v1 import gate_pb2_grpc as pb_grpc
from gate.cli import main
from gate.client import GateClient, GateClientError
from gate.inference import _TENSOR_PATHS, external_tensors
from tests.conftest import PETS, ROOT, TUTORIAL, Served
from tests.models import (
    IR_VERSION,
    OPSET,
    linear_softmax_model,
    lookup_model,
    predictions_for,
    rank3_output_model,
    two_input_model,
)

DEFAULT_POLICY = ROOT / "policies" / "default.yaml"
INVALID = Path(__file__).parent / "policies" / "invalid"
DOC = ROOT / "docs" / "bad-input-corpus.md"
INVALID_PROTOBUF = "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Failed to load model because protobuf parsing failed."
NON_FINITE = "a model that emits non-finite scores cannot be judged"
SELF_CONTAINED = "gate loads self-contained models only: save it with its weights inside"


# ----------------------------------------------------------------------------- models


def _graph_model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: list[onnx.TensorProto],
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "corpus", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    return model


def _x(width: int = 1) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])


def _scores(k: int, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("scores", elem, ["N", k])


def external_data_model(location: str) -> bytes:
    """x + W, with W (1, 3) kept in an external file at ``location`` (not checked)."""
    weights = numpy_helper.from_array(np.zeros((1, 3), np.float32), "W")
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "12")):
        weights.external_data.add(key=key, value=value)
    nodes = [helper.make_node("Add", ["x", "W"], ["scores"])]
    return _graph_model(nodes, [_x()], [_scores(3)], [weights]).SerializeToString()


def constant_model(k: int) -> bytes:
    """Scores 0·x + 0 = (0, …, 0) for every sample: a tie, so arg-max answers class 0."""
    init = [numpy_helper.from_array(np.zeros((1, k), np.float32), "zeros")]
    nodes = [helper.make_node("Mul", ["x", "zeros"], ["scores"])]
    model = _graph_model(nodes, [_x()], [_scores(k)], init)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def string_output_model(k: int) -> bytes:
    """The lookup model's scores cast to strings: an output gate cannot rank."""
    init = [numpy_helper.from_array(np.arange(k, dtype=np.float32).reshape(1, k), "ks")]
    nodes = [
        helper.make_node("Sub", ["x", "ks"], ["d"]),
        helper.make_node("Cast", ["d"], ["scores"], to=TensorProto.STRING),
    ]
    model = _graph_model(nodes, [_x()], [_scores(k, TensorProto.STRING)], init)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def random_bytes(n: int = 4096) -> bytes:
    return np.random.default_rng(7).integers(0, 256, n, dtype=np.uint8).tobytes()


# --------------------------------------------------------------------------- datasets

IMAGES_PER_CLASS = 30  # the default policy's min_support


def image_set(root: Path) -> Path:
    """``root/imgs/<class>/<i>.png``: 2×2 greyscale images, class c a shade near c·127.5
    (cat dark, dog grey, rabbit light)."""
    for c, name in enumerate(PETS):
        (root / "imgs" / name).mkdir(parents=True, exist_ok=True)
        for i in range(IMAGES_PER_CLASS):
            shade = (0, 113, 226)[c] + i
            Image.fromarray(np.full((2, 2), shade, np.uint8), mode="L").save(root / "imgs" / name / f"{i}.png")
    return root / "imgs"


def image_model() -> bytes:
    """Linear scores over the 4 pixels (0…1): cat 1 − s, dog 0.5, rabbit s − 3, for s the
    pixel sum; right for every image of :func:`image_set`."""
    weights = np.repeat(np.array([[-1.0, 0.0, 1.0]], np.float32), 4, axis=0)
    return linear_softmax_model(weights, np.array([1.0, 0.5, -3.0], np.float32), input_shape=["N", 1, 2, 2])


def image_spec(root: Path, source: str, name: str = "imgs") -> Path:
    spec = root / f"{name}.yaml"
    spec.write_text(f"name: {name}\nsource: {source}\nclasses: [cat, dog, rabbit]\npreprocess: {{channels: L}}\n")
    return spec


def manifest(root: Path, rows: list[tuple[str, str]], name: str = "list") -> Path:
    """``root/imgs/<name>.csv`` with the given (path, label) rows, and its spec."""
    image_set(root)
    text = "path,label\n" + "".join(f"{p},{label}\n" for p, label in rows)
    (root / "imgs" / f"{name}.csv").write_text(text)
    return image_spec(root, f"imgs/{name}.csv", name)


def good_rows() -> list[tuple[str, str]]:
    return [(f"{c}/{i}.png", c) for c in PETS for i in range(IMAGES_PER_CLASS)]


# ------------------------------------------------------------------- `gate eval` cases


@dataclass
class Inputs:
    """What ``gate eval`` gets; a case starts from the passing tutorial set and breaks one thing."""

    root: Path
    model: Path
    dataset: Path
    policy: Path = DEFAULT_POLICY
    cwd: Path | None = None  # run from this directory

    def put_model(self, data: bytes, name: str = "model.onnx") -> Inputs:
        self.model = self.root / name
        self.model.write_bytes(data)
        return self

    def put_npz(self, **arrays: Any) -> Inputs:
        raw = dict(np.load(self.dataset))
        raw.update(arrays)
        for key in [k for k, v in raw.items() if v is None]:
            del raw[key]
        self.dataset = self.root / "changed.npz"
        np.savez(self.dataset, **raw)
        return self

    def put_policy(self, text: str | bytes, name: str = "policy.yaml") -> Inputs:
        self.policy = self.root / name
        if isinstance(text, bytes):
            self.policy.write_bytes(text)
        else:
            self.policy.write_text(text)
        return self

    def images(self, spec: Path) -> Inputs:
        self.dataset = spec
        return self.put_model(image_model())


def baseline(root: Path) -> Inputs:
    x, y = predictions_for(TUTORIAL)
    np.savez(root / "pets.npz", x=x, y=y, classes=np.array(PETS))
    (root / "model.onnx").write_bytes(lookup_model(3))
    return Inputs(root, root / "model.onnx", root / "pets.npz")


def _with_x(inputs: Inputs, index: int, value: float) -> Inputs:
    x = np.load(inputs.dataset)["x"].copy()
    x[index, 0] = value
    return inputs.put_npz(x=x)


def _saved_with_external_weights(inputs: Inputs) -> Inputs:
    """The lookup model saved the usual way for big models: weights in ``weights.bin`` beside it."""
    model = onnx.load_from_string(lookup_model(3))
    (inputs.root / "split").mkdir()
    inputs.model = inputs.root / "split" / "model.onnx"
    onnx.save_model(model, inputs.model, save_as_external_data=True, location="weights.bin", size_threshold=0)
    assert (inputs.root / "split" / "weights.bin").is_file()
    return inputs


RULE = "{id: r, type: metric, metric: accuracy, min: 0.9}"


def _policy_rule(rule: str, name: str = "p") -> str:
    return f"version: 1\nname: {name}\nrules:\n  - {rule}\n"


BILLION_LAUGHS = (
    "version: 1\nname: lol\n"
    'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    + "".join(f"{c}: &{c} [{', '.join([f'*{chr(ord(c) - 1)}'] * 4)}]\n" for c in "bcdefghi")
    + "rules:\n  - {id: r, type: metric, metric: accuracy, min: 0.9}\n"
)


def _mkdir_empty_class(inputs: Inputs) -> Inputs:
    image_set(inputs.root)
    for png in (inputs.root / "imgs" / "dog").iterdir():
        png.unlink()
    return inputs.images(image_spec(inputs.root, "imgs"))


def _corrupt_image(inputs: Inputs, data: Callable[[bytes], bytes]) -> Inputs:
    folder = image_set(inputs.root)
    png = folder / "dog" / "7.png"
    png.write_bytes(data(png.read_bytes()))
    return inputs.images(image_spec(inputs.root, "imgs"))


def _symlink_escape(inputs: Inputs) -> Inputs:
    outside = inputs.root / "outside"
    outside.mkdir()
    Image.fromarray(np.zeros((2, 2), np.uint8), mode="L").save(outside / "x.png")
    spec = manifest(inputs.root, [*good_rows(), ("link.png", "cat")])
    (inputs.root / "imgs" / "link.png").symlink_to(outside / "x.png")
    return inputs.images(spec)


def two_wide_model() -> bytes:
    """Expects samples of shape (2,); the tutorial set's are (1,)."""
    init = [numpy_helper.from_array(np.zeros((2, 3), np.float32), "W")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["scores"])]
    model = _graph_model(nodes, [_x(2)], [_scores(3)], init)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def doubled_rows_model() -> bytes:
    """The lookup model's scores twice over, stacked: (2N, 3) for N samples."""
    model = onnx.load_from_string(lookup_model(3))
    model.graph.node[-1].output[0] = "once"
    model.graph.node.append(helper.make_node("Concat", ["once", "once"], ["scores"], axis=0))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _spec_alias_bomb(inputs: Inputs) -> Inputs:
    """A dataset spec whose classes are nine lists of nine lists … (9¹³ strings if expanded)."""
    lines = ["name: bomb", "source: pets.npz", 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for c in "bcdefghijkl":
        prev = chr(ord(c) - 1)
        lines.append(f"{c}: &{c} [{', '.join([f'*{prev}'] * 9)}]")
    lines.append("classes: *l")
    inputs.dataset = inputs.root / "bomb.yaml"
    inputs.dataset.write_text("\n".join(lines) + "\n")
    return inputs


def _external_weights_in_cwd(inputs: Inputs) -> Inputs:
    _saved_with_external_weights(inputs).cwd = inputs.root / "split"
    return inputs


@dataclass(frozen=True)
class EvalCase:
    """One `gate eval` case: how to break the inputs and what `gate eval` must answer.

    ``message`` is a fragment of ``error.message`` (formatted with ``model``, ``dataset``,
    ``policy`` and ``root``)."""

    id: str
    breaks: Callable[[Inputs], Inputs]
    error: str
    message: str
    code: int = 2
    verdict: str = "ERROR"
    #: a known gap: the case does not fail closed yet (the test is a strict xfail until fixed)
    gap: str = ""


EVAL_CASES = [
    # -- models ------------------------------------------------------------------------
    EvalCase(
        "model-truncated",
        lambda i: i.put_model(lookup_model(3)[:100]),
        "ModelError",
        "cannot load model {model}: " + INVALID_PROTOBUF,
    ),
    EvalCase(
        "model-random-bytes",
        lambda i: i.put_model(random_bytes()),
        "ModelError",
        "cannot load model {model}: " + INVALID_PROTOBUF,
    ),
    EvalCase(
        "model-empty-file", lambda i: i.put_model(b""), "ModelError", "cannot load model {model}: the file is empty"
    ),
    EvalCase(
        "model-external-data",
        _saved_with_external_weights,
        "ModelError",
        "model {model} keeps tensor 'ks' in an external file 'weights.bin'; " + SELF_CONTAINED,
    ),
    EvalCase(
        # run from the model's directory, where ONNX Runtime would find weights.bin by itself
        "model-external-data-in-cwd",
        _external_weights_in_cwd,
        "ModelError",
        "model {model} keeps tensor 'ks' in an external file 'weights.bin'; " + SELF_CONTAINED,
    ),
    EvalCase(
        "model-external-data-escapes",
        lambda i: i.put_model(external_data_model("../../etc/passwd")),
        "ModelError",
        "model {model} keeps tensor 'W' in an external file '../../etc/passwd' outside the model's directory;"
        " external data paths that leave the model's directory are refused, and " + SELF_CONTAINED,
    ),
    EvalCase(
        "model-external-data-absolute",
        lambda i: i.put_model(external_data_model("/etc/passwd")),
        "ModelError",
        "model {model} keeps tensor 'W' in an external file at the absolute path '/etc/passwd';"
        " absolute external data paths are refused, and " + SELF_CONTAINED,
    ),
    EvalCase(
        "model-external-data-memory-address",
        lambda i: i.put_model(external_data_model("*/_ORT_MEM_ADDR_/*")),
        "ModelError",
        "model {model} keeps tensor 'W' in an external file '*/_ORT_MEM_ADDR_/*'; " + SELF_CONTAINED,
    ),
    EvalCase(
        "model-two-inputs",
        lambda i: i.put_model(two_input_model(3)),
        "ModelError",
        "model {model} has 2 inputs ('a', 'b'); gate needs exactly one image input",
    ),
    EvalCase(
        "model-output-rank-3",
        lambda i: i.put_model(rank3_output_model(3)),
        "ModelError",
        "model {model} output 'scores' has rank 3 (shape ['N', 3, 1]); gate needs (N, K) scores",
    ),
    EvalCase(
        "model-k-mismatch",
        lambda i: i.put_model(lookup_model(4)),
        "ModelError",
        "model {model} outputs 4 classes; the dataset has 3 (cat, dog, rabbit)",
    ),
    EvalCase(
        "model-nan-output",
        lambda i: _with_x(i, 3, -1.0).put_model(lookup_model(3, nan_below_zero=True)),
        "ModelError",
        "model {model} output holds NaN for sample x[3] (index 3); " + NON_FINITE,
    ),
    EvalCase(
        # -(1e30 - j)² overflows float32: every score of sample 5 is -inf
        "model-inf-output",
        lambda i: _with_x(i, 5, 1e30),
        "ModelError",
        "model {model} output holds Inf for sample x[5] (index 5); " + NON_FINITE,
    ),
    EvalCase(
        "model-constant-output",
        lambda i: i.put_model(constant_model(3)),
        "",
        "",
        code=1,
        verdict="FAIL",
    ),
    EvalCase(
        "model-metadata-classes-differ",
        lambda i: i.put_model(lookup_model(3, classes=["dog", "cat", "rabbit"])),
        "ModelError",
        "model {model} metadata classes ['dog', 'cat', 'rabbit'] differ from the dataset's classes"
        " ['cat', 'dog', 'rabbit'] (same names in the same order are required)",
    ),
    EvalCase(
        "model-string-output",
        lambda i: i.put_model(string_output_model(3)),
        "ModelError",
        "model {model} output has non-numeric type object",
    ),
    EvalCase(
        "model-input-shape-mismatch",
        lambda i: i.put_model(two_wide_model()),
        "ModelError",
        "model {model} input 'x' expects shape ['N', 2]; the dataset's samples have shape [1] (adjust the dataset"
        " spec's preprocess: resize, crop, channels, layout)",
    ),
    EvalCase(
        "model-output-extra-rows",
        lambda i: i.put_model(doubled_rows_model()),
        "ModelError",
        "model {model} returned 300 rows for the 150 samples 0..149 it was given; gate needs one row of scores per"
        " sample",
    ),
    # -- datasets ----------------------------------------------------------------------
    EvalCase(
        "dataset-unreadable-image",
        lambda i: _corrupt_image(i, lambda _: b"\x89PNG\r\n\x1a\n not a picture"),
        "DatasetError",
        "cannot read image dog/7.png: not an image in a format Pillow can read",
    ),
    EvalCase(
        "dataset-truncated-image",
        lambda i: _corrupt_image(i, lambda png: png[: len(png) // 2]),
        "DatasetError",
        "cannot read image dog/7.png: not an image in a format Pillow can read",
    ),
    EvalCase(
        "dataset-manifest-unknown-label",
        lambda i: i.images(manifest(i.root, [*good_rows()[:-1], ("rabbit/29.png", "hamster")])),
        "DatasetError",
        "manifest {root}/imgs/list.csv, line 91: label 'hamster' is not one of the classes ['cat', 'dog', 'rabbit']",
    ),
    EvalCase(
        "dataset-empty-class-folder",
        _mkdir_empty_class,
        "DatasetError",
        "{root}/imgs: class folder 'dog' has no images",
    ),
    EvalCase(
        "dataset-manifest-duplicate",
        lambda i: i.images(manifest(i.root, [*good_rows(), ("dog/./3.png", "dog")])),
        "DatasetError",
        "manifest {root}/imgs/list.csv, line 92: path 'dog/./3.png' is a duplicate of line 35 ('dog/3.png');"
        " lines 35 and 92 name the same file",
    ),
    EvalCase(
        "dataset-manifest-parent-path",
        lambda i: i.images(manifest(i.root, [*good_rows(), ("../x.png", "cat")])),
        "DatasetError",
        "manifest {root}/imgs/list.csv, line 92: path '../x.png' resolves to {root}/x.png,"
        " outside the manifest's directory {root}/imgs",
    ),
    EvalCase(
        "dataset-manifest-absolute-path",
        lambda i: i.images(manifest(i.root, [*good_rows(), ("/etc/passwd", "cat")])),
        "DatasetError",
        "manifest {root}/imgs/list.csv, line 92: path '/etc/passwd' is absolute;"
        " paths must be relative to the manifest's directory",
    ),
    EvalCase(
        "dataset-manifest-symlink-escape",
        _symlink_escape,
        "DatasetError",
        "manifest {root}/imgs/list.csv, line 92: path 'link.png' resolves to {root}/outside/x.png,"
        " outside the manifest's directory {root}/imgs",
    ),
    EvalCase(
        "dataset-manifest-empty",
        lambda i: i.images(manifest(i.root, [])),
        "DatasetError",
        "manifest {root}/imgs/list.csv has no samples",
    ),
    EvalCase(
        "dataset-spec-alias-bomb",
        _spec_alias_bomb,
        "DatasetError",
        "invalid dataset spec {dataset} (21 problem(s)):\n  - classes.0: Input should be a valid string",
    ),
    EvalCase(
        "dataset-npz-without-y",
        lambda i: i.put_npz(y=None),
        "DatasetError",
        "{dataset} lacks array(s) ['y']; an .npz dataset needs 'x' (samples) and 'y' (labels), found ['classes', 'x']",
    ),
    EvalCase(
        "dataset-npz-nan",
        lambda i: _with_x(i, 4, float("nan")),
        "DatasetError",
        "{dataset}: sample x[4] contains NaN or infinite values",
    ),
    # -- policies ----------------------------------------------------------------------
    EvalCase(
        "policy-billion-laughs",
        lambda i: i.put_policy(BILLION_LAUGHS),
        "PolicyError",
        "invalid policy {policy}: YAML error at line 3, column 4: YAML anchors are not allowed in a policy",
    ),
    EvalCase(
        "policy-oversized",
        lambda i: i.put_policy(_policy_rule(RULE) + "#" * (1 << 20)),
        "PolicyError",
        "invalid policy {policy}: 1048656 bytes exceeds the 1048576-byte limit",
    ),
    EvalCase(
        "policy-wrong-type",
        lambda i: i.put_policy(_policy_rule("{id: floor, type: metric, metric: accuracy, min: high}")),
        "PolicyError",
        "rule 'floor' (line 4): min: Input should be a valid number, unable to parse string as a number (got 'high')",
    ),
    EvalCase(
        "policy-duplicate-ids",
        lambda i: i.put_policy((INVALID / "duplicate-ids.yaml").read_text()),
        "PolicyError",
        "rule 'floor' (line 5): duplicate rule id (also rule #1)",
    ),
    EvalCase(
        "policy-unknown-class",
        lambda i: i.put_policy((INVALID / "unknown-class.yaml").read_text()),
        "PolicyError",
        "policy 'unknown-class' ({policy}) does not fit the dataset:\n  - rule 'recall-floors' (line 4): unknown"
        " class 'rabit' (did you mean 'rabbit'?); the dataset's classes are cat, dog, rabbit",
    ),
    EvalCase(
        "policy-threshold-out-of-range",
        lambda i: i.put_policy((INVALID / "threshold-out-of-range.yaml").read_text()),
        "PolicyError",
        "rule 'recall-floors' (line 4): min 80 is outside the metric's range [0, 1]",
    ),
    EvalCase(
        "policy-empty-file",
        lambda i: i.put_policy(""),
        "PolicyError",
        "invalid policy {policy}: expected a mapping with version, name and rules; got NoneType",
    ),
    EvalCase(
        "policy-yaml-list",
        lambda i: i.put_policy("- {id: r, type: metric, metric: accuracy, min: 0.9}\n"),
        "PolicyError",
        "invalid policy {policy}: expected a mapping with version, name and rules; got list",
    ),
    EvalCase(
        "policy-tabs",
        lambda i: i.put_policy(f"version: 1\nname: tabs\nrules:\n\t- {RULE}\n"),
        "PolicyError",
        "invalid policy {policy}: YAML error at line 4, column 1: found character '\\t' that cannot start any token",
    ),
    EvalCase(
        "policy-all-warn",
        lambda i: i.put_policy(
            _policy_rule("{id: floor, type: metric, metric: accuracy, min: 0.9, severity: warn}", "all-warn")
        ),
        "PolicyError",
        "invalid policy {policy}:\n  - every rule has severity warn: the policy could never FAIL a model",
    ),
]


def _gate_eval(capsys: pytest.CaptureFixture[str], inputs: Inputs) -> tuple[int, dict[str, Any]]:
    code = main(
        [
            "eval",
            "--format",
            "json",
            "--provider",
            "cpu",
            "--model",
            str(inputs.model),
            "--dataset",
            str(inputs.dataset),
            "--policy",
            str(inputs.policy),
        ]
    )
    out = capsys.readouterr().out
    return code, json.loads(out)  # stdout is exactly one JSON document


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.gap)] if c.gap else [])
        for c in EVAL_CASES
    ],
)
def test_gate_eval_answers_each_bad_input_exactly(
    case: EvalCase, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = case.breaks(baseline(tmp_path))
    if inputs.cwd is not None:
        monkeypatch.chdir(inputs.cwd)
    code, verdict = _gate_eval(capsys, inputs)
    assert (code, verdict["verdict"]) == (case.code, case.verdict)
    if case.verdict == "ERROR":
        assert verdict["error"]["type"] == case.error
        paths = {"model": inputs.model, "dataset": inputs.dataset, "policy": inputs.policy, "root": tmp_path}
        assert case.message.format(**paths) in verdict["error"]["message"]
    else:
        assert verdict["error"] is None


def test_the_unbroken_inputs_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every case above breaks one thing in inputs that PASS."""
    assert _gate_eval(capsys, baseline(tmp_path))[0] == 0
    images = tmp_path / "images"
    images.mkdir()
    image_set(images)
    code, verdict = _gate_eval(capsys, baseline(images).images(image_spec(images, "imgs")))
    assert code == 0 and verdict["metrics"]["accuracy"] == 1.0
    manifest_set = tmp_path / "manifest"
    manifest_set.mkdir()
    code, verdict = _gate_eval(capsys, baseline(manifest_set).images(manifest(manifest_set, good_rows())))
    assert code == 0 and verdict["dataset"]["samples"] == 3 * IMAGES_PER_CLASS


def test_a_constant_model_fails_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Scoring every sample the same is no error: the model answers cat for everything,
    and the default policy blocks it naming the classes it never finds."""
    code, verdict = _gate_eval(capsys, baseline(tmp_path).put_model(constant_model(3)))
    assert code == 1 and verdict["verdict"] == "FAIL" and verdict["error"] is None
    assert verdict["metrics"]["confusion_matrix"] == [[55, 0, 0], [50, 0, 0], [45, 0, 0]]
    rules = {r["id"]: r for r in verdict["rules"]}
    assert rules["recall-floor"]["status"] == "fail"
    assert "dog: recall 0.000 < 0.800 (0/50)" in rules["recall-floor"]["message"]
    assert "rabbit: recall 0.000 < 0.800 (0/45)" in rules["recall-floor"]["message"]
    assert rules["beats-majority"]["status"] == "fail"


# ---------------------------------------------------------------- external data, unit


def test_external_data_scan_follows_onnx_field_numbers() -> None:
    """The wire-format scan's field numbers are onnx's own."""
    messages: dict[str, Any] = {
        "model": onnx.ModelProto,
        "training": onnx.TrainingInfoProto,
        "function": onnx.FunctionProto,
        "graph": onnx.GraphProto,
        "node": onnx.NodeProto,
        "attribute": onnx.AttributeProto,
        "sparse": onnx.SparseTensorProto,
    }
    kinds = {
        "GraphProto": "graph",
        "NodeProto": "node",
        "AttributeProto": "attribute",
        "TensorProto": "tensor",
        "SparseTensorProto": "sparse",
        "TrainingInfoProto": "training",
        "FunctionProto": "function",
    }
    for kind, message in messages.items():
        expected = {
            f.number: kinds[f.message_type.name]
            for f in message.DESCRIPTOR.fields
            if f.message_type is not None and f.message_type.name in kinds
        }
        assert _TENSOR_PATHS[kind] == expected, kind
    tensor = {f.name: f.number for f in onnx.TensorProto.DESCRIPTOR.fields}
    assert (tensor["name"], tensor["external_data"], tensor["data_location"]) == (8, 13, 14)
    assert onnx.TensorProto.EXTERNAL == 1


def test_external_data_is_found_wherever_a_tensor_can_be(tmp_path: Path) -> None:
    assert external_tensors(lookup_model(3)) == []
    assert external_tensors(b"location" + random_bytes()) == []  # garbage: left to ONNX Runtime
    # a Constant node's tensor attribute, inside the `then` branch of an If
    inner = numpy_helper.from_array(np.zeros((1, 3), np.float32), "C")
    inner.ClearField("raw_data")
    inner.data_location = TensorProto.EXTERNAL
    inner.external_data.add(key="location", value="deep.bin")
    out = helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 3])
    branch = helper.make_graph([helper.make_node("Constant", [], ["c"], value=inner)], "then", [], [out])
    cond = numpy_helper.from_array(np.array(True), "cond")
    node = helper.make_node("If", ["cond"], ["scores"], then_branch=branch, else_branch=branch)
    model = _graph_model([node], [_x()], [_scores(3)], [cond]).SerializeToString()
    assert external_tensors(model) == [("C", "deep.bin"), ("C", "deep.bin")]


# -------------------------------------------------------------------- request cases


@dataclass
class Session:
    """A server, a client of it, the raw stub, and a model it holds."""

    served: Served
    client: GateClient
    stub: pb_grpc.GateServiceStub
    sha: str

    def evaluate(self, **fields: Any) -> None:
        request = pb.EvaluateRequest(**fields)
        try:
            list(self.stub.Evaluate(request, timeout=60))
        except grpc.RpcError as e:
            raise GateClientError(e.code().name, e.details() or "") from e


@dataclass(frozen=True)
class RequestCase:
    """One bad request: what to send, the status and a fragment of its details, and
    how many evaluations it records (all of them ERROR)."""

    id: str
    send: Callable[[Session], object]
    status: str
    message: str
    recorded: int = 1
    error: str = ""  # the recorded verdict's error type


def _upload_mismatched(s: Session) -> object:
    data = lookup_model(2)
    try:
        return s.stub.UploadModel(iter([pb.ModelChunk(sha256="0" * 64, total_size=len(data), data=data)]))
    except grpc.RpcError as e:
        raise GateClientError(e.code().name, e.details() or "") from e


def _evaluate_uploaded(s: Session, data: bytes, name: str) -> object:
    sha = s.client.upload_model(data, filename=name).sha256
    return s.client.evaluate(sha, "pets", policy_name="default", model_name=name)


REQUEST_CASES = [
    RequestCase(
        "request-no-dataset",
        lambda s: s.evaluate(model_sha256=s.sha, policy_name="default"),
        "NOT_FOUND",
        "unknown dataset ''; this server has: pets, pets-huge, pets-large",
        error="NotFoundError",
    ),
    RequestCase(
        "request-no-policy",
        lambda s: s.evaluate(model_sha256=s.sha, dataset="pets"),
        "INVALID_ARGUMENT",
        "the request names no policy: set policy_name or policy_yaml",
        error="RequestError",
    ),
    RequestCase(
        "request-no-model-sha",
        lambda s: s.evaluate(dataset="pets", policy_name="default"),
        "INVALID_ARGUMENT",
        "model_sha256='' is not valid; it should be 64 lowercase hex digits",
        error="RequestError",
    ),
    RequestCase(
        "request-oversized-upload",
        lambda s: s.client.upload_model(random_bytes(3000), filename="big.onnx"),
        "RESOURCE_EXHAUSTED",
        "exceeds this server's limit of 2048 bytes",
        recorded=0,
    ),
    RequestCase(
        "request-hash-mismatch",
        _upload_mismatched,
        "INVALID_ARGUMENT",
        "sha256 mismatch: the upload hashes to",
        recorded=0,
    ),
    RequestCase(
        "request-unknown-model",
        lambda s: s.client.evaluate("f" * 64, "pets", policy_name="default"),
        "NOT_FOUND",
        f"no model with sha256 {'f' * 64} on this server; upload it first",
        error="NotFoundError",
    ),
    RequestCase(
        "request-unknown-dataset",
        lambda s: s.client.evaluate(s.sha, "no-such-set", policy_name="default"),
        "NOT_FOUND",
        "unknown dataset 'no-such-set'; this server has: pets, pets-huge, pets-large",
        error="NotFoundError",
    ),
    RequestCase(
        "request-unknown-policy",
        lambda s: s.client.evaluate(s.sha, "pets", policy_name="no-such-policy"),
        "NOT_FOUND",
        "unknown policy 'no-such-policy'",
        error="NotFoundError",
    ),
    RequestCase(
        "request-unknown-evaluation-id",
        lambda s: s.client.get_verdict("0" * 32),
        "NOT_FOUND",
        f"no evaluation with id '{'0' * 32}'",
        recorded=0,
    ),
    RequestCase(
        "request-invalid-inline-policy",
        lambda s: s.client.evaluate(s.sha, "pets", policy_yaml=BILLION_LAUGHS),
        "INVALID_ARGUMENT",
        "invalid policy <inline>: YAML error at line 3, column 4: YAML anchors are not allowed in a policy",
        error="PolicyError",
    ),
    RequestCase(
        "request-oversized-inline-policy",
        lambda s: s.client.evaluate(s.sha, "pets", policy_yaml=_policy_rule(RULE) + "#" * (1 << 20)),
        "INVALID_ARGUMENT",
        "invalid policy <inline>: 1048656 bytes exceeds the 1048576-byte limit",
        error="PolicyError",
    ),
    RequestCase(
        "request-external-data-model",
        lambda s: _evaluate_uploaded(s, external_data_model("../../etc/passwd"), "split.onnx"),
        "INVALID_ARGUMENT",
        "model split.onnx keeps tensor 'W' in an external file '../../etc/passwd' outside the model's directory",
        error="ModelError",
    ),
    RequestCase(
        "request-truncated-model",
        lambda s: _evaluate_uploaded(s, lookup_model(3)[:100], "cut.onnx"),
        "INVALID_ARGUMENT",
        "cannot load model cut.onnx: " + INVALID_PROTOBUF,
        error="ModelError",
    ),
]


@pytest.mark.parametrize("case", REQUEST_CASES, ids=[c.id for c in REQUEST_CASES])
def test_the_server_answers_each_bad_request_exactly(case: RequestCase, serve: Callable[..., Served]) -> None:
    served = serve(max_model_bytes=2048)
    with served.client() as client, grpc.insecure_channel(served.address) as channel:
        sha = client.upload_model(lookup_model(3), filename="good.onnx").sha256
        session = Session(served, client, pb_grpc.GateServiceStub(channel), sha)  # type: ignore[no-untyped-call]
        with pytest.raises(GateClientError) as caught:
            case.send(session)
        assert caught.value.code == case.status
        assert case.message in caught.value.details
        # the server keeps serving, records the refusal as ERROR, and nothing passed
        assert client.health() == "SERVING"
        records = client.list_verdicts()
        assert len(records) == case.recorded
        assert len(client.list_verdicts(decision="ERROR")) == case.recorded
        for record in records:
            document = json.loads(record.verdict.verdict_json)
            assert document["verdict"] == "ERROR" and document["error"]["type"] == case.error
            assert case.message in document["error"]["message"]
        assert client.evaluate(sha, "pets", policy_name="default").verdict.decision == pb.PASS  # still judges


def test_a_constant_model_fails_through_the_server(serve: Callable[..., Served]) -> None:
    with serve().client() as client:
        sha = client.upload_model(constant_model(3), filename="constant.onnx").sha256
        evaluation = client.evaluate(sha, "pets", policy_name="default")
    assert evaluation.verdict.decision == pb.FAIL and evaluation.document["error"] is None


# ----------------------------------------------------------------------------- the doc


def _doc_rows() -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"\| `([a-z0-9-]+)` \|", line)
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} is listed twice"
            rows[match.group(1)] = line
    return rows


def doc_expectations() -> dict[str, tuple[str, ...]]:
    """Each case of this module: the fragments its row in the doc must hold."""
    expected: dict[str, tuple[str, ...]] = {}
    for case in EVAL_CASES:
        outcome = f"{case.code} {case.verdict}"
        expected[case.id] = (outcome, case.error) if case.error else (outcome,)
    for request in REQUEST_CASES:
        expected[request.id] = (f"`{request.status}`", request.error) if request.error else (f"`{request.status}`",)
    return expected


def _every_corpus_case() -> dict[str, tuple[str, ...]]:
    """The cases of this module and of every ``tests/test_corpus_*.py`` (each defines
    ``doc_expectations()``), ids unique across them."""
    expected = doc_expectations()
    for path in sorted(Path(__file__).parent.glob("test_corpus_*.py")):
        module = importlib.import_module(f"tests.{path.stem}")
        for case_id, fragments in module.doc_expectations().items():
            assert case_id not in expected, f"{case_id} is a case twice ({path.name})"
            expected[case_id] = fragments
    return expected


def test_the_doc_lists_every_case_with_its_outcome() -> None:
    rows = _doc_rows()
    expected = _every_corpus_case()
    assert sorted(rows) == sorted(expected), "docs/bad-input-corpus.md and the corpus list different cases"
    for case_id, fragments in expected.items():
        for fragment in fragments:
            assert fragment in rows[case_id], f"{case_id}: the doc's row lacks {fragment!r}"


def test_ids_are_unique() -> None:
    ids = [c.id for c in EVAL_CASES] + [c.id for c in REQUEST_CASES]
    assert len(ids) == len(set(ids))
