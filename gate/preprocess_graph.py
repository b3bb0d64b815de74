"""Normalisation as ONNX operators in front of a model, so that 8-bit pixels go to the device.

An image set's tensor cache holds 8-bit pixels; on the host they become float32 model
input (:func:`gate.datasets.images.normalise`: channel order, layout, ``/ scale``,
``- mean``, ``/ std``). On a GPU that host work, and copying four bytes a value instead
of one, is what limits gate, not the model. :func:`with_normalisation` returns the
model with the same steps as graph operators in front of its input: the session is fed
(N, H, W, C) uint8 pixels and normalises them where it runs. The operators are the
host's, in the host's order, in float32 (a cast, one division, one subtraction, one
division per value), so the model's input is the same to the bit (tests/test_preprocess_graph.py
checks it on the CPU provider).

Building it uses the ``onnx`` package (a dependency of gate, imported here on first use);
for a model whose input is not float32 or whose opset predates these operators there is
no composed model and normalisation stays on the host.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gate.datasets.spec import Preprocess

#: The composed model's input: a batch of 8-bit pixels, (N, H, W, C).
PIXELS_INPUT = "gate_pixels"
_PREFIX = "gate_normalise_"
_MIN_OPSET = 13  # Cast, Transpose, Gather, Div and Sub as used here


class NotComposable(Exception):
    """The model cannot take the normalisation in its graph; the reason says why."""


def variant_key(preprocess: Preprocess) -> str:
    """What distinguishes a composed session from the model's own in the session cache."""
    text = json.dumps({"normalise": preprocess.identity()}, sort_keys=True)
    return "pixels:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def with_normalisation(model: bytes, preprocess: Preprocess, input_name: str) -> bytes:
    """``model`` (serialized ONNX) fed 8-bit pixels: the normalisation steps of
    ``preprocess`` become operators that produce its float32 input ``input_name``.

    Raises :class:`NotComposable` when it cannot (another input type, an opset older
    than 13)."""
    import onnx  # on first use: an evaluation that normalises on the host never loads it

    proto = onnx.load_model_from_string(model)
    graph = proto.graph
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < _MIN_OPSET:
        raise NotComposable(f"the model's opset {opset} predates {_MIN_OPSET}")
    position = next((i for i, v in enumerate(graph.input) if v.name == input_name), None)
    if position is None:
        raise NotComposable(f"the model has no graph input '{input_name}'")
    declared = graph.input[position]
    if declared.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise NotComposable(f"input '{input_name}' is not float32")
    dims = declared.type.tensor_type.shape.dim
    batch: int | str = dims[0].dim_value if dims and dims[0].HasField("dim_value") else "N"
    nodes, constants, pixels = _steps(preprocess, input_name, batch)
    graph.input.remove(declared)
    graph.input.insert(position, pixels)
    graph.initializer.extend(constants)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *existing])
    return bytes(proto.SerializeToString())


def _steps(preprocess: Preprocess, output: str, batch: int | str) -> tuple[list[Any], list[Any], Any]:
    """The nodes, their constants and the pixels input (``batch`` samples: the model's own
    fixed batch, or any) that end in ``output``; the host's order: channel order, layout,
    widen to float32, / scale, - mean, / std."""
    from onnx import TensorProto, helper

    channels = preprocess.num_channels
    nchw = preprocess.layout == "NCHW"
    pixels = helper.make_tensor_value_info(PIXELS_INPUT, TensorProto.UINT8, [batch, "H", "W", channels])
    per_channel = [1, channels, 1, 1] if nchw else [1, 1, 1, channels]
    nodes: list[Any] = []
    constants: list[Any] = []
    current = PIXELS_INPUT

    def step(op: str, inputs: list[str], **attributes: Any) -> None:
        nonlocal current
        name = f"{_PREFIX}{len(nodes)}"
        nodes.append(helper.make_node(op, [current, *inputs], [name], name=name, **attributes))
        current = name

    def constant(values: list[float], dims: list[int], dtype: Any = TensorProto.FLOAT) -> str:
        name = f"{_PREFIX}c{len(constants)}"
        constants.append(helper.make_tensor(name, dtype, dims, values))
        return name

    if preprocess.channels == "BGR":
        step("Gather", [constant([2, 1, 0], [3], TensorProto.INT64)], axis=3)
    if nchw:
        step("Transpose", [], perm=[0, 3, 1, 2])
    step("Cast", [], to=TensorProto.FLOAT)
    step("Div", [constant([float(preprocess.scale)], [])])
    mean, std = _per_channel(preprocess.mean, channels), _per_channel(preprocess.std, channels)
    # identity mean and std are skipped, as on the host
    if any(m != 0 for m in mean):
        step("Sub", [constant(mean, per_channel)])
    if any(s != 1 for s in std):
        step("Div", [constant(std, per_channel)])
    nodes[-1].output[0] = output
    return nodes, constants, pixels


def _per_channel(values: list[float], channels: int) -> list[float]:
    """One value per channel (the spec gives one for all, or one each)."""
    return [float(v) for v in values] * (channels // len(values))
