"""Small, deterministic ONNX models built with ``onnx.helper`` for the tests and examples.

No model is downloaded: each is a handful of nodes whose output is known exactly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from gate.demo import linear_softmax_onnx

OPSET = 17
IR_VERSION = 9  # what every onnxruntime >= 1.16 reads


def _model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: Sequence[onnx.TensorProto] = (),
    classes: Sequence[str] | None = None,
    *,
    opset: int = OPSET,
) -> bytes:
    graph = helper.make_graph(nodes, "gate-test", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = IR_VERSION
    if classes is not None:
        helper.set_model_props(model, {"classes": json.dumps(list(classes))})
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _f(name: str, shape: Sequence[int | str | None]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def lookup_model(
    k: int,
    *,
    batch: int | str = "N",
    classes: Sequence[str] | None = None,
    probabilities: bool = False,
    nan_below_zero: bool = False,
) -> bytes:
    """Input x of shape (N, 1) holding a class index; output scores (N, K) peaking at x.

    ``scores[n, j] = -(x[n] - j)²`` (logits), or their softmax with ``probabilities``.
    With ``nan_below_zero``, a sample with x < 0 gets NaN scores (``0·sqrt(x + 0.5)``).
    """
    init = [numpy_helper.from_array(np.arange(k, dtype=np.float32).reshape(1, k), "ks")]
    nodes = [
        helper.make_node("Sub", ["x", "ks"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("Neg", ["d2"], ["logits"]),
    ]
    last = "logits"
    if nan_below_zero:
        init += [
            numpy_helper.from_array(np.array([0.5], dtype=np.float32), "half"),
            numpy_helper.from_array(np.array([0.0], dtype=np.float32), "zero"),
        ]
        nodes += [
            helper.make_node("Add", ["x", "half"], ["xh"]),
            helper.make_node("Sqrt", ["xh"], ["root"]),
            helper.make_node("Mul", ["root", "zero"], ["nanmask"]),
            helper.make_node("Add", [last, "nanmask"], ["masked"]),
        ]
        last = "masked"
    if probabilities:
        nodes.append(helper.make_node("Softmax", [last], ["probs"], axis=1))
        last = "probs"
    nodes.append(helper.make_node("Identity", [last], ["scores"]))
    return _model(nodes, [_f("x", [batch, 1])], [_f("scores", [batch, k])], init, classes)


def two_input_model(k: int) -> bytes:
    nodes = [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Tile", ["s", "reps"], ["scores"])]
    init = [numpy_helper.from_array(np.array([1, k], dtype=np.int64), "reps")]
    return _model(nodes, [_f("a", ["N", 1]), _f("b", ["N", 1])], [_f("scores", ["N", k])], init)


def rank3_output_model(k: int) -> bytes:
    """Scores of shape (N, K, 1): the wrong rank."""
    init = [
        numpy_helper.from_array(np.arange(k, dtype=np.float32).reshape(1, k), "ks"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axes"),
    ]
    nodes = [helper.make_node("Sub", ["x", "ks"], ["d"]), helper.make_node("Unsqueeze", ["d", "axes"], ["scores"])]
    return _model(nodes, [_f("x", ["N", 1])], [_f("scores", ["N", k, 1])], init)


def linear_softmax_model(
    weights: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32],
    *,
    input_shape: Sequence[int | str],
    classes: Sequence[str] | None = None,
) -> bytes:
    """softmax(flatten(x) @ W + b): the demo's logistic-regression graph."""
    return linear_softmax_onnx(weights, bias, input_shape=input_shape, classes=classes)


def predictions_for(
    cm: Sequence[Sequence[int]], *, seed: int = 0
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """(x, y) for :func:`lookup_model` that reproduce confusion matrix ``cm`` exactly.

    cm[i][j] samples of actual class i get x = j (the lookup model then predicts j).
    """
    ys, xs = [], []
    for i, row in enumerate(cm):
        for j, count in enumerate(row):
            ys += [i] * count
            xs += [j] * count
    order = np.random.default_rng(seed).permutation(len(ys))
    x = np.asarray(xs, dtype=np.float32).reshape(-1, 1)[order]
    y = np.asarray(ys, dtype=np.int64)[order]
    return x, y


def slow_lookup_model(k: int, *, width: int = 1024, depth: int = 16) -> bytes:
    """The lookup model behind a chain of ``depth`` identity MatMuls of ``width``².

    Same answers as :func:`lookup_model`, but each sample costs ``depth·width²``
    multiply-adds (about half a millisecond on the CPU, where the tests that need it slow
    run it: a GPU makes short work of it), and the file is over 4 MiB (one shared
    ``width × width`` weight): a model that is slow and large on purpose.
    """
    init = [
        numpy_helper.from_array(np.eye(width, dtype=np.float32), "W"),
        numpy_helper.from_array(np.ones((1, width), dtype=np.float32), "ones"),
        numpy_helper.from_array(np.arange(k, dtype=np.float32).reshape(1, k), "ks"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "start"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "end"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis"),
    ]
    nodes = [helper.make_node("Mul", ["x", "ones"], ["h0"])]  # (N, width), every column = x
    for i in range(depth):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "W"], [f"h{i + 1}"]))
    nodes += [
        helper.make_node("Slice", [f"h{depth}", "start", "end", "axis"], ["col"]),  # (N, 1) = x
        helper.make_node("Sub", ["col", "ks"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("Neg", ["d2"], ["scores"]),
    ]
    return _model(nodes, [_f("x", ["N", 1])], [_f("scores", ["N", k])], init)


def memory_hog_model(k: int, *, floats: int = 1 << 30) -> bytes:
    """The lookup model that first tiles each sample to ``floats`` values (4 GiB by
    default) and takes their maximum: same answers, an allocation no small worker has."""
    init = [
        numpy_helper.from_array(np.array([1, floats], dtype=np.int64), "reps"),
        numpy_helper.from_array(np.arange(k, dtype=np.float32).reshape(1, k), "ks"),
    ]
    nodes = [
        helper.make_node("Tile", ["x", "reps"], ["big"]),
        helper.make_node("ReduceMax", ["big"], ["m"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["m", "ks"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("Neg", ["d2"], ["scores"]),
    ]
    return _model(nodes, [_f("x", ["N", 1])], [_f("scores", ["N", k])], init)


def table_model(rows: npt.ArrayLike, *, classes: Sequence[str] | None = None) -> bytes:
    """Input x of shape (N, 1) holding a row index; output ``rows[x]`` (N, K).

    The scores are whatever ``rows`` holds (logits or probabilities). With x the sample's
    index, each sample gets exactly the scores chosen for it; with x the class the
    lookup model would predict, one-hot ``rows`` remap predictions class by class.
    """
    table = np.asarray(rows, dtype=np.float32)
    k = table.shape[1]
    init = [
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("Cast", ["x"], ["xi"], to=TensorProto.INT64),
        helper.make_node("Squeeze", ["xi", "axis1"], ["idx"]),
        helper.make_node("Gather", ["table", "idx"], ["scores"], axis=0),
    ]
    return _model(nodes, [_f("x", ["N", 1])], [_f("scores", ["N", k])], init, classes)


def one_hot_rows(predicted: Sequence[int] | npt.ArrayLike, k: int, *, logit: float = 8.0) -> npt.NDArray[np.float32]:
    """Rows of logits that make :func:`table_model` predict ``predicted[i]`` for row i."""
    p = np.asarray(predicted, dtype=np.int64)
    rows = np.zeros((len(p), k), dtype=np.float32)
    rows[np.arange(len(p)), p] = logit
    return rows


def typed_lookup_model(
    k: int,
    *,
    input_name: str = "x",
    elem_type: int = TensorProto.FLOAT,
    batch: int | str = "N",
    opset: int = OPSET,
    classes: Sequence[str] | None = None,
) -> bytes:
    """:func:`lookup_model`'s answers with its signature chosen: the input's name, the
    element type of its input, weights and scores (FLOAT16 for a half-precision
    model), a fixed or symbolic batch, and the opset it imports."""
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    init = [numpy_helper.from_array(np.arange(k, dtype=dtype).reshape(1, k), "ks")]
    nodes = [
        helper.make_node("Sub", [input_name, "ks"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("Neg", ["d2"], ["scores"]),
    ]
    inputs = [helper.make_tensor_value_info(input_name, elem_type, [batch, 1])]
    outputs = [helper.make_tensor_value_info("scores", elem_type, [batch, k])]
    return _model(nodes, inputs, outputs, init, classes, opset=opset)
